"""Splitting dict sources: held-out sets, subsets and per-process shards."""

from collections.abc import Sequence

import jax
import numpy as np

from lib import errors
from lib.data import batches

Source = dict[str, np.ndarray]


def take(source: Source, indices: Sequence[int] | np.ndarray) -> Source:
  """The examples at `indices`."""
  return batches.gather(source, indices)


def split_fraction(source: Source, fraction: float,
                   seed: int) -> tuple[Source, Source]:
  """A deterministic random split into (rest, held_out), `fraction` held out."""
  if not 0.0 < fraction < 1.0:
    raise errors.ConfigError(
        f'The held-out fraction must be in (0, 1), got {fraction}.')
  size = batches.num_examples(source)
  num_held_out = int(round(size * fraction))
  if not 0 < num_held_out < size:
    raise errors.ConfigError(
        f'Holding out {fraction} of {size} examples leaves an empty split.')
  order = np.random.default_rng(seed).permutation(size)
  held_out = np.sort(order[:num_held_out])
  rest = np.sort(order[num_held_out:])
  return take(source, rest), take(source, held_out)


def shard_for_process(source: Source) -> Source:
  """This process's examples: every `process_count`-th from `process_index`."""
  return {k: np.asarray(v)[jax.process_index()::jax.process_count()]
          for k, v in source.items()}


def random_subset(source: Source, limit: int, seed: int) -> Source:
  """`limit` examples drawn without replacement, in their original order.

  `limit` 0, or at least the source's size, keeps the whole source.
  """
  size = batches.num_examples(source)
  if not limit or limit >= size:
    return source
  chosen = np.random.default_rng(seed).permutation(size)[:limit]
  return take(source, np.sort(chosen))


def contiguous_share(source: Source) -> Source:
  """This process's contiguous share of a source every process holds whole.

  A global batch drawn alike on every process gives each its own rows (its
  devices' part of the sharded batch); outputs gathered process by process
  come back in the source's order.
  """
  size = batches.num_examples(source)
  shares = np.array_split(np.arange(size), jax.process_count())
  return take(source, shares[jax.process_index()])
