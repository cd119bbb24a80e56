"""The train state: one pytree of arrays that a step maps to the next."""

import functools
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


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(model, init_key, dropout_key, sample_input):
  # Compiled once per model and input shape: a run of stages, or a test
  # suite, builds the same model many times.
  variables = model.init({'params': init_key, 'dropout': dropout_key},
                         sample_input, train=False)
  return {k: v for k, v in variables.items() if k not in _TRANSIENT_COLLECTIONS}


def create_train_state(model, tx: optax.GradientTransformation, sample_input,
                       key, mesh) -> TrainState:
  """Initializes parameters from `sample_input` and replicates them on `mesh`."""
  init_key, dropout_key, state_key = jax.random.split(key, 3)
  # Host values enter the jit below as the same replicated value in every
  # process of a multi-host job.
  variables = jax.device_get(_init_variables(model, init_key, dropout_key,
                                             sample_input))
  key_data = jax.device_get(jax.random.key_data(state_key))
  impl = jax.random.key_impl(state_key)

  def place(variables, key_data):
    variables = dict(variables)
    params = variables.pop('params')
    return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                      opt_state=tx.init(params), model_state=variables,
                      key=jax.random.wrap_key_data(key_data, impl=impl))

  return jax.jit(place, out_shardings=mesh_lib.replicated(mesh))(variables,
                                                                 key_data)
