"""Local explanations: which pixels of an image made a classifier say class c.

Every method is a pure, jittable function of a batch: `logits_fn(images) ->
logits [B, K]`, `images` [B, H, W, C] and `targets` [B] (the class explained
per image). Each example's score must depend on its own image only (models in
eval mode), so gradients of the batch sum are per-example gradients. Jit them
at the call site with the parameters as an argument, e.g.
`jax.jit(lambda params, x, t: saliency(partial(apply, params), x, t))`, so that
new parameters (the sanity check) reuse the compiled function.

  saliency               |d logit_c / d x|, max over channels [B, H, W]
  smoothgrad             saliency averaged over noisy copies of x [B, H, W]
  integrated_gradients   (x - x') * mean gradient on the path x' -> x [B, H, W, C]
  grad_cam               ReLU(sum_k mean(d logit_c / d A_k) A_k), upsampled [B, H, W]
  occlusion              drop of logit_c when a sliding patch is greyed out [B, H, W]
  lime                   weighted ridge surrogate over patch on/off masks [B, H, W]
  guided_backprop        |gradient through guided_relu|, max over C [B, H, W]
  lrp_epsilon            x * gradient through epsilon_stabilized [B, H, W, C]
  deeplift_rescale       (x - x0) * gradient through rescale_relu [B, H, W, C]
  deletion_curve         faithfulness: p(c) as the top-ranked pixels are removed
"""

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

LogitsFn = Callable[[jax.Array], jax.Array]
IG_RULES = ('trapezoid', 'riemann_left', 'riemann_right', 'riemann_middle')
BASELINES = ('zero', 'mean', 'blur')
LIME_OUTPUTS = ('probability', 'logit')


def target_scores(logits_fn: LogitsFn, images, targets) -> jax.Array:
  """logits_fn(images)[b, targets[b]]: [B]."""
  logits = logits_fn(images)
  return jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]


def input_gradients(logits_fn: LogitsFn, images, targets) -> jax.Array:
  """d logit_target / d image per example: [B, H, W, C]."""
  return jax.grad(lambda x: target_scores(logits_fn, x, targets).sum())(images)


def saliency(logits_fn: LogitsFn, images, targets) -> jax.Array:
  """Simonyan et al. 2014: the gradient's magnitude, max over channels."""
  return jnp.abs(input_gradients(logits_fn, images, targets)).max(axis=-1)


def smoothgrad(logits_fn: LogitsFn, images, targets, key, *,
               num_samples: int = 25, noise_level: float = 0.15,
               chunk: int | None = None) -> jax.Array:
  """Smilkov et al. 2017: saliency averaged over x + N(0, sigma^2).

  sigma = noise_level * (max(x) - min(x)) per image; `chunk` noisy batches
  run at once (None: all of them).
  """
  spread = images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3))
  sigma = noise_level * spread[:, None, None, None]

  def noisy_saliency(sample_key):
    noise = jax.random.normal(sample_key, images.shape, images.dtype)
    return saliency(logits_fn, images + sigma * noise, targets)

  keys = jax.random.split(key, num_samples)
  return jax.lax.map(noisy_saliency, keys, batch_size=chunk).mean(axis=0)


def path_points(steps: int, rule: str = 'trapezoid') -> tuple[np.ndarray,
                                                             np.ndarray]:
  """(alphas, weights) of the quadrature of int_0^1 g(alpha) d alpha."""
  if rule == 'trapezoid':
    alphas = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] /= 2
  elif rule.startswith('riemann_'):
    offset = {'riemann_left': 0.0, 'riemann_right': 1.0,
              'riemann_middle': 0.5}[rule]
    alphas = (np.arange(steps) + offset) / steps
    weights = np.full(steps, 1.0 / steps)
  else:
    raise ValueError(f'rule={rule!r}: choose one of {IG_RULES}')
  return alphas.astype(np.float32), weights.astype(np.float32)


def integrated_gradients(logits_fn: LogitsFn, images, targets, baselines, *,
                         steps: int = 64, rule: str = 'trapezoid',
                         chunk: int | None = None) -> jax.Array:
  """Sundararajan et al. 2017, per pixel and channel: [B, H, W, C].

  (x - x') times the gradient averaged along the straight path from the
  baseline x' to x, integrated with `steps` intervals of `rule`. The
  attributions sum to about f(x) - f(x') (completeness; see completeness_gap).
  """
  alphas, weights = path_points(steps, rule)
  difference = images - baselines

  def weighted_gradient(point):
    alpha, weight = point
    return weight * input_gradients(logits_fn, baselines + alpha * difference,
                                    targets)

  gradients = jax.lax.map(weighted_gradient, (alphas, weights),
                          batch_size=chunk)
  return difference * gradients.sum(axis=0)


