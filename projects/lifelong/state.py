"""The state of a run over a task sequence, and the jitted functions that change it.

One train step serves every task: the anchor, importances and running sums
are fields of its (donated) state, not constants, so nothing recompiles
between tasks. The accuracy matrix and the untrained model's accuracies are
fields too, so a checkpoint at any step holds everything the run needs.
The step knows its task from the state's step count (steps_per_task each).
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import tree_utils as otu

from lib import mesh as mesh_lib
from lib import train_state as train_state_lib
from projects.lifelong import growth
from projects.lifelong import methods


@flax.struct.dataclass
class LifelongState:
  train: train_state_lib.TrainState
  anchor: Any  # parameters at the end of the previous task
  importance: Any  # per-parameter weights of the quadratic penalty
  tracks: dict  # running sums along training: SI/RWalk 'path', RWalk 'fisher', 'score'
  matrix: jax.Array  # [T, T]: R[i, j], accuracy on task j after task i
  random_init: jax.Array  # [T]: the untrained model's accuracy on each task
  owners: Any  # PackNet: each weight's task (methods.FREE: none yet); PNN:
  # each leaf's column; else {}


def initial_state(config, train: train_state_lib.TrainState, random_init,
                  mesh) -> LifelongState:
  """The state before the first task; `random_init` is [T] host accuracies."""
  names = {'si': ('path',), 'rwalk': ('path', 'fisher', 'score')}.get(
      config.method, ())
  num_tasks = config.tasks.num_tasks

  def start(train, random_init):
    params = train.params
    owners = {}
    if config.method == 'packnet':
      owners = jax.tree.map(
          lambda p: jnp.full(p.shape, methods.FREE, jnp.int32), params)
    elif config.method == 'pnn':
      owners = growth.column_owners(params)
    return LifelongState(
        train=train, anchor=jax.tree.map(jnp.copy, params),
        importance=otu.tree_zeros_like(params),
        tracks={name: otu.tree_zeros_like(params) for name in names},
        matrix=jnp.zeros((num_tasks, num_tasks)), random_init=random_init,
        owners=owners)

  return jax.jit(start, out_shardings=mesh_lib.replicated(mesh))(
      train, np.asarray(random_init, np.float32))


def memory_sharding(config, mesh):
  """GEM's memory [slot, example, ...] splits its examples over 'data'."""
  if config.method == 'gem':
    return jax.sharding.NamedSharding(mesh, jax.P(None, mesh_lib.DATA_AXIS))
  return mesh_lib.batch_sharding(mesh)


def net2net_widths(config, task):
  """Net2Net's hidden widths while training `task` (traced)."""
  return (jnp.asarray(config.model.features, jnp.int32)
          + config.net2net.widen_by * task)


