"""HW14: training one method over a sequence of tasks, with the lecture's metrics.

`train_and_evaluate(config, workdir)` trains `config.method` on the tasks in
order (a fixed number of steps each), evaluates every task after each one to
fill the accuracy matrix, and reports ACC, BWT and FWT (see metrics.py). One
jitted step serves every task: the anchor, importances and running sums are
part of its (donated) state, not constants, so nothing recompiles between
tasks. Checkpoints are written at the end of every task (and every
`checkpoint_every` steps); re-running resumes where the run stopped.
"""

import json
import os
import time
from typing import Any

from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import checkpoint as checkpoint_lib
from lib import config as config_lib
from lib import mesh as mesh_lib
from lib import metric_log
from lib import models
from lib import optim
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib import trainer
from lib.data import batches as batches_lib
from lib.data import splits
from lib.errors import ConfigError
from projects.lifelong import methods
from projects.lifelong import metrics as metrics_lib
from projects.lifelong import tasks as tasks_lib


@flax.struct.dataclass
class LifelongState:
  train: train_state_lib.TrainState
  anchor: Any  # parameters at the end of the previous task
  importance: Any  # per-parameter weights of the quadratic penalty
  tracks: dict  # running sums along training: SI/RWalk 'path', RWalk 'fisher', 'score'


def _zeros_like(tree):
  return jax.tree.map(jnp.zeros_like, tree)


def check_config(config: ml_collections.ConfigDict):
  for name in ('steps_per_task', 'importance_examples'):
    if not isinstance(config[name], int) or config[name] <= 0:
      raise ConfigError(f'config.{name}={config[name]!r} must be a positive '
                        'integer')
  config_lib.validate(config)
  tasks_lib.check_config(config)
  if config.method not in methods.METHODS:
    raise ConfigError(f'config.method={config.method!r}: choose one of '
                      f'{methods.METHODS}')
  if config.method in methods.REGULARIZERS:
    strength = config[config.method].strength
    if not strength >= 0:
      raise ConfigError(f'config.{config.method}.strength={strength} must be >= 0')
  if config.ewc.fisher not in ('true', 'empirical'):
    raise ConfigError(f"config.ewc.fisher={config.ewc.fisher!r}: choose 'true' "
                      "or 'empirical'")
  if config.si.damping <= 0:
    raise ConfigError(f'config.si.damping={config.si.damping} must be > 0')
  if not 0 <= config.rwalk.fisher_decay < 1:
    raise ConfigError(f'config.rwalk.fisher_decay={config.rwalk.fisher_decay} '
                      'must lie in [0, 1)')
  if config.scp.num_projections <= 0:
    raise ConfigError(f'config.scp.num_projections='
                      f'{config.scp.num_projections} must be > 0')
  if config.method == 'agem' and (config.agem.memory_per_task <= 0 or
                                  config.agem.memory_batch_size <= 0):
    raise ConfigError('config.agem.memory_per_task and memory_batch_size must '
                      'be > 0')


def make_model(config):
  return models.MLP(tuple(config.model.features),
                    num_outputs=tasks_lib.NUM_CLASSES)


