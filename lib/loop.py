"""The one training loop: every project, supervised or not, runs through `run`.

A project describes its run as a `Task`: an initial state (any pytree: one
model, a generator and a discriminator, RL runners vmapped over seeds), a
host-side `step(state, step) -> (state, metrics)` that draws its own batch and
calls its own jitted functions (one train step, several, or a `lax.scan` chunk
of them), an evaluation and a final report. The loop owns the rest:
resumption, the log/eval/checkpoint cadence, the NaN stop, early stopping,
metric writers, the progress bar, hooks and `summary.json`.

Every process of a multi-host job runs the same loop and so takes part in
every sharded step and evaluation; only the chief (process 0) writes files.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

from etils import epath
import jax
import ml_collections
import numpy as np

from lib import checkpoint as checkpoint_lib
from lib import metric_log
from lib import plots
from lib.errors import ConfigError
from lib.errors import NonFiniteLossError

State = Any
Metrics = dict[str, Any]
# A hook sees each logged step: (step, state, means of the train metrics).
Hook = Callable[[int, State, dict[str, float]], None]


class TrainResult(NamedTuple):
  state: State
  metrics: dict[str, float]


@dataclasses.dataclass
class Task:
  """What a run supplies to the loop.

  init: () -> the initial state, placed on the mesh; also the structure a
    checkpoint is restored into.
  step: (state, step) -> (state, metrics); `step` counts loop iterations from
    1 to `num_steps` and is all the step may depend on besides the state (so
    a resumed run draws the same batches). `metrics` must hold 'loss', which
    the NaN stop reads; values stay on device until the loop logs them.
  evaluate: (state, step) -> {split: {name: value}}, run by every process.
  report: (state, summary) -> extra summary entries; run by every process at
    the end (write files only where `is_chief()`), e.g. figures and tables.
  """
  init: Callable[[], State]
  step: Callable[[State, int], tuple[State, Metrics]]
  num_steps: int
  evaluate: Callable[[State, int], dict[str, dict[str, float]]] | None = None
  report: Callable[[State, dict], dict] | None = None
  baselines: dict[str, float] = dataclasses.field(default_factory=dict)
  name: str = 'train'  # the progress bar's label and the plot's title
  # What the NaN stop's message advises.
  remedy: str = 'lower optimizer.learning_rate or set optimizer.grad_clip_norm'


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When the loop logs, evaluates and saves (in loop steps), and early stopping."""
  log_every: int
  eval_every: int
  checkpoint_every: int  # 0: only at the end
  keep_checkpoints: int
  stopping_metric: str = ''  # 'split/name' of an evaluated metric
  stopping_mode: str = 'min'
  patience: int = 0  # 0: no early stopping
  plots: bool = True

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, **overrides):
    stopping = config.early_stopping
    fields = dict(
        log_every=config.log_every, eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
        stopping_metric=stopping.metric, stopping_mode=stopping.mode,
        patience=stopping.patience, plots=config.plots)
    return cls(**{**fields, **overrides})


def is_chief() -> bool:
  return jax.process_index() == 0


def write_json(workdir, name: str, value):
  """Writes WORKDIR/name as JSON on the chief only."""
  if is_chief():
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(value, indent=1))


def write_text(workdir, name: str, text: str):
  """Writes WORKDIR/name on the chief only."""
  if is_chief():
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(text)


def read_summary(workdir) -> dict:
  """WORKDIR/summary.json of a finished run, or {}."""
  path = epath.Path(workdir) / 'summary.json'
  return json.loads(path.read_text()) if path.exists() else {}


def fetch_means(pending: Sequence[Metrics], step: int,
                remedy: str) -> dict[str, float]:
  """The means of the metrics of the steps ending at `step`.

  Raises NonFiniteLossError naming the first step whose loss is NaN or Inf.
  """
  fetched = jax.device_get(list(pending))
  for offset, values in enumerate(fetched):
    loss = float(values['loss'])
    if not math.isfinite(loss):
      raise NonFiniteLossError(
          f'loss became {loss} at step {step - len(fetched) + 1 + offset}; '
          f'{remedy}')
  return {k: float(np.mean([v[k] for v in fetched])) for k in fetched[0]}


def _improved(value: float, best: float | None, mode: str) -> bool:
  return best is None or (value < best if mode == 'min' else value > best)


def _flatten(results: dict[str, dict[str, float]]) -> dict[str, float]:
  return {f'{split}/{name}': float(value)
          for split, values in results.items() for name, value in values.items()}


def checkpointer(workdir, cadence: Cadence) -> checkpoint_lib.Checkpointer:
  best = None
  if cadence.patience:
    best = (cadence.stopping_metric, cadence.stopping_mode)
  return checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), every=cadence.checkpoint_every,
      keep=cadence.keep_checkpoints, best=best)