def make_train_step(config, task_apply, tx, mesh):
  """step(state, batch, memory_batch) -> (state, metrics), jitted once for all tasks.

  `task_apply(params, inputs, task)` gives the logits of the model that
  `task` trains and is evaluated with (PNN's column; the others ignore it).

  `memory_batch` is A-GEM's sample of the episodic memory, with a per-example
  'weight' (0 while there is no memory yet), or GEM's whole memory, one slot
  per earlier task ([T - 1, memory_per_task, ...]; slots from the current
  task on are unused); the other methods pass None.
  """
  method = config.method
  per_task = config.steps_per_task
  strength = config[method].strength if method in methods.WITH_STRENGTH else 0.0

  def step(state: LifelongState, batch, memory_batch):
    train = state.train
    task = train.step // per_task
    apply_fn = lambda params, x: task_apply(params, x, task)

    def task_loss(params, batch):
      logits = methods.masked_logits(apply_fn, params, batch)
      loss = methods.cross_entropy(logits, batch['label']).mean()
      accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
      return loss, accuracy

    (loss, accuracy), grads = jax.value_and_grad(task_loss, has_aux=True)(
        train.params, batch)
    metrics = {'loss': loss, 'accuracy': accuracy}
    total = grads
    if method in methods.REGULARIZERS:
      penalty, penalty_grads = jax.value_and_grad(methods.quadratic_penalty)(
          train.params, state.anchor, state.importance)
      total = otu.tree_add_scale(grads, strength, penalty_grads)
      metrics['penalty'] = strength * penalty
    elif method == 'agem':
      def memory_loss(params):
        logits = methods.masked_logits(apply_fn, params, memory_batch)
        return jnp.mean(memory_batch['weight'] * methods.cross_entropy(
            logits, memory_batch['label']))
      memory_grads = jax.grad(memory_loss)(train.params)
      metrics['memory_conflict'] = (
          otu.tree_vdot(grads, memory_grads) < 0).astype(jnp.float32)
      total = methods.agem_project(grads, memory_grads)
    elif method == 'gem':
      earlier = jnp.arange(config.tasks.num_tasks - 1) < task
      slot_grad = jax.grad(lambda p, b: task_loss(p, b)[0])

      def earlier_task_grad(slot_and_earlier):
        slot, is_earlier = slot_and_earlier
        return jax.lax.cond(is_earlier, lambda: slot_grad(train.params, slot),
                            lambda: otu.tree_zeros_like(train.params))

      task_grads = jax.lax.map(earlier_task_grad, (memory_batch, earlier))
      total, conflict = methods.gem_project(grads, task_grads, earlier,
                                            config.gem.margin)
      metrics['memory_conflict'] = conflict.astype(jnp.float32)
    elif method == 'lwf':  # no old model before the first task ends
      distill, distill_grads = jax.value_and_grad(methods.distillation_loss,
                                                  argnums=1)(
          apply_fn, train.params, state.anchor, batch['input'],
          config.lwf.temperature)
      weight = strength * (task > 0)
      total = otu.tree_add_scale(grads, weight, distill_grads)
      metrics['penalty'] = weight * distill
    updates, opt_state = tx.update(total, train.opt_state, train.params)
    params = optax.apply_updates(train.params, updates)
    updatable = None
    if method == 'packnet':  # only the free weights, or the task's once pruned
      retrain_from = per_task - config.packnet.retrain_steps
      trainer = jnp.where(train.step % per_task >= retrain_from, task,
                          methods.FREE)
      updatable = jax.tree.map(lambda owner: owner == trainer, state.owners)
    elif method == 'pnn':  # the task's column alone; the earlier ones frozen
      updatable = jax.tree.map(lambda owner: owner == task, state.owners)
    elif method == 'net2net':  # units not grown yet stay zero
      updatable = growth.grown_masks(train.params,
                                     net2net_widths(config, task))
    if updatable is not None:
      params = jax.tree.map(lambda new, old, keep: jnp.where(keep, new, old),
                            params, train.params, updatable)

    tracks = dict(state.tracks)
    moved = otu.tree_sub(params, train.params)
    # The task loss's decrease credited to each parameter: -g * step.
    credit = jax.tree.map(lambda g, d: -g * d, grads, moved)
    if method == 'si':
      tracks['path'] = otu.tree_add(tracks['path'], credit)
    elif method == 'rwalk':
      fisher = otu.tree_update_moment_per_elem_norm(
          grads, tracks['fisher'], config.rwalk.fisher_decay, 2)
      tracks['fisher'] = fisher
      tracks['path'] = jax.tree.map(
          lambda s, c, f, d: s + c / (0.5 * f * d ** 2 + config.rwalk.epsilon),
          tracks['path'], credit, fisher, moved)
    train = train.replace(step=train.step + 1, params=params,
                          opt_state=opt_state)
    return state.replace(train=train, tracks=tracks), metrics

  replicated = mesh_lib.replicated(mesh)
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(replicated, mesh_lib.batch_sharding(mesh),
                               memory_sharding(config, mesh)),
                 out_shardings=(replicated, replicated))


