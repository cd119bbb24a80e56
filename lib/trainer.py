"""The general training loop every supervised project runs.

A project builds an `Experiment` (model, loss, eval metrics, data); this loop
adds the rest: sharding, logging, evaluation, checkpoints and resumption,
early stopping, a NaN stop and learning-curve plots.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, NamedTuple

from etils import epath
import flax.linen as nn
import jax
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
from lib.data import batches as batches_lib
from lib.errors import ConfigError
from lib.errors import NonFiniteLossError


@dataclasses.dataclass
class Experiment:
  """What a project supplies; see lib/steps.py for the two functions' contracts."""
  model: nn.Module
  loss_fn: Callable
  eval_fn: Callable
  train_data: Any
  eval_data: dict[str, Any]
  sample_input: Any
  # Reference numbers measured on the same data, reported beside the model's.
  baselines: dict[str, float] = dataclasses.field(default_factory=dict)


class TrainResult(NamedTuple):
  state: train_state_lib.TrainState
  metrics: dict[str, float]


def _improved(value: float, best: float | None, mode: str) -> bool:
  return best is None or (value < best if mode == 'min' else value > best)


def fetch_means(pending: list, step: int, remedy: str) -> dict[str, float]:
  """Fetches the train metrics of the steps ending at `step`; their means.

  Raises NonFiniteLossError naming the first step whose loss is NaN or Inf,
  with `remedy` (where the last good checkpoint is, what to lower) appended.
  """
  fetched = jax.device_get(pending)
  for offset, values in enumerate(fetched):
    if not math.isfinite(float(values['loss'])):
      raise NonFiniteLossError(
          f'loss became {float(values["loss"])} at step '
          f'{step - len(fetched) + 1 + offset}; {remedy}')
  return {k: float(np.mean([v[k] for v in fetched])) for k in fetched[0]}


def _initial_state(config, experiment: Experiment, tx, mesh):
  return train_state_lib.create_train_state(
      experiment.model, tx, experiment.sample_input,
      jax.random.key(config.seed), mesh)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       experiment: Experiment) -> TrainResult:
  """Trains from scratch, or resumes from the latest checkpoint in `workdir`."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  if config.batch_size % mesh.size:
    raise ConfigError(f'config.batch_size={config.batch_size} must be a '
                      f'multiple of the number of devices ({mesh.size})')
  local_batch = batches_lib.local_batch_size(config.batch_size)
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  stopping = config.early_stopping
  is_chief = jax.process_index() == 0

  state = _initial_state(config, experiment, tx, mesh)
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), every=config.checkpoint_every,
      keep=config.keep_checkpoints)
  best_checkpoint = None
  if stopping.patience:
    best_checkpoint = checkpoint_lib.Checkpointer(
        os.path.join(workdir, 'best'), every=0, keep=1)
  loop = {'best': None, 'best_step': None, 'evals_without_improvement': 0}
  if checkpoints.latest_step() is not None:
    state, restored = checkpoints.restore(state)
    loop = restored['loop']
  start = int(state.step)
  writer = metric_log.MetricWriter(workdir, resume_step=start) if is_chief else None

  train_step = steps_lib.make_train_step(
      experiment.loss_fn, tx, mesh, log_grad_norm=config.log_grad_norm)
  eval_step = steps_lib.make_eval_step(experiment.eval_fn, mesh)
  batches = batches_lib.train_batches(experiment.train_data, local_batch,
                                      config.seed, start_step=start)
  metadata = lambda: {'config': config.to_dict(), 'loop': loop}
  # A run that early stopping ended stays ended when its command is re-run.
  stopped_before = bool(stopping.patience) and (
      loop['evals_without_improvement'] >= stopping.patience)
  last_step = start if stopped_before else config.num_steps

  eval_counts = {split: batches_lib.eval_batch_count(data, local_batch)
                 for split, data in experiment.eval_data.items()}

  def evaluate_all(state) -> dict[str, float]:
    results = {}
    for split, data in experiment.eval_data.items():
      split_batches = batches_lib.eval_batches(data, local_batch,
                                               eval_counts[split])
      values = steps_lib.evaluate(eval_step, state, split_batches, mesh)
      results.update({f'{split}/{k}': v for k, v in values.items()})
      if writer:
        writer.write(int(state.step), split, values)
    return results

  progress = metric_log.Progress(config.num_steps, initial=start)
  pending = []  # train metrics on device, fetched only at log/eval/save time
  train_means, eval_results, stop = {}, {}, False
  started = time.perf_counter()
  for step in range(start + 1, last_step + 1):
    state, metrics = train_step(state, mesh_lib.shard_batch(next(batches), mesh))
    pending.append(metrics)
    last = step == config.num_steps
    evaluating = step % config.eval_every == 0 or last
    saving = checkpoints.should_save(step) or last
    if not (step % config.log_every == 0 or evaluating or saving):
      continue

    train_means = fetch_means(
        pending, step, f'stopped without saving, the last good checkpoint in '
        f'{workdir} is kept (lower optimizer.learning_rate or set '
        'optimizer.grad_clip_norm)')
    pending = []
    progress.update(step, {'loss': train_means['loss']})
    if writer:
      writer.write(step, 'train', {
          **train_means, 'steps_per_second': progress.steps_per_second(step)},
                   echo=not progress.interactive)

    if evaluating and experiment.eval_data:
      eval_results = evaluate_all(state)
      if stopping.patience:
        if stopping.metric not in eval_results:
          raise ConfigError(
              f'config.early_stopping.metric={stopping.metric!r} is not an '
              f'eval metric; choose from {sorted(eval_results)}')
        value = eval_results[stopping.metric]
        if _improved(value, loop['best'], stopping.mode):
          loop.update(best=value, best_step=step, evals_without_improvement=0)
          best_checkpoint.save(step, state, metadata())
        else:
          loop['evals_without_improvement'] += 1
          stop = loop['evals_without_improvement'] >= stopping.patience
    if saving or stop:
      checkpoints.save(step, state, metadata())
    if stop:
      break
  progress.close()
  wall = time.perf_counter() - started

  if not eval_results and experiment.eval_data:
    eval_results = evaluate_all(state)  # resumed at the last step
  summary = {**{f'train/{k}': v for k, v in train_means.items()},
             **eval_results, **experiment.baselines,
             'step': int(state.step), 'wall_seconds': wall}
  if stopping.patience and loop['best'] is not None:
    summary[f'best/{stopping.metric}'] = loop['best']
    summary['best_step'] = loop['best_step']
  if writer:
    writer.close()
    (epath.Path(workdir) / 'summary.json').write_text(
        json.dumps(summary, indent=1))
    if config.plots:
      plots.plot_learning_curves(metric_log.read_metrics(workdir),
                                 os.path.join(workdir, 'learning_curves.png'),
                                 title=config.project)
  checkpoints.close()
  if best_checkpoint:
    best_checkpoint.close()
  return TrainResult(state, summary)


def restore_best(config, workdir: str, experiment: Experiment):
  """The state saved at the best evaluation (early stopping), or the latest one."""
  mesh = mesh_lib.make_mesh(config.num_devices)
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  state = _initial_state(config, experiment, tx, mesh)
  for folder in ('best', 'checkpoints'):
    path = os.path.join(workdir, folder)
    if epath.Path(path).is_dir():
      checkpoints = checkpoint_lib.Checkpointer(
          path, every=0, keep=config.keep_checkpoints)
      if checkpoints.latest_step() is not None:
        return checkpoints.restore(state)[0]
  raise ConfigError(f'no checkpoint in {workdir}')