def restore_best(task: Task, workdir, cadence: Cadence) -> State:
  """The state at the best evaluation (with early stopping), else the latest."""
  checkpoints = checkpointer(workdir, cadence)
  step = checkpoints.best_step()
  if step is None:
    raise ConfigError(f'no checkpoint in {workdir}')
  state, _ = checkpoints.restore(task.init(), step)
  checkpoints.close()
  return state


def run(task: Task, workdir: str, cadence: Cadence, *,
        metadata: dict | None = None, hooks: Sequence[Hook] = ()) -> TrainResult:
  """Runs `task` from scratch, or resumes it from WORKDIR/checkpoints.

  A run that had finished (its last checkpoint is the summary's step) returns
  its restored state and saved summary without evaluating again, so a run of
  stages re-run after a stop resumes at the stage that had not finished.

  `metadata` (e.g. {'config': config.to_dict()}) is saved with every
  checkpoint; its 'config' is also written to WORKDIR/config.json.
  """
  metadata = dict(metadata or {})
  if 'config' in metadata:
    write_json(workdir, 'config.json', metadata['config'])
  state = task.init()
  checkpoints = checkpointer(workdir, cadence)
  loop = {'best': None, 'best_step': None, 'evals_without_improvement': 0}
  start = checkpoints.latest_step() or 0
  if start:
    state, restored = checkpoints.restore(state)
    loop = restored.get('loop', loop)
  stopped_before = bool(cadence.patience) and (
      loop['evals_without_improvement'] >= cadence.patience)
  last_step = start if stopped_before else task.num_steps
  finished = read_summary(workdir)
  if start and start == last_step and finished.get('step') == start:
    checkpoints.close()  # a finished run (a stage done before): as it ended
    return TrainResult(state, finished)
  writer = metric_log.MetricWriter(workdir, resume_step=start) if is_chief() else None

  def evaluate(state, step) -> dict[str, float]:
    if task.evaluate is None:
      return {}
    results = task.evaluate(state, step)
    if writer:
      for split, values in results.items():
        writer.write(step, split, values)
    return _flatten(results)

  def save(step, state, eval_results):
    metrics = None
    if cadence.patience and cadence.stopping_metric in eval_results:
      metrics = {cadence.stopping_metric: eval_results[cadence.stopping_metric]}
    checkpoints.save(step, state, {**metadata, 'loop': loop}, metrics=metrics)

  progress = metric_log.Progress(task.num_steps, initial=start, desc=task.name,
                                 enabled=is_chief())
  pending = []  # metrics on device, fetched only when logged
  train_means, eval_results, stop, done = {}, {}, False, start
  started = time.perf_counter()
  for step in range(start + 1, last_step + 1):
    state, metrics = task.step(state, step)
    done = step
    pending.append(metrics)
    last = step == task.num_steps
    evaluating = step % cadence.eval_every == 0 or last
    saving = checkpoints.should_save(step) or last
    if not (step % cadence.log_every == 0 or evaluating or saving):
      continue
    train_means = fetch_means(
        pending, step, f'stopped without saving; the last good checkpoint in '
        f'{workdir} is kept ({task.remedy})')
    pending = []
    progress.update(step, {'loss': train_means['loss']})
    if writer:
      writer.write(step, 'train', {
          **train_means, 'steps_per_second': progress.steps_per_second(step)},
                   echo=not progress.interactive)
    for hook in hooks:
      hook(step, state, train_means)

    evaluated = {}
    if evaluating and task.evaluate is not None:
      eval_results = evaluated = evaluate(state, step)
      if cadence.patience:
        if cadence.stopping_metric not in evaluated:
          raise ConfigError(
              f'config.early_stopping.metric={cadence.stopping_metric!r} is '
              f'not an eval metric; choose from {sorted(evaluated)}')
        value = evaluated[cadence.stopping_metric]
        if _improved(value, loop['best'], cadence.stopping_mode):
          loop.update(best=value, best_step=step, evals_without_improvement=0)
          saving = True  # the best state must be kept
        else:
          loop['evals_without_improvement'] += 1
          stop = loop['evals_without_improvement'] >= cadence.patience
    if saving or stop:
      save(step, state, evaluated)
    if stop:
      break
  progress.close()
  wall = time.perf_counter() - started

  if not eval_results:
    eval_results = evaluate(state, done)  # resumed at the last step
  summary = {**{f'train/{k}': v for k, v in train_means.items()},
             **eval_results, **task.baselines,
             'step': done, 'wall_seconds': wall}
  if cadence.patience and loop['best'] is not None:
    summary[f'best/{cadence.stopping_metric}'] = loop['best']
    summary['best_step'] = loop['best_step']
  if task.report is not None:
    summary.update(task.report(state, summary))
  checkpoints.close()
  if writer:
    writer.close()
    write_json(workdir, 'summary.json', summary)
    if cadence.plots:
      plots.plot_learning_curves(metric_log.read_metrics(workdir),
                                 os.path.join(workdir, 'learning_curves.png'),
                                 title=task.name)
  return TrainResult(state, summary)