def completeness_gap(logits_fn: LogitsFn, images, targets, baselines,
                     attributions) -> tuple[jax.Array, jax.Array]:
  """(sum of attributions - (f(x) - f(x')), f(x) - f(x')), both [B]."""
  difference = (target_scores(logits_fn, images, targets) -
                target_scores(logits_fn, baselines, targets))
  total = attributions.reshape(attributions.shape[0], -1).sum(axis=1)
  return total - difference, difference


def gaussian_blur(images, sigma: float) -> jax.Array:
  """Separable Gaussian blur of [B, H, W, C] images (edges padded by reflection)."""
  radius = max(1, int(math.ceil(3 * sigma)))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), images.dtype)
  padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius),
                            (0, 0)), mode='reflect')
  size = 2 * radius + 1
  height, width = images.shape[1:3]
  rows = sum(taps[i] * padded[:, i:i + height] for i in range(size))
  return sum(taps[i] * rows[:, :, i:i + width] for i in range(size))


def make_baseline(images, kind: str, *, blur_sigma: float = 2.0) -> jax.Array:
  """A reference image per example: 'zero' (black), 'mean' (each image's
  per-channel mean colour) or 'blur' (a Gaussian-blurred copy)."""
  if kind == 'zero':
    return jnp.zeros_like(images)
  if kind == 'mean':
    return jnp.broadcast_to(images.mean(axis=(1, 2), keepdims=True),
                            images.shape)
  if kind == 'blur':
    return gaussian_blur(images, blur_sigma)
  raise ValueError(f'baseline {kind!r}: choose one of {BASELINES}')


def grad_cam(feature_logits_fn, images, targets) -> jax.Array:
  """Selvaraju et al. 2017 on the model's last feature map A [B, h, w, K].

  `feature_logits_fn(images, delta) -> (logits, A)` computes the logits from
  A + delta (delta broadcasts, so a scalar 0 works): its gradient with respect
  to delta at 0 is d logit / d A (lib.models' `perturb('features')`). The
  class-c map ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of
  d logit_c / d A_k, is bilinearly upsampled to [B, H, W].
  """
  _, feature_shape = jax.eval_shape(feature_logits_fn, images,
                                    jnp.zeros((), images.dtype))

  def score(delta):
    logits, features = feature_logits_fn(images, delta)
    scores = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]
    return scores.sum(), features

  delta = jnp.zeros(feature_shape.shape, feature_shape.dtype)
  gradients, features = jax.grad(score, has_aux=True)(delta)
  weights = gradients.mean(axis=(1, 2))
  cam = jax.nn.relu(jnp.einsum('bhwk,bk->bhw', features, weights))
  # Linear interpolation keeps the map non-negative.
  return jax.image.resize(cam, (*images.shape[:3],), 'linear')


def occlusion_masks(height: int, width: int, patch: int,
                    stride: int) -> np.ndarray:
  """Every patch x patch window at `stride` (the last one flush with the edge): [P, H, W]."""
  def starts(size):
    first = list(range(0, max(size - patch, 0) + 1, stride))
    return first if first[-1] == max(size - patch, 0) else first + [
        size - patch]
  masks = []
  for top in starts(height):
    for left in starts(width):
      mask = np.zeros((height, width), np.float32)
      mask[top:top + patch, left:left + patch] = 1.0
      masks.append(mask)
  return np.stack(masks)


def occlusion(logits_fn: LogitsFn, images, targets, *, patch: int = 4,
              stride: int = 2, fill=0.0, chunk: int | None = None) -> jax.Array:
  """Zeiler & Fergus 2014: logit_c(x) - logit_c(x with a patch set to `fill`),
  averaged over the patches covering each pixel: [B, H, W].

  `fill` is a scalar or an array broadcasting to `images` (e.g. a blurred copy).
  """
  masks = jnp.asarray(occlusion_masks(images.shape[1], images.shape[2], patch,
                                      stride))
  original = target_scores(logits_fn, images, targets)
  fill = jnp.broadcast_to(jnp.asarray(fill, images.dtype), images.shape)

  def drop(mask):
    mask = mask[None, :, :, None]
    occluded = images * (1 - mask) + fill * mask
    return original - target_scores(logits_fn, occluded, targets)

  drops = jax.lax.map(drop, masks, batch_size=chunk)  # [P, B]
  coverage = masks.sum(axis=0)
  return jnp.einsum('pb,phw->bhw', drops, masks) / jnp.maximum(coverage, 1.0)


