"""Deep ensembles: M networks trained as one vmapped program.

The members' parameters, optimizer states and keys are stacked on a leading
member axis of one `TrainState`; `make_member_step` is one member's update
and `make_ensemble_step` maps it over the members with `jax.vmap` inside one
jitted step, donated, whose batch ([B, M, ...]: each member its own shuffle
of the data, as in Lakshminarayanan et al. 2017) is sharded over the mesh's
'data' axis along B.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lib import mesh as mesh_lib
from lib import predict
from lib.data import batches as batches_lib
from lib.train_state import TrainState


def init_member(model, tx, sample_input, key) -> TrainState:
  """One member's state from its key (params, optimizer, its own step key)."""
  init_key, state_key = jax.random.split(key)
  params = model.init(init_key, sample_input, train=False)['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), model_state={}, key=state_key)


def member_keys(seed: int, num_members: int) -> jax.Array:
  return jax.random.split(jax.random.key(seed), num_members)


def init_ensemble(model, tx, sample_input, keys, mesh) -> TrainState:
  """The members' states stacked on a leading axis, replicated on `mesh`."""
  init = jax.vmap(functools.partial(init_member, model, tx, sample_input))
  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))(keys)


def make_member_step(model, tx):
  """step(state, batch) -> (state, {'loss', 'accuracy'}) for one member, unjitted."""

  def loss_fn(params, batch):
    logits = model.apply({'params': params}, batch['image'])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == batch['label'])

  def step(state: TrainState, batch):
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1,
                         params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), {'loss': loss,
                                                'accuracy': accuracy}

  return step


def make_ensemble_step(model, tx, mesh):
  """step(stacked state, batch [B, M, ...]) -> (state, metrics), jitted once.

  Metrics are means over the members ('loss' for the loop's NaN stop) and
  the spread of the members' losses.
  """
  members = jax.vmap(make_member_step(model, tx), in_axes=(0, 1))

  def step(state, batch):
    state, metrics = members(state, batch)
    return state, {'loss': metrics['loss'].mean(),
                   'accuracy': metrics['accuracy'].mean(),
                   'member_loss_std': metrics['loss'].std()}

  replicated = mesh_lib.replicated(mesh)
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated))


def member_seed(seed: int, member: int) -> int:
  return seed * 1009 + member


def member_batches(source, batch_size: int, step: int, seed: int,
                   num_members: int) -> dict:
  """[B, M, ...]: member m's batch is `step` of its own shuffle of `source`."""
  per_member = [batches_lib.train_batch(source, batch_size, step,
                                        member_seed(seed, m))
                for m in range(num_members)]
  return {k: np.stack([b[k] for b in per_member], 1) for k in per_member[0]}


def make_predictor(model, mesh) -> predict.Predictor:
  """Per-example {'member_probs': [B, M, K], 'label'} of the stacked parameters."""

  def probs(params, batch, key):
    del key
    logits = jax.vmap(lambda p: model.apply({'params': p}, batch['image']))(
        params)
    return {'member_probs': jnp.moveaxis(jax.nn.softmax(logits), 0, 1),
            'label': batch['label']}

  return predict.Predictor(probs, mesh)
