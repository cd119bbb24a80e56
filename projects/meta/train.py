"""HW15's training loop: meta-training on task batches, then meta-testing.

`train_and_evaluate(config, workdir)` meta-trains `config.method` (or, for
'transfer', pretrains a classifier on all meta-train classes) with a jitted,
donated step whose task batch is sharded over the mesh's 'data' axis, logs and
checkpoints as it goes (a re-run resumes), and ends with a meta-test on
held-out classes: mean query accuracy (or MSE) with a 95% interval.
"""

import dataclasses
import json
import math
import os
import time

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import checkpoint as checkpoint_lib
from lib import config as config_lib
from lib import mesh as mesh_lib
from lib import metric_log
from lib import optim
from lib import plots
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib import trainer
from lib.errors import ConfigError
from projects.meta import algorithms
from projects.meta import models
from projects.meta import tasks as tasks_lib

METHODS = (*algorithms.METHODS, 'transfer')
DATASETS = ('sinusoid', 'omniglot', 'omniglot_tfds')
EVAL_SEED = 20220615  # episodes do not change with config.seed
SPLITS = ('train', 'val', 'test')


@dataclasses.dataclass
class Problem:
  """The data: class pools (None for sinusoid regression) per split."""
  name: str
  pools: dict[str, np.ndarray | None]

  @property
  def regression(self) -> bool:
    return self.name == 'sinusoid'

  @property
  def loss(self) -> str:
    return 'mse' if self.regression else 'cross_entropy'

  def sample_input(self):
    if self.regression:
      return np.zeros((1, 1), np.float32)
    return self.pools['train'][0, :1]

  def episodes(self, split, rng, num_tasks, ways, shots, query):
    if self.regression:
      return tasks_lib.sinusoid_tasks(rng, num_tasks, shots, query)
    return tasks_lib.episodes(rng, self.pools[split], num_tasks, ways, shots,
                              query)

  def pretrain_batch(self, rng, size):
    """Examples of all meta-train classes, for the transfer baseline."""
    if self.regression:
      task = tasks_lib.sinusoid_tasks(rng, size, 1, 0)
      return {'input': task['support_input'][:, 0],
              'label': task['support_label'][:, 0]}
    pool = self.pools['train']
    classes = rng.integers(0, pool.shape[0], size)
    return {'input': pool[classes, rng.integers(0, pool.shape[1], size)],
            'label': classes.astype(np.int32)}


def _check(ok, message):
  if not ok:
    raise ConfigError(message)


def validate(config):
  """ConfigError naming the first unusable field of the meta config."""
  config_lib.validate(config)
  _check(config.method in METHODS,
         f'config.method={config.method!r}: choose one of {METHODS}')
  _check(config.data.name in DATASETS,
         f'config.data.name={config.data.name!r}: choose one of {DATASETS}')
  for group, names in (('task', ('ways', 'shots', 'query', 'eval_query')),
                       ('inner', ('steps',)),
                       ('eval', ('val_episodes', 'test_episodes',
                                 'batch_episodes')),
                       ('model', ('channels', 'num_blocks')),
                       ('data', ('image_size',))):
    for name in names:
      value = config[group][name]
      _check(isinstance(value, int) and value > 0,
             f'config.{group}.{name}={value!r} must be a positive integer')
  _check(config.inner.eval_steps >= 0 and config.transfer.finetune_steps >= 0,
         'config.inner.eval_steps and config.transfer.finetune_steps must be '
         '>= 0')
  for name in ('inner.lr', 'transfer.finetune_lr'):
    group, field = name.split('.')
    _check(config[group][field] > 0, f'config.{name} must be > 0')
  _check(config.inner.task_map in algorithms.TASK_MAPS,
         f'config.inner.task_map={config.inner.task_map!r}: choose one of '
         f'{algorithms.TASK_MAPS}')
  _check(config.model.downsample in models.DOWNSAMPLES,
         f'config.model.downsample={config.model.downsample!r}: choose one of '
         f'{models.DOWNSAMPLES}')
  _check(config.model.conv_impl in models.CONV_IMPLS,
         f'config.model.conv_impl={config.model.conv_impl!r}: choose one of '
         f'{models.CONV_IMPLS}')
  _check(config.data.name != 'sinusoid' or config.task.ways == 1,
         'config.task.ways must be 1 for sinusoid regression')
  _check(config.data.name == 'sinusoid' or config.task.ways > 1,
         'config.task.ways must be > 1 for classification')