def patch_index(height: int, width: int, grid: int) -> np.ndarray:
  """The cell of a grid x grid partition that each pixel falls in: [H, W] ints."""
  rows = np.arange(height) * grid // height
  cols = np.arange(width) * grid // width
  return rows[:, None] * grid + cols[None, :]


def lime(logits_fn: LogitsFn, images, targets, key, *, grid: int = 4,
         num_samples: int = 256, kernel_width: float = 0.25,
         ridge: float = 1.0, fill=0.0, output: str = 'probability',
         chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
  """Ribeiro et al. 2016 over a grid x grid partition into patches.

  Samples on/off masks z in {0, 1}^(grid^2) (the first one all on), scores
  each masked image (patches off are set to `fill`), weights each sample by
  exp(-d^2 / kernel_width^2) with d the cosine distance from all-on, and fits
  score ~ b + w.z by weighted ridge regression in closed form (the intercept
  unpenalized). Returns (w painted on its patches [B, H, W], w [B, grid^2]).
  """
  if output not in LIME_OUTPUTS:
    raise ValueError(f'output={output!r}: choose one of {LIME_OUTPUTS}')
  batch, height, width = images.shape[:3]
  cells = grid * grid
  index = jnp.asarray(patch_index(height, width, grid))
  z = jax.random.bernoulli(key, 0.5, (num_samples, batch, cells))
  z = z.at[0].set(True).astype(images.dtype)
  fill = jnp.broadcast_to(jnp.asarray(fill, images.dtype), images.shape)

  def masked_scores(sample):
    mask = sample[:, index][..., None]  # [B, H, W, 1]
    logits = logits_fn(images * mask + fill * (1 - mask))
    if output == 'probability':
      logits = jax.nn.softmax(logits)
    return jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]

  scores = jax.lax.map(masked_scores, z, batch_size=chunk).T  # [B, N]
  z = jnp.swapaxes(z, 0, 1)  # [B, N, D]
  distance = 1.0 - jnp.sqrt(z.sum(axis=-1) / cells)  # cosine to all-on
  kernel = jnp.exp(-distance**2 / kernel_width**2)
  design = jnp.concatenate([jnp.ones_like(z[..., :1]), z], axis=-1)
  weighted = design * kernel[..., None]
  gram = jnp.einsum('bnd,bne->bde', weighted, design)
  penalty = jnp.diag(jnp.full(cells + 1, ridge).at[0].set(0.0))
  rhs = jnp.einsum('bnd,bn->bd', weighted, scores)
  coefficients = jnp.linalg.solve(gram + penalty, rhs[..., None])[..., 0]
  weights = coefficients[:, 1:]
  return weights[:, index], weights


@jax.custom_vjp
def guided_relu(x):
  """ReLU whose backward pass keeps only positive gradients at positive inputs
  (Springenberg et al. 2015): g * (x > 0) * (g > 0)."""
  return jax.nn.relu(x)


def _guided_relu_fwd(x):
  return jax.nn.relu(x), x


def _guided_relu_bwd(x, g):
  return (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_relu_fwd, _guided_relu_bwd)


def guided_backprop(guided_logits_fn: LogitsFn, images, targets) -> jax.Array:
  """|d logit_c / d x| of a model whose ReLUs are `guided_relu`, max over
  channels: [B, H, W]."""
  return saliency(guided_logits_fn, images, targets)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def epsilon_stabilized(z, epsilon: float):
  """The identity, whose backward pass scales the cotangent of an affine
  layer's output z by z / (z + epsilon sign(z)) (sign(0) = +1).

  With every Dense/Conv/BatchNorm output so marked, x * (d logit_c / d x) is
  the LRP-epsilon relevance (Bach et al. 2015): R_j = sum_k x_j w_jk R_k /
  (z_k + epsilon sign(z_k)), the gradient form of the rule.
  """
  del epsilon
  return z


