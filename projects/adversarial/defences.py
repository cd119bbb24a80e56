"""Defences: input transformations before a classifier, and adversarial training.

Passive defences map images [B, H, W, C] in [0, 1] to images of the same shape
and range, in jax, so they run jitted on the device in front of any model:
  jpeg            JPEG-like compression: YCbCr, 8x8 block DCT, quantization with
                  the standard tables scaled by `quality` (no chroma subsampling)
  gaussian        Gaussian smoothing (a depthwise convolution)
  median          median filter over `size` x `size` windows
  resize_pad      random resize-and-pad (Xie et al. 2018)

Adversarial training (`adversarial_loss_fn`) is a loss for lib.trainer: each
training batch is attacked against the current parameters inside the jitted
train step, and the model is trained on the attacked batch:
  pgd   PGD-AT (Madry et al. 2018): a PGD attack with random start
  fgsm  fast FGSM-AT (Wong et al. 2020): one FGSM step of 1.25 epsilon from a
        uniform random start
"""

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lib import classifier
from lib import models
from projects.adversarial import attacks

DEFENCES = ('jpeg', 'gaussian', 'median', 'resize_pad')
ADVERSARIAL_TRAINING = ('pgd', 'fgsm')

# The JPEG standard's (Annex K) quantization tables at quality 50.
_LUMINANCE_TABLE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]],
                            np.float32)
_CHROMINANCE_TABLE = np.full((8, 8), 99, np.float32)
_CHROMINANCE_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66],
                              [24, 26, 56, 99], [47, 66, 99, 99]]
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                          [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]], np.float32)


def _dct_matrix(n: int = 8) -> np.ndarray:
  """The orthonormal DCT-II matrix: coefficients = D @ block @ D.T."""
  k, i = np.meshgrid(np.arange(n), np.arange(n), indexing='ij')
  matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
  matrix[0] /= np.sqrt(2)
  return matrix.astype(np.float32)


def quantization_tables(quality: int, channels: int) -> np.ndarray:
  """[C, 8, 8] tables, scaled for `quality` in [1, 100] as libjpeg does."""
  scale = 5000 / quality if quality < 50 else 200 - 2 * quality
  tables = [_LUMINANCE_TABLE] + [_CHROMINANCE_TABLE] * (channels - 1)
  return np.stack([np.clip(np.floor((t * scale + 50) / 100), 1, 255)
                   for t in tables])


def _round_straight_through(x):
  """Rounds, with the identity's gradient (BPDA), so adaptive attacks get gradients."""
  return x + jax.lax.stop_gradient(jnp.round(x) - x)


def jpeg(images: jax.Array, quality: int = 75) -> jax.Array:
  """JPEG-like compression and decompression of images in [0, 1].

  Colour images go to YCbCr, each channel's 8x8 blocks (edges padded to a
  multiple of 8) are DCT-transformed, divided by the quality-scaled table,
  rounded and multiplied back. Greyscale images use the luminance table.
  """
  batch, height, width, channels = images.shape
  x = images * 255.0
  if channels == 3:
    x = x @ jnp.asarray(_RGB_TO_YCBCR.T) + jnp.array([0.0, 128.0, 128.0])
  x = x - 128.0
  pad_h, pad_w = -height % 8, -width % 8
  x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode='edge')
  rows, cols = x.shape[1] // 8, x.shape[2] // 8
  blocks = x.reshape(batch, rows, 8, cols, 8, channels)
  dct = jnp.asarray(_dct_matrix())
  # coefficients[u, v] = sum_ij D[u, i] block[i, j] D[v, j], per block and channel
  coefficients = jnp.einsum('ui,brixjc,vj->bruxvc', dct, blocks, dct)
  tables = jnp.asarray(quantization_tables(quality, channels))
  tables = tables.transpose(1, 2, 0)[None, None, :, None]  # [1,1,8,1,8,C]
  coefficients = _round_straight_through(coefficients / tables) * tables
  x = jnp.einsum('ui,bruxvc,vj->brixjc', dct, coefficients, dct)
  x = x.reshape(batch, rows * 8, cols * 8, channels)[:, :height, :width]
  x = x + 128.0
  if channels == 3:
    x = (x - jnp.array([0.0, 128.0, 128.0])) @ jnp.asarray(
        np.linalg.inv(_RGB_TO_YCBCR).T)
  return jnp.clip(x / 255.0, 0.0, 1.0)


