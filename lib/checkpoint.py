"""Checkpoints: a thin wrapper over orbax, whose API keeps moving.

Each step's checkpoint holds the train state and a JSON metadata item (the
config, the step, package versions and the loop's own bookkeeping), written
together so a kill can never leave one without the other.
"""

import importlib.metadata
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'chex', 'orbax-checkpoint',
            'tensorflow-datasets')


def package_versions() -> dict[str, str]:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return versions


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def _keys_to_data(tree):
  """Typed PRNG keys become their raw uint32 data, which orbax can store."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x,
                      tree)


def _data_to_keys(tree, like):
  return jax.tree.map(
      lambda x, ref: jax.random.wrap_key_data(
          x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x, tree, like)


class Checkpointer:
  """Saves every `every` steps (and on demand), keeps the newest `keep`."""

  def __init__(self, directory: str, *, every: int, keep: int):
    self.every = every
    self._manager = ocp.CheckpointManager(
        directory if '://' in str(directory) else os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def should_save(self, step: int) -> bool:
    return self.every > 0 and step % self.every == 0

  def save(self, step: int, state, metadata: dict[str, Any]):
    metadata = {**metadata, 'step': int(step), 'versions': package_versions()}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_keys_to_data(state)),
        metadata=ocp.args.JsonSave(metadata)), force=True)
    self._manager.wait_until_finished()

  def restore(self, target_state, step: int | None = None):
    """Returns (state, metadata) of `step` (default: the latest).

    `target_state` gives the structure, shapes and shardings to restore into.
    """
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                            _keys_to_data(target_state))
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        metadata=ocp.args.JsonRestore()))
    return _data_to_keys(restored.state, target_state), dict(restored.metadata)

  def close(self):
    self._manager.close()
