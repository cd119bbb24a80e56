"""The model-randomization sanity check for saliency methods (Adebayo et al. 2018).

A saliency method that explains the model must change when the model does:
re-initialize the trained parameters layer by layer from the output down
(cascading randomization) and compare each map with the trained model's by
Spearman rank correlation. A method whose maps stay correlated with
randomized weights (an edge detector of the input) fails the check.
"""

import jax
import jax.numpy as jnp


def cascade_layers(params_in_call_order) -> list[str]:
  """Top-level submodules with weights, from the output layer down.

  Pass params from `model.init` (its dict keeps the order of the calls):
  layers without a 'kernel' (batch norm's scale and bias) are not steps.
  """
  def has_kernel(tree):
    return any(getattr(path[-1], 'key', None) == 'kernel'
               for path, _ in jax.tree_util.tree_leaves_with_path(tree))
  names = [name for name, tree in params_in_call_order.items()
           if has_kernel(tree)]
  return names[::-1]


def randomize_top(params, fresh_params, layers: list[str], count: int):
  """`params` with the first `count` of `layers` taken from `fresh_params`."""
  replaced = set(layers[:count])
  return {name: fresh_params[name] if name in replaced else tree
          for name, tree in params.items()}


def _average_ranks(values) -> jax.Array:
  """Ranks 1..n of a vector, ties given their mean rank."""
  ordered = jnp.sort(values)
  below = jnp.searchsorted(ordered, values, side='left')
  up_to = jnp.searchsorted(ordered, values, side='right')
  return (below + up_to + 1) / 2


def spearman(maps_a, maps_b) -> jax.Array:
  """Spearman rank correlation of two [B, ...] batches of maps, per example: [B]."""
  def correlation(a, b):
    ra = _average_ranks(a.ravel())
    rb = _average_ranks(b.ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return (ra * rb).sum() / jnp.sqrt((ra**2).sum() * (rb**2).sum() + 1e-12)
  return jax.vmap(correlation)(maps_a, maps_b)
