"""Magnitude pruning as masks, and structured (filter) pruning as real slimming.

Unstructured: `magnitude_masks` zeroes exactly round(sparsity x n) of the
kernels' weights, the smallest in absolute value, over all kernels at once
('global') or within each kernel ('layer'); `keep_pruned` is an optax
transformation that keeps them zero while fine-tuning; `sparsity_schedule`
raises the sparsity over rounds (Zhu & Gupta 2017's cubic schedule).

Structured: `slim_separable` removes, in every layer that makes channels, the
filters with the smallest L1 norm (Li et al. 2017) and cuts the matching
inputs of the layers that read them, giving a smaller dense SeparableCNN (or
low_rank_separable_cnn) whose parameters, FLOPs and bytes are real.
"""

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from projects.compression import measure


def sparsity_schedule(start: float, target: float, rounds: int) -> list[float]:
  """Sparsity after each of `rounds` rounds going from `start` to `target`:
  fast at first, slower near the end (start + (target - start)(1 - (1 - r/R)^3))."""
  return [start + (target - start) * (1 - (1 - r / rounds) ** 3)
          for r in range(1, rounds + 1)]


def _scores(params, masks):
  """|w| of kernels, -1 where already pruned (they stay pruned); None elsewhere."""

  def score(path, w, m):
    if not measure.is_kernel(path, w):
      return None
    return jnp.where(m > 0, jnp.abs(w), -1.0)

  if masks is None:
    masks = jax.tree.map(jnp.ones_like, params)
  return jax.tree_util.tree_map_with_path(score, params, masks)


def _smallest(scores: jax.Array, count: int) -> jax.Array:
  """1/0 mask keeping all but the `count` lowest scores (ties by position)."""
  order = jnp.argsort(scores.ravel(), stable=True)
  keep = jnp.ones(scores.size, jnp.float32).at[order[:count]].set(0.0)
  return keep.reshape(scores.shape)


@functools.partial(jax.jit, static_argnames=('sparsity', 'scope'))
def magnitude_masks(params, sparsity: float, *, scope: str = 'global',
                    masks=None):
  """1/0 masks (ones for non-kernel leaves) pruning `sparsity` of the kernels.

  `masks`: those of an earlier round; their zeros stay zeros, so the
  sparsity only grows.
  """
  if not 0.0 <= sparsity < 1.0:
    raise ValueError(f'sparsity={sparsity} must be in [0, 1)')
  scores = _scores(params, masks)
  leaves, treedef = jax.tree.flatten(scores, is_leaf=lambda x: x is None)
  kernels = [s for s in leaves if s is not None]
  if scope == 'global':
    flat = jnp.concatenate([s.ravel() for s in kernels])
    keep = _smallest(flat, round(sparsity * flat.size))
    sizes = np.cumsum([0] + [s.size for s in kernels])
    kept = iter([keep[a:b].reshape(s.shape)
                 for a, b, s in zip(sizes[:-1], sizes[1:], kernels)])
  elif scope == 'layer':
    kept = iter([_smallest(s, round(sparsity * s.size)) for s in kernels])
  else:
    raise ValueError(f"scope={scope!r}: choose 'global' or 'layer'")
  new = [None if s is None else next(kept) for s in leaves]
  new = jax.tree.unflatten(treedef, new)
  return jax.tree.map(lambda m, p: jnp.ones_like(p) if m is None else m,
                      new, params, is_leaf=lambda x: x is None)


def apply_masks(params, masks):
  return jax.tree.map(lambda p, m: p * m.astype(p.dtype), params, masks)


class PrunedMask(NamedTuple):
  masks: Any  # 1 where a weight may change, 0 where it was pruned


def keep_pruned() -> optax.GradientTransformation:
  """Zeroes the updates of pruned weights, so they stay exactly zero.

  Chain it after an optimizer and initialize that on the pruned parameters:
  the mask is the zero pattern of the kernels at `init` (a trained weight is
  never exactly zero by chance), so one jitted step serves every pruning
  round.
  """

  def init(params):
    return PrunedMask(jax.tree_util.tree_map_with_path(
        lambda path, p: (p != 0).astype(p.dtype) if measure.is_kernel(path, p)
        else jnp.ones_like(p), params))

  def update(updates, state, params=None):
    del params
    return apply_masks(updates, state.masks), state

  return optax.GradientTransformation(init, update)


def kernel_sparsity(params) -> float:
  """Fraction of zeros over all kernels (what magnitude_masks prunes)."""
  zeros = total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if measure.is_kernel(path, leaf):
      zeros += int(np.sum(np.asarray(leaf) == 0))
      total += leaf.size
  return zeros / max(total, 1)


