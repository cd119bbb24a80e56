"""Convolutional encoders and decoders shared by the GAN and auto-encoder projects.

`ConvDecoder` maps a latent vector to an image (a GAN's generator, an
auto-encoder's decoder); `ConvEncoder` maps an image to a vector (a GAN's
discriminator or critic, an auto-encoder's encoder). Both work for the image
sizes of the data here (8x8 digits, 28x28 MNIST, 32x32 CIFAR-10, 64x64 faces):
the decoder starts from a small map and doubles it `upsamplings(size)` times,
halving its channels each time (DCGAN's shape), and the encoder mirrors it.
The encoder can spectrally normalize its layers (SNGAN): flax's
`nn.SpectralNorm` keeps each layer's power-iteration vector in the
'batch_stats' collection, updated when called with `train=True`.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib import conv
from lib.errors import ConfigError

NORMS = ('none', 'batch', 'layer', 'instance')
OUTPUTS = ('sigmoid', 'tanh', 'none')


def upsamplings(image_size: int) -> int:
  """How many 2x resolution steps lie between the starting map and the image:
  the image is halved while it stays even and at least 4 pixels wide (digits
  8 -> 4, MNIST 28 -> 7, CIFAR-10 32 -> 4, faces 64 -> 4)."""
  if image_size < 4:
    raise ConfigError(f'image size {image_size} is below the smallest (4)')
  steps = 0
  while image_size % 2 == 0 and image_size // 2 >= 4:
    image_size //= 2
    steps += 1
  return steps


def widths(width: int, image_size: int) -> list[int]:
  """Channels per resolution, largest map first: width, 2 width, 4 width..."""
  return [width * 2**i for i in range(upsamplings(image_size) + 1)]


def normalization(kind: str, train: bool):
  """The layer of `kind` (NORMS); batch norm keeps running averages."""
  if kind == 'batch':
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)
  if kind == 'layer':
    return nn.LayerNorm()
  if kind == 'instance':  # per image and channel (CycleGAN's)
    return nn.InstanceNorm()
  if kind == 'none':
    return lambda x: x
  raise ConfigError(f'norm must be one of {NORMS}, got {kind!r}')


def bias_before(norm: str) -> bool:
  """Whether a layer before a norm of `norm` kind needs a bias: batch and
  instance norm subtract the mean, and with it any bias."""
  return norm not in ('batch', 'instance')


def upsample2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x upsampling (resize-then-convolve avoids the
  checkerboard artefacts of strided transposed convolutions)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ConvDecoder(nn.Module):
  """Latent (N, D) -> image (N, size, size, C).

  Dense to a (start, start, width * 2**steps) map, then per resolution: 2x
  upsample -> 3x3 conv (half the channels) -> norm -> activation; a final 3x3
  conv to `image_channels`, squashed by `output` ('sigmoid' for [0, 1]
  images, 'tanh' for [-1, 1], 'none' for logits or means).
  """
  image_size: int
  image_channels: int = 1
  width: int = 32
  norm: str = 'batch'
  output: str = 'sigmoid'
  activation: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, z, *, train: bool = False):
    channels = widths(self.width, self.image_size)[::-1]
    start = self.image_size // 2**(len(channels) - 1)
    x = nn.Dense(start * start * channels[0])(z)
    x = x.reshape((z.shape[0], start, start, channels[0]))
    x = self.activation(normalization(self.norm, train)(x))
    for width in channels[1:]:
      x = conv.Conv(width, (3, 3), use_bias=bias_before(self.norm))(
          upsample2x(x))
      x = self.activation(normalization(self.norm, train)(x))
    x = conv.Conv(self.image_channels, (3, 3))(x)
    if self.output == 'sigmoid':
      return nn.sigmoid(x)
    if self.output == 'tanh':
      return jnp.tanh(x)
    if self.output == 'none':
      return x
    raise ConfigError(f'output must be one of {OUTPUTS}, got {self.output!r}')


def spectrally_normalized(layer: nn.Module, enabled: bool, train: bool):
  """`layer`, or `layer` with its weight divided by its largest singular
  value (one power-iteration step per training call)."""
  if not enabled:
    return layer
  return lambda x: nn.SpectralNorm(layer)(x, update_stats=train)


class ConvEncoder(nn.Module):
  """Image (N, size, size, C) -> (N, num_outputs), the decoder's mirror.

  A 3x3 conv at `width` channels, then per resolution step a 4x4 stride-2
  conv doubling the channels, each followed by norm -> activation; flatten
  and a dense layer. `num_outputs` is 1 for a discriminator's score, 2 *
  latent for a VAE's mean and log-variance. `spectral_norm` normalizes every
  conv and the dense layer.
  """
  num_outputs: int
  width: int = 32
  norm: str = 'none'
  activation: Callable[[jax.Array], jax.Array] = nn.leaky_relu
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    sn = lambda layer: spectrally_normalized(layer, self.spectral_norm, train)
    channels = widths(self.width, x.shape[1])
    x = sn(conv.Conv(channels[0], (3, 3)))(x)
    x = self.activation(x)
    for width in channels[1:]:
      x = sn(conv.Conv(width, (4, 4), strides=(2, 2),
                       use_bias=bias_before(self.norm)))(x)
      x = self.activation(normalization(self.norm, train)(x))
    return sn(nn.Dense(self.num_outputs))(x.reshape((x.shape[0], -1)))