def make_train_step(config, model, tx, mesh):
  """step(state, batch, memory_batch) -> (state, metrics), jitted once for all tasks.

  `memory_batch` is A-GEM's sample of the episodic memory, with a per-example
  'weight' (0 while there is no memory yet); the other methods ignore it.
  """
  method = config.method
  apply_fn = lambda params, x: model.apply({'params': params}, x)
  strength = config[method].strength if method in methods.REGULARIZERS else 0.0

  def task_loss(params, batch):
    logits = methods.masked_logits(apply_fn, params, batch)
    loss = methods.cross_entropy(logits, batch['label']).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return loss, accuracy

  def step(state: LifelongState, batch, memory_batch):
    train = state.train
    (loss, accuracy), grads = jax.value_and_grad(task_loss, has_aux=True)(
        train.params, batch)
    metrics = {'loss': loss, 'accuracy': accuracy}
    total = grads
    if method in methods.REGULARIZERS:
      penalty, penalty_grads = jax.value_and_grad(methods.quadratic_penalty)(
          train.params, state.anchor, state.importance)
      total = jax.tree.map(lambda g, p: g + strength * p, grads, penalty_grads)
      metrics['penalty'] = strength * penalty
    elif method == 'agem':
      def memory_loss(params):
        logits = methods.masked_logits(apply_fn, params, memory_batch)
        return jnp.mean(memory_batch['weight'] * methods.cross_entropy(
            logits, memory_batch['label']))
      memory_grads = jax.grad(memory_loss)(train.params)
      metrics['memory_conflict'] = (
          methods.tree_vdot(grads, memory_grads) < 0).astype(jnp.float32)
      total = methods.agem_project(grads, memory_grads)
    updates, opt_state = tx.update(total, train.opt_state, train.params)
    params = optax.apply_updates(train.params, updates)

    tracks = dict(state.tracks)
    moved = jax.tree.map(jnp.subtract, params, train.params)
    # The task loss's decrease credited to each parameter: -g * step.
    credit = jax.tree.map(lambda g, d: -g * d, grads, moved)
    if method == 'si':
      tracks['path'] = jax.tree.map(jnp.add, tracks['path'], credit)
    elif method == 'rwalk':
      decay, eps = config.rwalk.fisher_decay, config.rwalk.epsilon
      fisher = jax.tree.map(lambda f, g: decay * f + (1 - decay) * g ** 2,
                            tracks['fisher'], grads)
      tracks['fisher'] = fisher
      tracks['path'] = jax.tree.map(
          lambda s, c, f, d: s + c / (0.5 * f * d ** 2 + eps),
          tracks['path'], credit, fisher, moved)
    train = train.replace(step=train.step + 1, params=params,
                          opt_state=opt_state)
    return state.replace(train=train, tracks=tracks), metrics

  replicated = mesh_lib.replicated(mesh)
  batched = mesh_lib.batch_sharding(mesh)
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(replicated, batched, batched),
                 out_shardings=(replicated, replicated))


def make_importance_step(config, model, mesh):
  """step(params, batch, key) -> per-parameter importance summed over the batch."""
  method = config.method
  apply_fn = lambda params, x: model.apply({'params': params}, x)

  def step(params, batch, key):
    if method == 'ewc':
      return methods.fisher_diagonal(
          apply_fn, params, batch, key if config.ewc.fisher == 'true' else None)
    if method == 'mas':
      return methods.mas_importance(apply_fn, params, batch)
    return methods.scp_importance(apply_fn, params, batch, key,
                                  config.scp.num_projections)

  return jax.jit(step, in_shardings=(mesh_lib.replicated(mesh),
                                     mesh_lib.batch_sharding(mesh),
                                     mesh_lib.replicated(mesh)),
                 out_shardings=mesh_lib.replicated(mesh))


def _fixed_subset(source: dict, size: int, seed: int) -> dict:
  count = batches_lib.num_examples(source)
  order = np.random.default_rng(seed).permutation(count)[:min(size, count)]
  return splits.take(source, np.sort(order))


def _concat(sources: list[dict]) -> dict:
  return {k: np.concatenate([s[k] for s in sources]) for k in sources[0]}


