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
  """Saves every `every` steps (and on demand); orbax keeps the newest `keep`.

  With `best=(metric, mode)` ('min' or 'max'), the checkpoint whose saved
  metrics hold the best `metric` is kept as well (orbax's BestN policy).
  """

  def __init__(self, directory: str, *, every: int, keep: int,
               best: tuple[str, str] | None = None):
    policies = [ocp.checkpoint_managers.LatestN(keep)]
    best_fn = best_mode = None
    if best is not None:
      name, best_mode = best
      best_fn = lambda metrics: metrics[name]
      policies.append(ocp.checkpoint_managers.BestN(
          get_metric_fn=best_fn, reverse=best_mode == 'min', n=1,
          keep_checkpoints_without_metrics=False))
    self._manager = ocp.CheckpointManager(
        directory if '://' in str(directory) else os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            create=True, enable_async_checkpointing=False,
            best_fn=best_fn, best_mode=best_mode or 'max',
            save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(
                every) if every > 0 else
            ocp.checkpoint_managers.SpecificStepsPolicy(()),
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(
                policies)))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The saved step with the best metric; the latest one without `best`."""
    return self._manager.best_step()

  def should_save(self, step: int) -> bool:
    return self._manager.should_save(step)

  def save(self, step: int, state, metadata: dict[str, Any],
           metrics: dict[str, float] | None = None):
    metadata = {**metadata, 'step': int(step), 'versions': package_versions()}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_keys_to_data(state)),
        metadata=ocp.args.JsonSave(metadata)), metrics=metrics, force=True)
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