def make_importance_step(config, apply_fn, mesh):
  """step(params, batch, key) -> (importance summed over the batch, example count)."""
  method = config.method

  def step(params, batch, key):
    if method == 'ewc':
      sums = methods.fisher_diagonal(
          apply_fn, params, batch, key if config.ewc.fisher == 'true' else None)
    elif method == 'mas':
      sums = methods.mas_importance(apply_fn, params, batch)
    else:
      sums = methods.scp_importance(apply_fn, params, batch, key,
                                    config.scp.num_projections)
    return sums, jnp.sum(batch['mask'])

  replicated = mesh_lib.replicated(mesh)
  return jax.jit(step, in_shardings=(replicated, mesh_lib.batch_sharding(mesh),
                                     replicated),
                 out_shardings=replicated)


def make_end_task(config, mesh):
  """end_task(state, importance sums, count, task, row) -> state, jitted once.

  Runs at the end of each task: records the task's row of the accuracy
  matrix, adds the task's importance to the penalty's weights, moves the
  anchor to the current parameters and restarts the running sums. `sums`
  (EWC, MAS, SCP; None for the others) are divided by `count`.
  """
  method = config.method

  def end_task(state: LifelongState, sums, count, task, row):
    params = state.train.params
    importance, tracks = state.importance, dict(state.tracks)
    if sums is not None:
      importance = jax.tree.map(lambda w, s: w + s / count, importance, sums)
    elif method == 'si':
      importance = otu.tree_add(importance, methods.si_importance(
          tracks['path'], state.anchor, params, config.si.damping))
      tracks['path'] = otu.tree_zeros_like(tracks['path'])
    elif method == 'rwalk':
      score = jax.tree.map(jax.nn.relu, tracks['path'])
      # Scores average over tasks: s_t = (s_{t-1} + s_task) / 2 from task 1 on.
      score = jax.tree.map(lambda a, b: jnp.where(task > 0, 0.5 * (a + b), b),
                           tracks['score'], score)
      tracks['score'] = score
      importance = otu.tree_add(methods.scale_to_unit_max(tracks['fisher']),
                                methods.scale_to_unit_max(score))
      tracks['path'] = otu.tree_zeros_like(tracks['path'])
    return state.replace(anchor=jax.tree.map(jnp.copy, params),
                         importance=importance, tracks=tracks,
                         matrix=state.matrix.at[task].set(row))

  return jax.jit(end_task, donate_argnums=0,
                 out_shardings=mesh_lib.replicated(mesh))


def make_restart_optimizer(tx, mesh):
  """state -> state with a fresh optimizer state (Adam restarts at every task)."""
  return jax.jit(lambda s: s.replace(train=s.train.replace(
      opt_state=tx.init(s.train.params))), donate_argnums=0,
                 out_shardings=mesh_lib.replicated(mesh))


def make_packnet_prune(config, mesh):
  """prune(state, task) -> state: PackNet gives `task` its kept weights."""
  def prune(state: LifelongState, task):
    params, owners = methods.packnet_prune(
        state.train.params, state.owners, task, config.packnet.prune_fraction)
    return state.replace(train=state.train.replace(params=params),
                         owners=owners)

  return jax.jit(prune, donate_argnums=0,
                 out_shardings=mesh_lib.replicated(mesh))


def make_task_params(mesh):
  """(params, owners, task) -> the weights PackNet evaluates `task` with."""
  return jax.jit(methods.packnet_task_params,
                 out_shardings=mesh_lib.replicated(mesh))


def make_net2net_widen(config, mesh):
  """widen(state, task) -> state: Net2WiderNet before `task` (task >= 1)."""
  def widen(state: LifelongState, task):
    key = jax.random.fold_in(jax.random.key(config.seed + 2), task)
    params = growth.wider_net(
        state.train.params, net2net_widths(config, task - 1),
        config.net2net.widen_by, key, config.net2net.noise)
    return state.replace(train=state.train.replace(params=params))

  return jax.jit(widen, donate_argnums=0,
                 out_shardings=mesh_lib.replicated(mesh))
