"""Builds the jitted, data-parallel train and eval steps from a project's loss.

A project supplies
  loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))
    (or loss_fn(params, model_state, batch, key, step), to anneal with the step)
  eval_fn(params, model_state, batch) -> {name: per-example values [B]}
and gets steps that shard the batch along the mesh's 'data' axis, keep the
state replicated, and donate the old state's buffers. Under `jax.jit` with
global arrays, means over the batch are means over the global batch, so no
explicit cross-device reduction is written here.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lib import mesh as mesh_lib
from lib.data import batches as batches_lib
from lib.train_state import TrainState


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation, mesh,
                    *, log_grad_norm: bool = False,
                    loss_takes_step: bool = False):
  """Returns train_step(state, batch) -> (state, metrics), compiled once.

  `log_grad_norm` adds the gradients' global norm to the metrics; it costs an
  extra pass over every gradient (about 5% of an MLP step on CPU).
  `loss_takes_step` passes the state's step (before this update) to the loss.
  """

  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(state.key, state.step)
    extra = (state.step,) if loss_takes_step else ()
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(
        state.params, state.model_state, batch, key, *extra)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, **metrics}
    if log_grad_norm:
      metrics['grad_norm'] = optax.global_norm(grads)
    return state.replace(step=state.step + 1, params=params,
                         opt_state=opt_state, model_state=model_state), metrics

  replicated = mesh_lib.replicated(mesh)
  return jax.jit(train_step, donate_argnums=0,
                 in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated))


def make_eval_step(eval_fn: Callable, mesh):
  """Returns eval_step(state, batch) -> {name: (masked sum, count)}."""

  def eval_step(state: TrainState, batch):
    values = eval_fn(state.params, state.model_state, batch)
    mask = batch['mask']
    return {name: (jnp.sum(value * mask), jnp.sum(mask))
            for name, value in values.items()}

  replicated = mesh_lib.replicated(mesh)
  return jax.jit(eval_step,
                 in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
                 out_shardings=replicated)


def evaluate(eval_step, state: TrainState, batches, mesh) -> dict[str, float]:
  """Masked means of the eval metrics over all `batches` (host numpy dicts)."""
  totals = None
  for batch in batches:
    sums = eval_step(state, mesh_lib.shard_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  if totals is None:
    return {}
  totals = jax.device_get(totals)
  return {name: float(np.asarray(s) / max(float(c), 1.0))
          for name, (s, c) in totals.items()}


class Evaluator:
  """Masked means of `eval_fn`'s metrics on named process-local splits.

  Every process runs the same number of batches (padded where its part is
  smaller), so each takes part in every sharded step.
  """

  def __init__(self, eval_fn: Callable, splits: dict, local_batch: int, mesh):
    self._step = make_eval_step(eval_fn, mesh)
    self._splits, self._local_batch, self._mesh = splits, local_batch, mesh
    self._counts = {name: batches_lib.eval_batch_count(data, local_batch)
                    for name, data in splits.items()}

  def __call__(self, state) -> dict[str, dict[str, float]]:
    return {name: evaluate(self._step, state, batches_lib.eval_batches(
        data, self._local_batch, self._counts[name]), self._mesh)
            for name, data in self._splits.items()}
