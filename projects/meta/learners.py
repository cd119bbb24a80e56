"""Building the learners: the network, the method's meta loss, the initial
state, and how a trained run adapts at meta-test time."""

import jax
import jax.numpy as jnp

from lib import mesh as mesh_lib
from lib import train_state as train_state_lib
from projects.meta import algorithms
from projects.meta import models
from projects.meta import problem as problem_lib


def make_learner(config, num_outputs: int) -> models.Learner:
  if config.data.name == 'sinusoid':
    return models.Learner(models.MLPBody(tuple(config.model.hidden)),
                          num_outputs)
  m = config.model
  return models.Learner(models.ConvBody(m.channels, m.num_blocks,
                                        m.downsample, m.conv_impl),
                        num_outputs)


def train_outputs(config, problem: problem_lib.Problem) -> int:
  """Width of the trained head: the ways, or all classes for pretraining."""
  if problem.regression:
    return 1
  if config.method == 'transfer':
    return problem.pools['train'].shape[0]
  return config.task.ways


def make_meta_learner(config, problem: problem_lib.Problem,
                      num_outputs: int) -> algorithms.MetaLearner:
  method = 'maml' if config.method == 'transfer' else config.method
  return algorithms.MetaLearner(
      make_learner(config, num_outputs), method, problem.loss, config.inner.lr,
      config.inner.steps, config.inner.task_map)


def initial_state(config, problem: problem_lib.Problem,
                  meta: algorithms.MetaLearner, tx,
                  mesh) -> train_state_lib.TrainState:
  def init():
    params = meta.init(jax.random.key(config.seed), problem.sample_input())
    return train_state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state=tx.init(params), model_state={},
        key=jax.random.key(config.seed + 1))
  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))()


def make_loss_fn(config, problem: problem_lib.Problem,
                 meta: algorithms.MetaLearner):
  """lib.steps' loss_fn(params, model_state, batch, key) for the method."""
  if config.method == 'transfer':
    def pretrain_loss(params, model_state, batch, key):
      del key
      outputs = meta.learner.apply(params['net'], batch['input'])
      metrics = algorithms.task_metrics(problem.loss, outputs, batch['label'])
      return algorithms.task_loss(problem.loss, outputs, batch['label']), (
          metrics, model_state)
    return pretrain_loss

  if config.method == 'reptile':
    def reptile_loss(params, model_state, batch, key):
      del key
      direction, metrics = meta.reptile_direction(params, batch)
      # 0.5 |params - target|^2 has the Reptile direction as its gradient.
      target = jax.lax.stop_gradient(
          jax.tree.map(jnp.subtract, params, direction))
      surrogate = 0.5 * sum(jnp.sum(jnp.square(p - t)) for p, t in zip(
          jax.tree.leaves(params), jax.tree.leaves(target)))
      return surrogate, (metrics, model_state)
    return reptile_loss

  def maml_loss(params, model_state, batch, key):
    del key
    loss, metrics = meta.meta_loss(params, batch)
    return loss, (metrics, model_state)
  return maml_loss


def adaptation_setup(config, problem: problem_lib.Problem, params, ways: int):
  """(MetaLearner, meta params, steps, head_only) to adapt at test time.

  The transfer baseline keeps its pretrained body and fits a new zero head;
  a meta-learner tested on other `ways` than it was trained on gets a zero
  head too (Meta-SGD: the head's mean learned rate).
  """
  net, learner = params['net'], make_learner(config, ways)
  if problem.regression or (config.method != 'transfer' and
                            net['head']['bias'].shape[0] == ways):
    if config.method == 'transfer':
      meta = algorithms.MetaLearner(learner, 'maml', problem.loss,
                                    config.transfer.finetune_lr, 0)
      return meta, params, config.transfer.finetune_steps, False
    return (make_meta_learner(config, problem, ways), params,
            config.inner.eval_steps, False)
  width = net['head']['kernel'].shape[0]
  zero_head = {'kernel': jnp.zeros((width, ways)), 'bias': jnp.zeros((ways,))}
  new_params = {'net': {'body': net['body'], 'head': zero_head}}
  if config.method == 'transfer':
    meta = algorithms.MetaLearner(learner, 'anil', problem.loss,
                                  config.transfer.finetune_lr, 0)
    return meta, new_params, config.transfer.finetune_steps, True
  if 'inner_lr' in params:
    new_params['inner_lr'] = {'body': params['inner_lr']['body'], 'head': {
        name: jnp.full_like(zero_head[name], jnp.mean(lr))
        for name, lr in params['inner_lr']['head'].items()}}
  return (make_meta_learner(config, problem, ways), new_params,
          config.inner.eval_steps, False)