class LifelongRun:
  """What the loop over tasks uses: data, jitted steps, memory, evaluation."""

  def __init__(self, config, train_tasks, test_tasks, mesh):
    self.config = config
    self.mesh = mesh
    self.train_tasks = [splits.shard_for_process(t) for t in train_tasks]
    self.test_tasks = [splits.shard_for_process(t) for t in test_tasks]
    self.local_batch = batches_lib.local_batch_size(config.batch_size)
    self.model = make_model(config)
    self.tx = optim.make_optimizer(config.optimizer, config.steps_per_task)
    self.train_step = make_train_step(config, self.model, self.tx, mesh)
    self.importance_step = (
        make_importance_step(config, self.model, mesh)
        if config.method in ('ewc', 'mas', 'scp') else None)

    def eval_fn(params, model_state, batch):
      del model_state
      logits = methods.masked_logits(
          lambda p, x: self.model.apply({'params': p}, x), params, batch)
      return {'accuracy': (jnp.argmax(logits, -1) == batch['label']).astype(
          jnp.float32)}

    self.eval_step = steps_lib.make_eval_step(eval_fn, mesh)
    self.consolidate = make_consolidate(config, mesh)
    self.eval_counts = [batches_lib.eval_batch_count(t, self.local_batch)
                        for t in self.test_tasks]
    replicated = mesh_lib.replicated(mesh)
    self.restart_optimizer = jax.jit(
        lambda s: s.replace(train=s.train.replace(
            opt_state=self.tx.init(s.train.params))),
        donate_argnums=0, out_shardings=replicated)

  def initial_state(self) -> LifelongState:
    config = self.config
    train = train_state_lib.create_train_state(
        self.model, self.tx, self.train_tasks[0]['input'][:1],
        jax.random.key(config.seed), self.mesh)
    names = {'si': ('path',), 'rwalk': ('path', 'fisher', 'score')}.get(
        config.method, ())

    def start(train):
      params = train.params
      return LifelongState(
          train=train, anchor=jax.tree.map(jnp.copy, params),
          importance=_zeros_like(params),
          tracks={name: _zeros_like(params) for name in names})

    return jax.jit(start, out_shardings=mesh_lib.replicated(self.mesh))(train)

  def training_source(self, task: int) -> dict:
    if self.config.method == 'multitask':  # joint training on every task so far
      return _concat(self.train_tasks[:task + 1])
    return self.train_tasks[task]

  def memory(self, task: int) -> dict | None:
    """A-GEM's memory while training `task`: a fixed sample of each earlier task."""
    if self.config.method != 'agem' or task == 0:
      return None
    return _concat([_fixed_subset(t, self.config.agem.memory_per_task,
                                  self.config.seed + 1000 * (i + 1))
                    for i, t in enumerate(self.train_tasks[:task])])

  def memory_batch(self, memory, source, batch, step: int):
    """A-GEM's memory sample for `step`; before any memory, zero-weighted examples."""
    if self.config.method != 'agem':
      return batch  # unused
    size = batches_lib.local_batch_size(self.config.agem.memory_batch_size)
    rng = np.random.default_rng((self.config.seed, 7, step))
    pool = source if memory is None else memory  # same shapes either way
    count = batches_lib.num_examples(pool)
    picked = batches_lib.gather(pool, rng.choice(count, size,
                                                 replace=size > count))
    picked['weight'] = np.full(size, float(memory is not None), np.float32)
    return picked

  def evaluate(self, state: LifelongState) -> list[float]:
    return [steps_lib.evaluate(
        self.eval_step, state.train,
        batches_lib.eval_batches(t, self.local_batch, count),
        self.mesh)['accuracy']
            for t, count in zip(self.test_tasks, self.eval_counts)]

  def importance_sums(self, params, task: int):
    """(sum, count) over `importance_examples` of the task's training data."""
    source = _fixed_subset(self.train_tasks[task],
                           self.config.importance_examples,
                           self.config.seed + task)
    total, count = None, 0.0
    key = jax.random.fold_in(jax.random.key(self.config.seed + 1), task)
    for i, batch in enumerate(batches_lib.eval_batches(source,
                                                       self.local_batch)):
      count += float(batch['mask'].sum())
      sums = self.importance_step(params, mesh_lib.shard_batch(batch, self.mesh),
                                  jax.random.fold_in(key, i))
      total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    return total, jax.process_count() * count  # each process holds a share

  def end_task(self, state: LifelongState, task: int) -> LifelongState:
    """Importance, anchor and reset running sums once `task` is learned."""
    sums, count = None, 1.0
    if self.importance_step is not None:
      sums, count = self.importance_sums(state.train.params, task)
    return self.consolidate(state, sums, jnp.float32(count), jnp.int32(task))


def make_consolidate(config, mesh):
  """consolidate(state, importance sums, count, task) -> state, jitted once.

  Runs at the end of each task: adds the task's importance to the penalty's
  weights, moves the anchor to the current parameters and restarts the
  running sums. `sums` (EWC, MAS, SCP) are divided by `count`.
  """
  method = config.method

  def consolidate(state: LifelongState, sums, count, task):
    params = state.train.params
    importance, tracks = state.importance, dict(state.tracks)
    if sums is not None:
      importance = jax.tree.map(lambda w, s: w + s / count, importance, sums)
    elif method == 'si':
      importance = jax.tree.map(jnp.add, importance, methods.si_importance(
          tracks['path'], state.anchor, params, config.si.damping))
      tracks['path'] = _zeros_like(tracks['path'])
    elif method == 'rwalk':
      score = jax.tree.map(jax.nn.relu, tracks['path'])
      # Scores average over tasks: s_t = (s_{t-1} + s_task) / 2 from task 1 on.
      score = jax.tree.map(lambda a, b: jnp.where(task > 0, 0.5 * (a + b), b),
                           tracks['score'], score)
      tracks['score'] = score
      importance = jax.tree.map(jnp.add, methods.scale_to_unit_max(
          tracks['fisher']), methods.scale_to_unit_max(score))
      tracks['path'] = _zeros_like(tracks['path'])
    return state.replace(anchor=jax.tree.map(jnp.copy, params),
                         importance=importance, tracks=tracks)

  return jax.jit(consolidate, donate_argnums=0,
                 out_shardings=mesh_lib.replicated(mesh))