def _epsilon_fwd(z, epsilon):
  del epsilon
  return z, z


def _epsilon_bwd(epsilon, z, g):
  sign = jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)
  return (g * z / (z + epsilon * sign),)


epsilon_stabilized.defvjp(_epsilon_fwd, _epsilon_bwd)


def lrp_epsilon(lrp_logits_fn: LogitsFn, images, targets) -> jax.Array:
  """Relevance x * (modified gradient) per pixel and channel [B, H, W, C];
  `lrp_logits_fn` is the model with its affine outputs `epsilon_stabilized`."""
  return images * input_gradients(lrp_logits_fn, images, targets)


# Below this |x - x0| the rescale rule's multiplier is the ordinary gradient.
RESCALE_TOLERANCE = 1e-6


@jax.custom_vjp
def rescale_relu(x):
  """ReLU on a batch [x; x0] (inputs, then their references, as halves).

  Its backward pass multiplies by DeepLIFT's rescale multiplier
  (relu(x) - relu(x0)) / (x - x0) in both halves (Shrikumar et al. 2017),
  the ordinary gradient where |x - x0| < RESCALE_TOLERANCE.
  """
  return jax.nn.relu(x)


def _rescale_fwd(x):
  return jax.nn.relu(x), x


def _rescale_bwd(x, g):
  inputs, references = jnp.split(x, 2, axis=0)
  delta = inputs - references
  close = jnp.abs(delta) < RESCALE_TOLERANCE
  slope = (jax.nn.relu(inputs) - jax.nn.relu(references)) / jnp.where(
      close, 1.0, delta)
  multiplier = jnp.where(close, (inputs > 0).astype(x.dtype), slope)
  return (g * jnp.concatenate([multiplier, multiplier], axis=0),)


rescale_relu.defvjp(_rescale_fwd, _rescale_bwd)


def deeplift_rescale(rescale_logits_fn: LogitsFn, images, targets,
                     baselines) -> jax.Array:
  """DeepLIFT's rescale rule per pixel and channel: [B, H, W, C].

  `rescale_logits_fn` is the model with `rescale_relu` activations, applied
  to [images; baselines] at once (eval mode: each example on its own), so
  every ReLU sees its input and its reference. The attributions
  (x - x0) * (modified gradient) sum to logit_c(x) - logit_c(x0) on networks
  of affine layers and ReLUs (summation-to-delta).
  """
  count = images.shape[0]

  def score(x):
    logits = rescale_logits_fn(jnp.concatenate([x, baselines], axis=0))
    return jnp.take_along_axis(logits[:count], targets[:, None],
                               axis=1).sum()

  return (images - baselines) * jax.grad(score)(images)


def deletion_curve(logits_fn: LogitsFn, images, targets, attributions, *,
                   steps: int = 16, fill=0.0, insertion: bool = False,
                   chunk: int | None = None) -> jax.Array:
  """Petsiuk et al. 2018: p(target) as pixels are removed most-attributed first.

  Deletion starts from the image and sets the top k/steps fraction of pixels
  (by `attributions` [B, H, W]) to `fill`; insertion starts from `fill` and
  puts them back. Returns p(target) [steps + 1, B]; its mean over the curve
  (`curve_auc`) is low for a faithful map under deletion, high under insertion.
  """
  batch, height, width = attributions.shape
  flat = attributions.reshape(batch, -1)
  ranks = jnp.argsort(jnp.argsort(-flat, axis=1), axis=1)
  ranks = ranks.reshape(batch, height, width, 1)
  fill = jnp.broadcast_to(jnp.asarray(fill, images.dtype), images.shape)
  fractions = jnp.linspace(0.0, 1.0, steps + 1)

  def probability(fraction):
    chosen = (ranks < jnp.round(fraction * height * width)).astype(images.dtype)
    keep = chosen if insertion else 1 - chosen
    probabilities = jax.nn.softmax(logits_fn(images * keep + fill * (1 - keep)))
    return jnp.take_along_axis(probabilities, targets[:, None], axis=1)[:, 0]

  return jax.lax.map(probability, fractions, batch_size=chunk)


def curve_auc(curve) -> jax.Array:
  """Area under a curve sampled at equal steps on [0, 1] (trapezoid): [B]."""
  return (curve[1:] + curve[:-1]).mean(axis=0) / 2