def load_problem(config) -> Problem:
  data = config.data
  if data.name == 'sinusoid':
    return Problem('sinusoid', dict.fromkeys(SPLITS))
  if data.name == 'omniglot':
    pool = tasks_lib.load_omniglot_npz(data.omniglot_path, data.image_size)
    train, val, test = tasks_lib.split_classes(pool, data.num_val_classes,
                                               data.num_test_classes)
  else:
    background = tasks_lib.load_omniglot_tfds('train', data.tfds_data_dir,
                                              data.image_size)
    train, val, _ = tasks_lib.split_classes(background, data.num_val_classes,
                                            0)
    test = tasks_lib.load_omniglot_tfds('test', data.tfds_data_dir,
                                        data.image_size)
  if data.rotations:
    train = tasks_lib.with_rotations(train)
  return Problem(data.name, {'train': train, 'val': val, 'test': test})


def make_learner(config, num_outputs: int) -> models.Learner:
  if config.data.name == 'sinusoid':
    return models.Learner(models.MLPBody(tuple(config.model.hidden)),
                          num_outputs)
  m = config.model
  return models.Learner(models.ConvBody(m.channels, m.num_blocks,
                                        m.downsample, m.conv_impl),
                        num_outputs)


def train_outputs(config, problem: Problem) -> int:
  """Width of the trained head: the ways, or all classes for pretraining."""
  if problem.regression:
    return 1
  if config.method == 'transfer':
    return problem.pools['train'].shape[0]
  return config.task.ways


def make_meta_learner(config, problem, num_outputs: int):
  method = 'maml' if config.method == 'transfer' else config.method
  return algorithms.MetaLearner(
      make_learner(config, num_outputs), method, problem.loss, config.inner.lr,
      config.inner.steps, config.inner.task_map)


def initial_state(config, problem, meta, tx, mesh):
  def init():
    params = meta.init(jax.random.key(config.seed), problem.sample_input())
    return train_state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state=tx.init(params), model_state={},
        key=jax.random.key(config.seed + 1))
  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))()


def make_loss_fn(config, problem, meta):
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


def episode_setup(config, problem, params, ways: int):
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


class EpisodeEvaluator:
  """Meta-tests parameters on a split's episodes (fixed ones, whatever the seed)."""

  def __init__(self, config, problem, mesh, *, ways, shots, query):
    self.config, self.problem, self.mesh = config, problem, mesh
    self.ways, self.shots, self.query = ways, shots, query
    self._compiled = {}

  def _fn(self, meta, steps, head_only):
    # Compiled once per way of adapting; episode_setup's meta for a key is
    # always the same.
    key = (meta.method, meta.inner_lr, steps, head_only)
    if key not in self._compiled:
      self._compiled[key] = jax.jit(
          lambda params, tasks: meta.evaluate(params, tasks, steps,
                                              head_only=head_only),
          in_shardings=(mesh_lib.replicated(self.mesh),
                        mesh_lib.batch_sharding(self.mesh)),
          out_shardings=mesh_lib.replicated(self.mesh))
    return self._compiled[key]

  def per_episode(self, params, split: str, num_episodes: int):
    """{metric: [episodes, steps + 1]} on `num_episodes` episodes of `split`."""
    meta, params, steps, head_only = episode_setup(
        self.config, self.problem, params, self.ways)
    fn = self._fn(meta, steps, head_only)
    batch = self.config.eval.batch_episodes
    rng = np.random.default_rng([EVAL_SEED, SPLITS.index(split)])
    chunks = []
    for _ in range(math.ceil(num_episodes / batch)):
      tasks = self.problem.episodes(split, rng, batch, self.ways, self.shots,
                                    self.query)
      chunks.append(fn(params, mesh_lib.shard_batch(tasks, self.mesh)))
    chunks = jax.device_get(chunks)
    return {name: np.concatenate([c[name] for c in chunks])[:num_episodes]
            for name in chunks[0]}

  def summary(self, params, split: str, num_episodes: int) -> dict:
    """Means after the last step, after 0 and 1 steps, and the 95% interval."""
    values = self.per_episode(params, split, num_episodes)
    out = {}
    for name, per_step in values.items():
      final = per_step[:, -1]
      out[name] = float(final.mean())
      out[f'{name}_ci95'] = float(1.96 * final.std() / math.sqrt(len(final)))
      for step in (0, 1):
        if step < per_step.shape[1] - 1:
          out[f'{name}_step{step}'] = float(per_step[:, step].mean())
    out['adaptation_curve'] = {name: per_step.mean(0).tolist()
                               for name, per_step in values.items()}
    return out


def baselines(config, problem) -> dict[str, float]:
  if problem.regression:
    rng = np.random.default_rng([EVAL_SEED, SPLITS.index('test')])
    tasks = problem.episodes('test', rng, config.eval.test_episodes, 1,
                             config.task.shots, config.task.eval_query)
    return {'baseline/zero_mse': float(np.mean(tasks['query_label']**2))}
  return {'baseline/chance_accuracy': 1.0 / config.task.ways}


