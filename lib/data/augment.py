"""Image augmentation as batched jax functions, run inside the jitted train step.

Every function maps (key, images [B, H, W, C] float) to images of the same
shape, drawing independent randomness per example, so it runs on the device
next to the model and shards with the batch.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from lib.errors import ConfigError


def random_crop(key, images: jax.Array, padding: int) -> jax.Array:
  """Zero-pads each side by `padding`, then crops a random window of the original size."""
  batch, height, width, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding),
                            (0, 0)))
  offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                 (height, width, image.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def random_flip(key, images: jax.Array) -> jax.Array:
  """Mirrors each image left-right with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def colour_jitter(key, images: jax.Array, brightness: float = 0.0,
                  contrast: float = 0.0, saturation: float = 0.0) -> jax.Array:
  """Scales brightness, contrast and saturation by factors in [1-s, 1+s].

  Images are in [0, 1] and stay there; saturation needs 3 channels.
  """
  batch = images.shape[0]
  keys = jax.random.split(key, 3)

  def factors(key, strength):
    return jax.random.uniform(key, (batch, 1, 1, 1), minval=1 - strength,
                              maxval=1 + strength)

  if brightness:
    images = images * factors(keys[0], brightness)
  if contrast:
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    images = mean + (images - mean) * factors(keys[1], contrast)
  if saturation and images.shape[-1] == 3:
    grey = images @ jnp.array([0.299, 0.587, 0.114], images.dtype)
    grey = grey[..., None]
    images = grey + (images - grey) * factors(keys[2], saturation)
  return jnp.clip(images, 0.0, 1.0)


def mixup(key, images: jax.Array, alpha: float):
  """Mixes each example with another of the batch (Zhang et al. 2018).

  Returns (mixed images, weight, perm): one weight lambda ~ Beta(alpha, alpha)
  per batch, as the paper does; example i is weight * x_i + (1 - weight) *
  x_perm[i], and its target mixes the two labels with the same weight.
  """
  weight_key, perm_key = jax.random.split(key)
  weight = jax.random.beta(weight_key, alpha, alpha)
  perm = jax.random.permutation(perm_key, images.shape[0])
  return weight * images + (1 - weight) * images[perm], weight, perm


def config(**overrides) -> ml_collections.ConfigDict:
  """The augmentation fields; 0 (or False) turns each one off."""
  fields = ml_collections.ConfigDict(dict(
      crop_padding=0, flip=False, brightness=0.0, contrast=0.0,
      saturation=0.0, mixup_alpha=0.0))
  fields.update(overrides)
  return fields


def validate(augment: ml_collections.ConfigDict):
  for name in ('crop_padding', 'brightness', 'contrast', 'saturation',
               'mixup_alpha'):
    if augment[name] < 0:
      raise ConfigError(f'config.augment.{name}={augment[name]} must be >= 0')
  for name in ('brightness', 'contrast', 'saturation'):
    if augment[name] >= 1:
      raise ConfigError(f'config.augment.{name}={augment[name]} must be < 1')


def make_augment(augment: ml_collections.ConfigDict
                 ) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
  """(key, images) -> images applying the crop, flip and jitter `augment` asks for.

  None when it asks for none of them. Mixup mixes labels too, so the loss
  applies it (lib.classifier).
  """
  validate(augment)
  if not (augment.crop_padding or augment.flip or augment.brightness or
          augment.contrast or augment.saturation):
    return None

  def apply(key, images):
    crop_key, flip_key, jitter_key = jax.random.split(key, 3)
    if augment.crop_padding:
      images = random_crop(crop_key, images, augment.crop_padding)
    if augment.flip:
      images = random_flip(flip_key, images)
    if augment.brightness or augment.contrast or augment.saturation:
      images = colour_jitter(jitter_key, images, augment.brightness,
                             augment.contrast, augment.saturation)
    return images

  return apply


# Two-view augmentation for self-supervised learning (SimCLR's recipe):
# random resized crop, flip, colour jitter, greyscale and Gaussian blur, each
# drawn independently per example from its own key.


def _interpolation_matrix(start, length, size: int, out_size: int):
  """[out_size, size] bilinear weights sampling [start, start + length) of a
  `size`-pixel axis at `out_size` evenly spaced pixel centres (edges clamped)."""
  centres = start + (jnp.arange(out_size) + 0.5) * length / out_size - 0.5
  centres = jnp.clip(centres, 0.0, size - 1.0)
  return jnp.maximum(0.0, 1.0 - jnp.abs(centres[:, None] -
                                        jnp.arange(size)[None, :]))


