"""Batched, sharded, multi-host-correct prediction, and whole-split metrics.

`Predictor(fn, mesh)` compiles `fn(params, batch, key) -> per-example outputs`
once, with the batch sharded over the mesh and the outputs left sharded, and
maps it over a process-local source in fixed-size padded batches (so every
process runs the same number of steps and one compilation serves any size).
Metrics that are not means over examples (AUROC, BLEU, FID, an episode
accuracy's interval) are computed once on the gathered outputs of the whole
split: `evaluate_split`.
"""

import math
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
import numpy as np

from lib import mesh as mesh_lib
from lib.data import batches as batches_lib


class Predictor:
  """Runs `fn(params, batch, key)` over a source; outputs as numpy, in order."""

  def __init__(self, fn: Callable, mesh):
    self._mesh = mesh
    replicated = mesh_lib.replicated(mesh)
    sharded = mesh_lib.batch_sharding(mesh)
    self._fn = jax.jit(fn, in_shardings=(replicated, sharded, replicated),
                       out_shardings=sharded)

  def __call__(self, params, source, batch_size: int, key=None, *,
               all_processes: bool = False):
    """Outputs for every example of this process's `source` (a batches source).

    `batch_size` is global. Each batch's key is `key` folded with the batch's
    index (a fixed key when none is given). With `all_processes`, every
    process gets the outputs of all processes' examples, process by process.
    """
    local_batch = batches_lib.local_batch_size(batch_size)
    key = jax.random.key(0) if key is None else key
    count = batches_lib.eval_batch_count(source, local_batch)
    outputs, masks = [], []
    for index, batch in enumerate(batches_lib.eval_batches(
        source, local_batch, count)):
      masks.append(batch.pop('mask') > 0)
      out = self._fn(params, mesh_lib.shard_batch(batch, self._mesh),
                     jax.random.fold_in(key, index))
      outputs.append(jax.tree.map(np.asarray, self._local(out)))
    if not outputs:
      return {}
    stacked = jax.tree.map(lambda *xs: np.concatenate(xs), *outputs)
    mask = np.concatenate(masks)
    if all_processes and jax.process_count() > 1:
      stacked, mask = multihost_utils.process_allgather((stacked, mask),
                                                        tiled=True)
    return jax.tree.map(lambda x: x[mask], stacked)

  def _local(self, out):
    if jax.process_count() == 1:
      return out
    return multihost_utils.global_array_to_host_local_array(
        out, self._mesh, jax.P(mesh_lib.DATA_AXIS))


def evaluate_split(predictor: Predictor, params, source, batch_size: int,
                   metrics_fn: Callable[[Any], dict[str, float]],
                   key=None) -> dict[str, float]:
  """`metrics_fn` of the outputs on the whole split (every process's part)."""
  outputs = predictor(params, source, batch_size, key, all_processes=True)
  return {name: float(value) for name, value in metrics_fn(outputs).items()}


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve of `scores` for binary `labels` (1 positive).

  The Mann-Whitney statistic with ties counted half, as sklearn's.
  """
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0
  positives, negatives = int(labels.sum()), int((~labels).sum())
  if not positives or not negatives:
    raise ValueError('AUROC needs both positive and negative examples')
  order = np.argsort(scores, kind='mergesort')
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  # Average ranks over ties.
  _, first, counts = np.unique(sorted_scores, return_index=True,
                               return_counts=True)
  average = first + (counts + 1) / 2.0
  ranks[order] = np.repeat(average, counts)
  return float((ranks[labels].sum() - positives * (positives + 1) / 2) /
               (positives * negatives))


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
  """The mean and the half-width of its normal 95% confidence interval."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(1.96 * values.std() /
                                     math.sqrt(max(len(values), 1)))