def task_names(config) -> list[str]:
  tasks = config.tasks
  if tasks.kind == 'rotated':
    return [f'{t * tasks.rotation_step:g}°' for t in range(tasks.num_tasks)]
  if tasks.kind == 'split':
    width = tasks_lib.NUM_CLASSES // tasks.num_tasks
    return [f'{t * width}-{(t + 1) * width - 1}' for t in range(tasks.num_tasks)]
  return [f'P{t}' for t in range(tasks.num_tasks)]


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  """Trains config.method over the task sequence; resumes from `workdir`."""
  check_config(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  for name, size in (('batch_size', config.batch_size),
                     ('agem.memory_batch_size', config.agem.memory_batch_size)):
    if size % mesh.size:
      raise ConfigError(f'config.{name}={size} must be a multiple of the '
                        f'number of devices ({mesh.size})')
  train_tasks, test_tasks = tasks_lib.make_tasks(config)
  run = LifelongRun(config, train_tasks, test_tasks, mesh)
  num_tasks, per_task = config.tasks.num_tasks, config.steps_per_task
  is_chief = jax.process_index() == 0

  state = run.initial_state()
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), every=config.checkpoint_every,
      keep=config.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state, record = checkpoints.restore(state)
    record = record['record']
  else:  # FWT's reference: the untrained model on every task
    record = {'random_init': run.evaluate(state), 'matrix': []}
  start = int(state.train.step)
  writer = metric_log.MetricWriter(workdir, resume_step=start) if is_chief else None
  metadata = lambda: {'config': config.to_dict(), 'record': record}

  progress = metric_log.Progress(num_tasks * per_task, initial=start)
  started = time.perf_counter()
  pending = []
  for task in range(len(record['matrix']), num_tasks):
    source = run.training_source(task)
    memory = run.memory(task)
    if start == task * per_task:
      state = run.restart_optimizer(state)
    for step in range(max(start, task * per_task) + 1, (task + 1) * per_task + 1):
      batch = batches_lib.train_batch(source, run.local_batch, step - 1,
                                      config.seed)
      memory_batch = run.memory_batch(memory, source, batch, step)
      state, step_metrics = run.train_step(
          state, mesh_lib.shard_batch(batch, mesh),
          mesh_lib.shard_batch(memory_batch, mesh))
      pending.append(step_metrics)
      task_done = step == (task + 1) * per_task
      # The end of a task is saved below, once its importance is in the state.
      saving = checkpoints.should_save(step) and not task_done
      if step % config.log_every and not task_done and not saving:
        continue
      means = trainer.fetch_means(
          pending, step, f'task {task}; the last good checkpoint in {workdir} '
          "is kept (lower optimizer.learning_rate or the method's strength)")
      pending = []
      progress.update(step, {'task': task, 'loss': means['loss']})
      if writer:
        writer.write(step, 'train', {**means, 'task': task},
                     echo=not progress.interactive)
      if saving:
        checkpoints.save(step, state, metadata())
    state = run.end_task(state, task)
    row = run.evaluate(state)
    record['matrix'].append(row)
    start = (task + 1) * per_task
    if writer:
      writer.write(start, 'eval', {
          **{f'task{j}/accuracy': a for j, a in enumerate(row)},
          'seen/accuracy': float(np.mean(row[:task + 1]))})
    checkpoints.save(start, state, metadata())
  progress.close()
  wall = time.perf_counter() - started

  matrix = np.asarray(record['matrix'])
  summary = {
      **metrics_lib.lifelong_metrics(matrix, record['random_init']),
      **{f'task{j}/accuracy': float(a) for j, a in enumerate(matrix[-1])},
      'baseline/random_init_accuracy': float(np.mean(record['random_init'])),
      'step': int(state.train.step), 'wall_seconds': wall}
  if writer:
    writer.close()
    path = epath.Path(workdir)
    (path / 'summary.json').write_text(json.dumps(summary, indent=1))
    (path / 'accuracy_matrix.json').write_text(json.dumps({
        'method': config.method, 'tasks': task_names(config),
        'matrix': matrix.tolist(), 'random_init': record['random_init']},
                                                          indent=1))
    if config.plots:
      metrics_lib.plot_accuracy_matrix(
          matrix, os.path.join(workdir, 'accuracy_matrix.png'),
          title=f'{config.method}: ACC {summary["acc"]:.3f}, '
          f'BWT {summary["bwt"]:+.3f}', task_names=task_names(config))
  checkpoints.close()
  return trainer.TrainResult(state, summary)