def random_resized_crop(key, images: jax.Array, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> jax.Array:
  """Crops a window of random area fraction in `scale` and aspect ratio
  (width / height) in `ratio` (log-uniform), resized back to the image size
  bilinearly (torchvision's RandomResizedCrop, without its retries)."""
  batch, height, width, _ = images.shape
  keys = jax.random.split(key, 4)
  area = jax.random.uniform(keys[0], (batch,), minval=scale[0],
                            maxval=scale[1])
  log_ratio = jax.random.uniform(keys[1], (batch,), minval=jnp.log(ratio[0]),
                                 maxval=jnp.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  crop_w = jnp.minimum(jnp.sqrt(area * aspect) * width, width)
  crop_h = jnp.minimum(jnp.sqrt(area / aspect) * height, height)
  top = jax.random.uniform(keys[2], (batch,)) * (height - crop_h)
  left = jax.random.uniform(keys[3], (batch,)) * (width - crop_w)

  def crop(image, top, left, crop_h, crop_w):
    rows = _interpolation_matrix(top, crop_h, height, height)
    columns = _interpolation_matrix(left, crop_w, width, width)
    return jnp.einsum('ih,hwc,jw->ijc', rows, image, columns)

  return jax.vmap(crop)(images, top, left, crop_h, crop_w)


def _rgb_to_grey(images: jax.Array) -> jax.Array:
  return (images @ jnp.array([0.299, 0.587, 0.114], images.dtype))[..., None]


def random_hue(key, images: jax.Array, strength: float) -> jax.Array:
  """Rotates each RGB image's hue by a random angle in [-strength, strength]
  turns (a rotation of the chroma plane of YIQ; luma is kept)."""
  angle = 2 * jnp.pi * jax.random.uniform(
      key, (images.shape[0], 1, 1), minval=-strength, maxval=strength)
  to_yiq = jnp.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                      [0.211, -0.523, 0.312]], images.dtype)
  yiq = images @ to_yiq.T
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  i = yiq[..., 1] * cos - yiq[..., 2] * sin
  q = yiq[..., 1] * sin + yiq[..., 2] * cos
  yiq = jnp.stack([yiq[..., 0], i, q], axis=-1)
  return jnp.clip(yiq @ jnp.linalg.inv(to_yiq).T, 0.0, 1.0)


def _per_example(key, probability: float, images: jax.Array, transformed):
  """`transformed` where a coin of `probability` comes up, else `images`."""
  apply = jax.random.bernoulli(key, probability, (images.shape[0], 1, 1, 1))
  return jnp.where(apply, transformed, images)


def random_colour_jitter(key, images: jax.Array, strength: float,
                         probability: float = 0.8) -> jax.Array:
  """SimCLR's jitter: with `probability`, brightness, contrast and saturation
  factors in [1 - 0.8 s, 1 + 0.8 s] and a hue turn of up to 0.2 s (s the
  `strength`; saturation and hue only on RGB images)."""
  if not strength:
    return images
  keys = jax.random.split(key, 3)
  jittered = colour_jitter(keys[0], images, brightness=0.8 * strength,
                           contrast=0.8 * strength,
                           saturation=0.8 * strength)
  if images.shape[-1] == 3:
    jittered = random_hue(keys[1], jittered, 0.2 * strength)
  return _per_example(keys[2], probability, images, jittered)


def random_greyscale(key, images: jax.Array, probability: float) -> jax.Array:
  """Replaces each RGB image by its luma (in every channel) with `probability`."""
  if images.shape[-1] != 3 or not probability:
    return images
  grey = jnp.repeat(_rgb_to_grey(images), 3, axis=-1)
  return _per_example(key, probability, images, grey)


def _blur_matrix(sigma, size: int, radius: int):
  """[size, size] Gaussian blur of one axis (kernel 2 radius + 1, edges
  reflected as torchvision's) for one example's `sigma`."""
  offsets = jnp.arange(-radius, radius + 1)
  kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  kernel = kernel / kernel.sum()
  sources = jnp.arange(size)[:, None] + offsets[None, :]
  sources = jnp.where(sources < 0, -sources, sources)
  sources = jnp.where(sources >= size, 2 * (size - 1) - sources, sources)
  return jnp.zeros((size, size)).at[
      jnp.arange(size)[:, None], sources].add(kernel)


