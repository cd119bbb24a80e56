"""An auto-encoder's run on the shared loop, with its steps compiled once per protocol.

The one-class protocol trains one model per normal class; the `Runs` object
builds the sharded, donated train step and the eval step once, so every
class's run reuses the same compiled programs.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import loop
from lib import mesh as mesh_lib
from lib import optim
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib.data import batches as batches_lib
from lib.data import splits
from projects.autoencoder import objectives


class Runs:
  """Loop tasks that train `model` on given sources with shared jitted steps."""

  def __init__(self, config: ml_collections.ConfigDict, model, sample_input,
               mesh):
    self.config, self.model, self.mesh = config, model, mesh
    self.sample_input = sample_input
    loss_fn, eval_fn = objectives.make_fns(config, model)
    self.tx = optim.make_optimizer(config.optimizer, config.num_steps)
    self.train_step = steps_lib.make_train_step(
        loss_fn, self.tx, mesh, log_grad_norm=config.log_grad_norm,
        loss_takes_step=True)
    self.eval_step = steps_lib.make_eval_step(eval_fn, mesh)
    self.local_batch = batches_lib.local_batch_size(config.batch_size)
    self.local_eval_batch = batches_lib.local_batch_size(
        config.eval_batch_size)
    # lib.train_state.create_train_state compiles its placement per call;
    # one compiled init serves every class's run.
    self._init = jax.jit(self._fresh_state,
                         out_shardings=mesh_lib.replicated(mesh))

  def _fresh_state(self, key_data):
    init_key, state_key = jax.random.split(jax.random.wrap_key_data(key_data))
    params = self.model.init(init_key, self.sample_input)['params']
    return train_state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state=self.tx.init(params), model_state={}, key=state_key)

  def init(self, seed: int) -> train_state_lib.TrainState:
    return self._init(np.asarray(jax.random.key_data(jax.random.key(seed))))

  def task(self, train: dict, val: dict, seed: int, name: str) -> loop.Task:
    """Trains on this process's share of `train`, evaluates on `val`."""
    train, val = splits.shard_for_process(train), splits.shard_for_process(val)
    count = batches_lib.eval_batch_count(val, self.local_eval_batch)

    def step(state, step):
      batch = batches_lib.train_batch(train, self.local_batch, step - 1, seed)
      return self.train_step(state, mesh_lib.shard_batch(batch, self.mesh))

    def evaluate(state, step):
      del step
      return {'val': steps_lib.evaluate(
          self.eval_step, state,
          batches_lib.eval_batches(val, self.local_eval_batch, count),
          self.mesh)}

    return loop.Task(init=lambda: self.init(seed), step=step,
                     num_steps=self.config.num_steps, evaluate=evaluate,
                     name=name)

  def run(self, task: loop.Task, workdir: str) -> loop.TrainResult:
    return loop.run(task, workdir, loop.Cadence.from_config(self.config),
                    metadata={'config': self.config.to_dict()})