def gaussian(images: jax.Array, sigma: float = 1.0) -> jax.Array:
  """Gaussian smoothing with standard deviation `sigma` pixels (edges replicated)."""
  radius = max(1, math.ceil(2 * sigma))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), images.dtype)
  x = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)),
              mode='edge')
  # Separable: a vertical then a horizontal 1-D filter, every channel alike.
  size = 2 * radius + 1
  x = sum(taps[i] * x[:, i:i + images.shape[1]] for i in range(size))
  return sum(taps[i] * x[:, :, i:i + images.shape[2]] for i in range(size))


def median(images: jax.Array, size: int = 3) -> jax.Array:
  """The median of each `size` x `size` window (odd size; edges replicated)."""
  radius = size // 2
  _, height, width, _ = images.shape
  x = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)),
              mode='edge')
  windows = jnp.stack([x[:, i:i + height, j:j + width]
                       for i in range(size) for j in range(size)])
  return jnp.median(windows, axis=0)


def make_defence(name: str, settings) -> Callable[[jax.Array, jax.Array],
                                                  jax.Array]:
  """defence(key, images) -> images for one of DEFENCES, from config.defence's fields."""
  if name == 'jpeg':
    return lambda key, images: jpeg(images, settings.jpeg_quality)
  if name == 'gaussian':
    return lambda key, images: gaussian(images, settings.gaussian_sigma)
  if name == 'median':
    return lambda key, images: median(images, settings.median_size)
  if name == 'resize_pad':
    return lambda key, images: attacks.random_resize_and_pad(
        key, images, min_scale=settings.resize_min_scale)
  raise ValueError(f'defence {name!r}: choose from {DEFENCES}')


def training_attack(method: str, *, epsilon: float, step_size: float,
                    num_steps: int) -> Callable:
  """The attack adversarial training `method` ('pgd' or 'fgsm') runs per batch."""
  if method == 'pgd':
    return functools.partial(attacks.pgd, epsilon=epsilon, step_size=step_size,
                             num_steps=num_steps)
  if method == 'fgsm':  # Wong et al. 2020: random start, step 1.25 epsilon
    return functools.partial(attacks.iterative_attack, epsilon=epsilon,
                             step_size=1.25 * epsilon, num_steps=1,
                             random_start=True)
  raise ValueError(f'adversarial training {method!r}: choose from '
                   f'{ADVERSARIAL_TRAINING}')


def adversarial_loss_fn(model, attack: Callable, *,
                        augment: Callable | None = None,
                        label_smoothing: float = 0.0,
                        input_key: str = 'image', label_key: str = 'label'):
  """A lib.steps loss_fn that trains `model` on `attack`ed (augmented) batches.

  `attack(logits_fn, images, labels, key)` runs against the current
  parameters with the model in training mode (batch statistics, as the papers
  do); its batch-norm updates are discarded and no gradient flows through it.
  """
  base_loss_fn, _ = classifier.classifier_fns(
      model, label_smoothing=label_smoothing, input_key=input_key,
      label_key=label_key)

  def loss_fn(params, model_state, batch, key):
    augment_key, attack_key, dropout_key, loss_key = jax.random.split(key, 4)
    images = batch[input_key]
    if augment is not None:
      images = augment(augment_key, images)

    def logits_fn(x):
      return models.apply_model(model, params, model_state, x, train=True,
                                key=dropout_key)[0]

    adversarial = jax.lax.stop_gradient(
        attack(logits_fn, images, batch[label_key], attack_key))
    return base_loss_fn(params, model_state,
                        {**batch, input_key: adversarial}, loss_key)

  return loss_fn