def random_gaussian_blur(key, images: jax.Array, probability: float,
                         sigma=(0.1, 2.0), kernel_fraction: float = 0.1
                         ) -> jax.Array:
  """With `probability`, blurs with sigma uniform in `sigma` (pixels) and a
  kernel about `kernel_fraction` of the image wide (SimCLR: 10%; at least 3)."""
  if not probability:
    return images
  batch, height, width, _ = images.shape
  radius = max(1, int(round(kernel_fraction * height / 2)))
  sigma_key, apply_key = jax.random.split(key)
  sigmas = jax.random.uniform(sigma_key, (batch,), minval=sigma[0],
                              maxval=sigma[1])

  def blur(image, sigma):
    rows = _blur_matrix(sigma, height, radius)
    columns = _blur_matrix(sigma, width, radius)
    return jnp.einsum('ih,hwc,jw->ijc', rows, image, columns)

  return _per_example(apply_key, probability, images,
                      jax.vmap(blur)(images, sigmas))


def views_config(**overrides) -> ml_collections.ConfigDict:
  """The two-view pipeline's fields (SimCLR's CIFAR-10 recipe by default).

  crop_scale and jitter_strength are the strength knobs: a crop keeps an area
  fraction in crop_scale; jitter_strength scales every colour change.
  """
  fields = ml_collections.ConfigDict(dict(
      crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3), flip=True,
      jitter_strength=0.5, jitter_probability=0.8, greyscale_probability=0.2,
      blur_probability=0.0, blur_sigma=(0.1, 2.0), blur_kernel_fraction=0.1))
  fields.update(overrides)
  return fields


def _require_range(values, field: str, low: float, high: float):
  values = tuple(values)
  if not (len(values) == 2 and low <= values[0] <= values[1] <= high):
    raise ConfigError(f'config.{field}={values!r} must be (min, max) with '
                      f'{low:g} <= min <= max <= {high:g}')


def validate_views(views: ml_collections.ConfigDict, field: str = 'augment'):
  """ConfigError naming the first unusable field of a views_config block."""
  _require_range(views.crop_scale, f'{field}.crop_scale', 1e-3, 1.0)
  _require_range(views.crop_ratio, f'{field}.crop_ratio', 1e-2, 1e2)
  _require_range(views.blur_sigma, f'{field}.blur_sigma', 1e-3, 1e3)
  if not 0.0 <= views.jitter_strength <= 1.0:
    raise ConfigError(f'config.{field}.jitter_strength='
                      f'{views.jitter_strength} must lie in [0, 1]')
  for name in ('jitter_probability', 'greyscale_probability',
               'blur_probability'):
    if not 0.0 <= views[name] <= 1.0:
      raise ConfigError(f'config.{field}.{name}={views[name]} must lie in '
                        '[0, 1]')
  if not 0.0 < views.blur_kernel_fraction <= 1.0:
    raise ConfigError(f'config.{field}.blur_kernel_fraction='
                      f'{views.blur_kernel_fraction} must lie in (0, 1]')


def make_view(views: ml_collections.ConfigDict
              ) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """(key, images in [0, 1]) -> one random view of each image, in [0, 1]."""
  validate_views(views)
  crop_scale, crop_ratio = tuple(views.crop_scale), tuple(views.crop_ratio)
  blur_sigma = tuple(views.blur_sigma)

  def apply(key, images):
    keys = jax.random.split(key, 5)
    images = random_resized_crop(keys[0], images, crop_scale, crop_ratio)
    if views.flip:
      images = random_flip(keys[1], images)
    images = random_colour_jitter(keys[2], images, views.jitter_strength,
                                  views.jitter_probability)
    images = random_greyscale(keys[3], images, views.greyscale_probability)
    images = random_gaussian_blur(keys[4], images, views.blur_probability,
                                  blur_sigma, views.blur_kernel_fraction)
    return jnp.clip(images, 0.0, 1.0)

  return apply


def make_two_views(views: ml_collections.ConfigDict):
  """(key, images) -> (view_1, view_2), two independent views of each image."""
  view = make_view(views)

  def apply(key, images):
    first, second = jax.random.split(key)
    return view(first, images), view(second, images)

  return apply
