"""HW14: training one method over a sequence of tasks, with the lecture's metrics.

`train_and_evaluate(config, workdir)` trains `config.method` on the tasks in
order (`steps_per_task` steps each) as one `lib.loop` run, evaluates every
task after each one to fill the accuracy matrix, and reports ACC, BWT and
FWT (see metrics.py). The loop's step crosses task boundaries (see
sequence.py), so the loop owns resumption, logging and checkpoints: one at
the end of every task (or every `checkpoint_every` steps).
"""

import jax
import ml_collections

from lib import loop
from lib import mesh as mesh_lib
from lib.errors import ConfigError
from projects.lifelong import config as config_lib
from projects.lifelong import metrics
from projects.lifelong import sequence
from projects.lifelong import tasks as tasks_lib


def make_task(config: ml_collections.ConfigDict, workdir: str,
              mesh) -> loop.Task:
  """The loop task: every task of the sequence in order, then the report."""
  train_tasks, test_tasks = tasks_lib.make_tasks(config)
  run = sequence.TaskSequence(config, train_tasks, test_tasks, mesh)

  def report(state, summary):
    del summary
    return metrics.write_report(
        config, workdir, *jax.device_get((state.matrix, state.random_init)))

  return loop.Task(
      init=run.init, step=run.step,
      num_steps=config.steps_per_task * config.tasks.num_tasks,
      evaluate=run.evaluate, report=report,
      name=f'lifelong {config.method}',
      remedy="lower optimizer.learning_rate or the method's strength")


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains config.method over the task sequence; resumes from `workdir`."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  sizes = {'batch_size': config.batch_size,
           'agem.memory_batch_size': config.agem.memory_batch_size}
  if config.method == 'gem':  # each slot's examples split over the devices
    sizes['gem.memory_per_task'] = config.gem.memory_per_task
  for name, size in sizes.items():
    if size % mesh.size:
      raise ConfigError(f'config.{name}={size} must be a multiple of the '
                        f'number of devices ({mesh.size})')
  task = make_task(config, workdir, mesh)
  # Every task's end is evaluated (the matrix's row, recorded by the step).
  cadence = loop.Cadence.from_config(
      config, eval_every=config.steps_per_task,
      checkpoint_every=config.checkpoint_every or config.steps_per_task)
  return loop.run(task, workdir, cadence,
                  metadata={'config': config.to_dict()})