# Structured pruning ----------------------------------------------------------


def kept_channels(count: int, fraction: float) -> int:
  """Channels left when `fraction` of `count` filters are removed (>= 1)."""
  return max(1, count - round(fraction * count))


def _top_filters(matrix: np.ndarray, keep: int) -> np.ndarray:
  """Sorted indices of the `keep` columns with the largest L1 norm."""
  norms = np.abs(matrix).sum(axis=0)
  return np.sort(np.argsort(-norms, kind='stable')[:keep])


def _take(layer: dict, index: np.ndarray, axis: int) -> dict:
  """Every array of one layer's dict, cut to `index` along `axis`."""
  return {name: (_take(value, index, axis) if isinstance(value, dict)
                 else np.take(np.asarray(value), index, axis=axis))
          for name, value in layer.items()}


def _pointwise_matrix(block: dict) -> np.ndarray:
  if 'Conv_1' in block:
    kernel = np.asarray(block['Conv_1']['kernel'])
    return kernel.reshape(kernel.shape[-2], kernel.shape[-1])
  factors = block['LowRankDense_0']
  return (np.asarray(factors['Dense_0']['kernel'])
          @ np.asarray(factors['Dense_1']['kernel']))


def _cut_pointwise(block: dict, inputs: np.ndarray, outputs: np.ndarray):
  if 'Conv_1' in block:
    conv = dict(block['Conv_1'])
    conv['kernel'] = np.asarray(conv['kernel'])[:, :, inputs][..., outputs]
    if 'bias' in conv:
      conv['bias'] = np.asarray(conv['bias'])[outputs]
    block['Conv_1'] = conv
    return
  factors = block['LowRankDense_0']
  up = _take(factors['Dense_1'], outputs, -1)
  down = {'kernel': np.asarray(factors['Dense_0']['kernel'])[inputs]}
  block['LowRankDense_0'] = {'Dense_0': down, 'Dense_1': up}


def slim_separable(model: nn.Module, variables, fraction: float):
  """Removes `fraction` of the filters of the stem and of every pointwise conv.

  Filters are ranked by L1 norm (of the pointwise weights from the channels
  still there); each removed channel also takes its batch-norm entries, the
  next depthwise filter and the next layer's input weights with it.
  Returns (smaller model, its variables).
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'fraction={fraction} must be in [0, 1)')
  # Fresh nested dicts (tree.map copies), cut in place below.
  params = jax.tree.map(np.asarray, dict(variables['params']))
  stats = jax.tree.map(np.asarray, dict(variables.get('batch_stats', {})))

  def cut(name: str, index: np.ndarray, axis: int, tree: dict, scope=()):
    for key in scope:
      tree = tree[key]
    if name in tree:
      tree[name] = _take(tree[name], index, axis)

  def cut_channel(scope, conv: str, norm: str, index):
    for tree in (params, stats):
      cut(norm, index, 0, tree, scope)
    cut(conv, index, -1, params, scope)

  stem = params['Conv_0']['kernel']
  keep = _top_filters(stem.reshape(-1, stem.shape[-1]),
                      kept_channels(stem.shape[-1], fraction))
  cut_channel((), 'Conv_0', 'BatchNorm_0', keep)
  widths = []
  for i in range(len(model.channels)):
    name = f'SeparableBlock_{i}'
    cut_channel((name,), 'Conv_0', 'BatchNorm_0', keep)  # depthwise
    matrix = _pointwise_matrix(params[name])[keep]
    outputs = _top_filters(matrix, kept_channels(matrix.shape[1], fraction))
    _cut_pointwise(params[name], keep, outputs)
    for tree in (params, stats):
      cut('BatchNorm_1', outputs, 0, tree, (name,))
    keep = outputs
    widths.append(len(keep))
  params['Dense_0'] = dict(params['Dense_0'],
                           kernel=params['Dense_0']['kernel'][keep])
  slim = model.clone(channels=tuple(widths), stem_channels=kept_channels(
      stem.shape[-1], fraction))
  slimmed = {'params': params}
  if stats:
    slimmed['batch_stats'] = stats
  return slim, jax.tree.map(jnp.asarray, slimmed)


def filter_fraction_removed(before: nn.Module, after: nn.Module) -> float:
  """Fraction of the stem and pointwise filters that structured pruning removed."""
  old = before.stem_channels + sum(before.channels)
  new = after.stem_channels + sum(after.channels)
  return 1 - new / old

