"""Global explanations: what a unit of the network responds to.

  first_layer_filters      the first conv layer's kernels as small images
  layer_activations        one layer's output on an input ('intermediates')
  activation_maximization  an input that maximizes a class logit or a
                           feature channel: gradient ascent with L2 and total
                           variation penalties and random jitter (lax.scan)
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


def first_layer_filters(params) -> np.ndarray:
  """The kernels of the first conv layer ('Conv_0', else the first 4-D kernel)
  as [out_channels, kh, kw, in_channels], each scaled to [0, 1]."""
  if 'Conv_0' in params and 'kernel' in params['Conv_0']:
    kernel = params['Conv_0']['kernel']
  else:
    kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
               if getattr(path[-1], 'key', None) == 'kernel' and leaf.ndim == 4]
    if not kernels:
      raise ValueError('the model has no convolution kernel')
    kernel = kernels[0]
  kernel = np.moveaxis(np.asarray(kernel, np.float32), -1, 0)
  low = kernel.min(axis=(1, 2, 3), keepdims=True)
  high = kernel.max(axis=(1, 2, 3), keepdims=True)
  return (kernel - low) / np.maximum(high - low, 1e-12)


def layer_activations(model: nn.Module, variables, images,
                      layer: str = '') -> jax.Array:
  """The output of the top-level submodule `layer` (e.g. 'Conv_0',
  'ResidualBlock_1') on `images`; '' = the last feature map that lib.models
  sows as 'features'."""
  if layer:
    capture = lambda module, _: module.path == (layer,)
  else:
    capture = False
  _, state = model.apply(variables, images, train=False,
                         capture_intermediates=capture,
                         mutable=['intermediates'])
  intermediates = state['intermediates']
  if not layer:
    return intermediates['features'][0]
  if layer not in intermediates:
    raise ValueError(f'layer {layer!r} is not a top-level submodule of the '
                     'model')
  return intermediates[layer]['__call__'][0]


def total_variation(images) -> jax.Array:
  """Mean absolute difference of neighbouring pixels, per image: [B]."""
  down = jnp.abs(images[:, 1:] - images[:, :-1]).mean(axis=(1, 2, 3))
  right = jnp.abs(images[:, :, 1:] - images[:, :, :-1]).mean(axis=(1, 2, 3))
  return down + right


def activation_maximization(
    score_fn: Callable[[jax.Array], jax.Array], initial_images, targets, key,
    *, steps: int = 200, learning_rate: float = 0.05, l2: float = 0.0,
    tv: float = 0.0, jitter: int = 0) -> tuple[jax.Array, jax.Array]:
  """Inputs x in [0, 1] maximizing score_fn(x)[b, targets[b]] - l2 mean(x^2)
  - tv TV(x), by Adam ascent (each step on a copy rolled by up to `jitter`
  pixels, which discourages high-frequency patterns; pixels are clipped to
  [0, 1] after each step).

  `score_fn(images) -> [B, K]` is the logits (class visualization) or the
  spatial means of a layer's channels (filter visualization). Returns
  (images [B, H, W, C], target scores of the unrolled images per step
  [steps, B]).
  """
  optimizer = optax.adam(learning_rate)
  rows = jnp.arange(initial_images.shape[0])

  def objective(images, shift):
    scores = score_fn(jnp.roll(images, shift, axis=(1, 2)))[rows, targets]
    penalty = l2 * jnp.mean(images**2, axis=(1, 2, 3)) + tv * total_variation(
        images)
    return -(scores - penalty).sum()

  def step(carry, step_key):
    images, opt_state = carry
    shift = jax.random.randint(step_key, (2,), -jitter, jitter + 1)
    gradients = jax.grad(objective)(images, shift)
    updates, opt_state = optimizer.update(gradients, opt_state)
    images = jnp.clip(optax.apply_updates(images, updates), 0.0, 1.0)
    return (images, opt_state), score_fn(images)[rows, targets]

  (images, _), history = jax.lax.scan(
      step, (initial_images, optimizer.init(initial_images)),
      jax.random.split(key, steps))
  return images, history
