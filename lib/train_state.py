"""The train state: one pytree of arrays that a step maps to the next."""

from typing import Any

import flax
import jax
import optax

from lib import mesh as mesh_lib


# Collections a model may declare (flax `perturb`, `sow`) that are inputs or
# outputs of one call, not state carried between steps.
_TRANSIENT_COLLECTIONS = ('perturbations', 'intermediates')


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # extra flax collections, e.g. {'batch_stats': ...}
  key: jax.Array


def create_train_state(model, tx: optax.GradientTransformation, sample_input,
                       key, mesh) -> TrainState:
  """Initializes parameters from `sample_input` and replicates them on `mesh`."""
  init_key, dropout_key, state_key = jax.random.split(key, 3)

  def init():
    variables = model.init({'params': init_key, 'dropout': dropout_key},
                           sample_input, train=False)
    params = variables.pop('params')
    for collection in _TRANSIENT_COLLECTIONS:
      variables.pop(collection, None)
    return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                      opt_state=tx.init(params), model_state=dict(variables),
                      key=state_key)

  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))()
