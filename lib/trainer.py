"""Supervised training: an `Experiment` (model, loss, eval metrics, data) as a loop task.

A project whose algorithm is one loss on batches of examples builds an
`Experiment`; `train_and_evaluate` turns it into a `lib.loop.Task` (sharded,
donated train and eval steps from `lib.steps`, deterministic batches from
`lib.data.batches`) and runs it on the one loop.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections

from lib import config as config_lib
from lib import loop
from lib import mesh as mesh_lib
from lib import optim
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib.data import batches as batches_lib

TrainResult = loop.TrainResult


@dataclasses.dataclass
class Experiment:
  """What a project supplies; see lib/steps.py for the two functions' contracts.

  A `loss_fn` that takes a fifth argument `step` (set `loss_takes_step`) can
  anneal with the step, as DANN's lambda or a VAE's KL weight do.
  """
  model: nn.Module
  loss_fn: Callable
  eval_fn: Callable
  train_data: Any
  eval_data: dict[str, Any]
  sample_input: Any
  # Reference numbers measured on the same data, reported beside the model's.
  baselines: dict[str, float] = dataclasses.field(default_factory=dict)
  loss_takes_step: bool = False
  tx: Any = None  # an optax transformation; default: from config.optimizer


def make_task(config: ml_collections.ConfigDict,
              experiment: Experiment, mesh=None) -> loop.Task:
  """The loop task that trains `experiment` for config.num_steps steps."""
  config_lib.validate(config)
  mesh = mesh or mesh_lib.make_mesh(config.num_devices)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  local_batch = batches_lib.local_batch_size(config.batch_size)
  tx = experiment.tx or optim.make_optimizer(config.optimizer, config.num_steps)
  train_step = steps_lib.make_train_step(
      experiment.loss_fn, tx, mesh, log_grad_norm=config.log_grad_norm,
      loss_takes_step=experiment.loss_takes_step)
  evaluator = steps_lib.Evaluator(experiment.eval_fn, experiment.eval_data,
                                  local_batch, mesh)

  def init():
    return train_state_lib.create_train_state(
        experiment.model, tx, experiment.sample_input,
        jax.random.key(config.seed), mesh)

  def step(state, step):
    batch = batches_lib.train_batch(experiment.train_data, local_batch,
                                    step - 1, config.seed)
    return train_step(state, mesh_lib.shard_batch(batch, mesh))

  return loop.Task(init=init, step=step, num_steps=config.num_steps,
                   evaluate=(lambda state, _: evaluator(state))
                   if experiment.eval_data else None,
                   baselines=experiment.baselines, name=config.project)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       experiment: Experiment) -> TrainResult:
  """Trains from scratch, or resumes from the latest checkpoint in `workdir`."""
  task = make_task(config, experiment)
  return loop.run(task, workdir, loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})


def restore_best(config, workdir: str, experiment: Experiment):
  """The state saved at the best evaluation (early stopping), or the latest one."""
  return loop.restore_best(make_task(config, experiment), workdir,
                           loop.Cadence.from_config(config))
