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
