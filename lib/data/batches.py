"""Deterministic batching: a training batch is a pure function of (step, seed).

A source is process-local: a dict of numpy arrays sharing a leading dimension,
or any object with `__len__` and `__getitem__(int)` returning a per-example
dict (e.g. a TFDS data source).
"""

from collections.abc import Iterator, Mapping, Sequence
import functools
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np

from lib import errors

Batch = dict[str, np.ndarray]


def num_examples(source: Any) -> int:
  """Number of examples in a source."""
  if isinstance(source, Mapping):
    sizes = {len(v) for v in source.values()}
    if len(sizes) != 1:
      raise errors.DataError(
          f'Source arrays have different lengths: {sorted(sizes)}.')
    return sizes.pop()
  return len(source)


def gather(source: Any, indices: Sequence[int] | np.ndarray) -> Batch:
  """The examples at `indices` as a dict of stacked numpy arrays."""
  indices = np.asarray(indices, dtype=np.int64)
  if isinstance(source, Mapping):
    return {k: np.asarray(v)[indices] for k, v in source.items()}
  examples = [source[int(i)] for i in indices]
  return {k: np.stack([np.asarray(ex[k]) for ex in examples])
          for k in examples[0]}


def _check_batch_size(batch_size: int, size: int) -> None:
  if batch_size <= 0:
    raise errors.ConfigError(f'batch_size must be positive, got {batch_size}.')
  if batch_size > size:
    raise errors.ConfigError(
        f'batch_size {batch_size} is larger than the data ({size} examples '
        'in this process).')


@functools.lru_cache(maxsize=2)
def _epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
  """The epoch's permutation, drawn once (1M examples take 10 ms to shuffle)."""
  order = np.random.default_rng((seed, epoch)).permutation(size)
  order.flags.writeable = False
  return order


def train_batch(source: Any, batch_size: int, step: int, seed: int) -> Batch:
  """The full training batch for `step`; each epoch is a fresh permutation.

  The last partial batch of an epoch is dropped, so every batch is full.
  """
  size = num_examples(source)
  _check_batch_size(batch_size, size)
  steps_per_epoch = size // batch_size
  epoch, position = divmod(int(step), steps_per_epoch)
  order = _epoch_order(size, seed, epoch)
  start = position * batch_size
  return gather(source, order[start:start + batch_size])


def train_batches(source: Any, batch_size: int, seed: int,
                  start_step: int = 0) -> Iterator[Batch]:
  """Endless batches from `start_step`, so a resumed run sees the same data."""
  _check_batch_size(batch_size, num_examples(source))
  step = start_step
  while True:
    yield train_batch(source, batch_size, step, seed)
    step += 1


def eval_batches(source: Any, batch_size: int,
                 num_batches: int | None = None) -> Iterator[Batch]:
  """Every example once, in order; the last batch is padded with example 0.

  Each batch has a float32 'mask' field: 1 for real examples, 0 for padding.
  `num_batches` (at least what the data needs) pads with fully masked batches,
  so that every process of a multi-host job runs the same number of steps.
  """
  size = num_examples(source)
  if batch_size <= 0:
    raise errors.ConfigError(f'batch_size must be positive, got {batch_size}.')
  needed = -(-size // batch_size)
  for start in range(0, max(num_batches or 0, needed) * batch_size, batch_size):
    indices = np.arange(start, min(start + batch_size, size))
    num_real = len(indices)
    indices = np.pad(indices, (0, batch_size - num_real))  # Pads with index 0.
    batch = gather(source, indices)
    batch['mask'] = (np.arange(batch_size) < num_real).astype(np.float32)
    yield batch


def eval_batch_count(source: Any, batch_size: int) -> int:
  """The most eval batches any process needs for its part of the data."""
  count = -(-num_examples(source) // batch_size)
  if jax.process_count() > 1:
    counts = multihost_utils.process_allgather(np.int32(count))
    count = int(np.max(counts))
  return count


def local_batch_size(global_batch_size: int) -> int:
  """This process's share of the global batch."""
  processes = jax.process_count()
  if global_batch_size <= 0 or global_batch_size % processes:
    raise errors.ConfigError(
        f'batch_size {global_batch_size} must be a positive multiple of the '
        f'number of processes ({processes}).')
  return global_batch_size // processes