def _train_batch(config, problem, step: int):
  rng = np.random.default_rng([config.seed, step])
  if config.method == 'transfer':
    return problem.pretrain_batch(rng, config.batch_size)
  t = config.task
  return problem.episodes('train', rng, config.batch_size, t.ways, t.shots,
                          t.query)


def _without_curves(summary):
  return {k: v for k, v in summary.items() if k != 'adaptation_curve'}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  """Meta-trains (or pretrains), then meta-tests on the held-out classes."""
  validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  for name, value in (('batch_size', config.batch_size),
                      ('eval.batch_episodes', config.eval.batch_episodes)):
    _check(value % mesh.size == 0, f'config.{name}={value} must be a multiple '
           f'of the number of devices ({mesh.size})')
  problem = load_problem(config)  # data errors surface before any write
  meta = make_meta_learner(config, problem, train_outputs(config, problem))
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  state = initial_state(config, problem, meta, tx, mesh)
  is_chief = jax.process_index() == 0

  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  if is_chief:
    (epath.Path(workdir) / 'config.json').write_text(config.to_json(indent=1))
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), every=config.checkpoint_every,
      keep=config.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state, _ = checkpoints.restore(state)
  start = int(state.step)
  writer = (metric_log.MetricWriter(workdir, resume_step=start) if is_chief
            else None)
  train_step = steps_lib.make_train_step(make_loss_fn(config, problem, meta),
                                         tx, mesh)
  t = config.task
  evaluator = EpisodeEvaluator(config, problem, mesh, ways=t.ways,
                               shots=t.shots, query=t.eval_query)
  metadata = {'config': config.to_dict()}

  progress = metric_log.Progress(config.num_steps, initial=start)
  pending, train_means = [], {}
  started = time.perf_counter()
  for step in range(start + 1, config.num_steps + 1):
    batch = mesh_lib.shard_batch(_train_batch(config, problem, step), mesh)
    state, metrics = train_step(state, batch)
    pending.append(metrics)
    last = step == config.num_steps
    evaluating = step % config.eval_every == 0 or last
    saving = checkpoints.should_save(step) or last
    if not (step % config.log_every == 0 or evaluating or saving):
      continue
    train_means = trainer.fetch_means(
        pending, step, f'the last good checkpoint in {workdir} is kept (lower '
        'optimizer.learning_rate or inner.lr)')
    pending = []
    progress.update(step, {'loss': train_means['loss']})
    if writer:
      writer.write(step, 'train', {
          **train_means, 'steps_per_second': progress.steps_per_second(step)},
                   echo=not progress.interactive)
    if evaluating and writer:
      val = evaluator.summary(state.params, 'val', config.eval.val_episodes)
      writer.write(step, 'val', _without_curves(val),
                   echo=not progress.interactive)
    if saving:
      checkpoints.save(step, state, metadata)
  progress.close()
  wall = time.perf_counter() - started
  checkpoints.close()

  test = evaluator.summary(state.params, 'test', config.eval.test_episodes)
  summary = {**{f'train/{k}': v for k, v in train_means.items()},
             **{f'test/{k}': v for k, v in _without_curves(test).items()},
             **baselines(config, problem), 'step': int(state.step),
             'wall_seconds': wall}
  if writer:
    writer.write(int(state.step), 'test', _without_curves(test), echo=False)
    writer.close()
    (epath.Path(workdir) / 'summary.json').write_text(
        json.dumps(summary, indent=1))
    if config.plots:
      plots.plot_learning_curves(metric_log.read_metrics(workdir),
                                 os.path.join(workdir, 'learning_curves.png'),
                                 title=f'meta: {config.method}')
      plots.plot_curves(
          {f'{config.method} {name}': list(enumerate(curve))
           for name, curve in test['adaptation_curve'].items()},
          os.path.join(workdir, 'adaptation.png'), xlabel='inner steps',
          ylabel='meta-test query metric', title='adaptation on test episodes')
  return trainer.TrainResult(state, summary)


def restore(workdir: str, mesh=None):
  """(config, problem, params) of the latest checkpoint in `workdir`."""
  path = epath.Path(workdir) / 'config.json'
  if not path.exists():
    raise ConfigError(f'no meta-learning run in {workdir} (no config.json)')
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  mesh = mesh or mesh_lib.make_mesh(config.num_devices)
  problem = load_problem(config)
  meta = make_meta_learner(config, problem, train_outputs(config, problem))
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  target = initial_state(config, problem, meta, tx, mesh)
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), every=0, keep=1)
  if checkpoints.latest_step() is None:
    raise ConfigError(f'no checkpoint in {workdir}/checkpoints')
  state, _ = checkpoints.restore(target)
  checkpoints.close()
  return config, problem, state.params
