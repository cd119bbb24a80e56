"""The meta-learners' networks: a body that makes features and a linear head.

Split in two so that ANIL and the transfer baseline can adapt the head alone on
features computed once. Parameters are a plain dict {'body': ..., 'head': ...},
and every call normalizes with the statistics of the batch it is given (no
running averages), as in the MAML paper: a task's support and query sets are
normalized each by their own statistics.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib import conv as lib_conv
from lib import models as lib_models

CONV_IMPLS = ('im2col', 'xla')
DOWNSAMPLES = ('max_pool', 'stride')


def _same_padding(size: int, stride: int, window: int = 3) -> tuple[int, int]:
  out = -(-size // stride)
  total = max((out - 1) * stride + window - size, 0)
  return total // 2, total - total // 2


def im2col_conv3x3(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """A 3x3 'SAME' convolution of NHWC `x` as nine shifted slices and one matmul.

  Its gradients (and their gradients) are slices, pads and matmuls, which XLA's
  CPU backend runs as fast GEMMs, unlike its convolution's second derivative.
  """
  _, height, width, channels = x.shape
  pad_h, pad_w = _same_padding(height, stride), _same_padding(width, stride)
  padded = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  out_h, out_w = -(-height // stride), -(-width // stride)
  patches = jnp.concatenate([
      jax.lax.slice(padded, (0, i, j, 0),
                    (padded.shape[0], i + (out_h - 1) * stride + 1,
                     j + (out_w - 1) * stride + 1, channels),
                    (1, stride, stride, 1))
      for i in range(3) for j in range(3)], axis=-1)
  return patches @ kernel.reshape(9 * channels, -1)


class BatchStatNorm(nn.Module):
  """Batch normalization with the current batch's statistics only."""
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = jnp.square(x - mean).mean(axes)
    scale = self.param('scale', nn.initializers.ones, (x.shape[-1],))
    bias = self.param('bias', nn.initializers.zeros, (x.shape[-1],))
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class ConvBlock(nn.Module):
  """3x3 conv, batch-stat norm, ReLU, then 2x2 max pooling or a stride of 2."""
  channels: int = 64
  downsample: str = 'max_pool'
  conv_impl: str = 'im2col'

  @nn.compact
  def __call__(self, x):
    stride = 2 if self.downsample == 'stride' else 1
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.channels))
    bias = self.param('bias', nn.initializers.zeros, (self.channels,))
    if self.conv_impl == 'im2col':
      x = im2col_conv3x3(x, kernel, stride)
    else:
      x = lib_conv.conv_general_dilated(
          x, kernel, (stride, stride), 'SAME',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    x = nn.relu(BatchStatNorm()(x + bias))
    return lib_models.max_pool2x2(x) if self.downsample == 'max_pool' else x


class ConvBody(nn.Module):
  """The MAML paper's (and the course's) 4 conv blocks, flattened."""
  channels: int = 64
  num_blocks: int = 4
  downsample: str = 'max_pool'
  conv_impl: str = 'im2col'

  @nn.compact
  def __call__(self, x):
    for _ in range(self.num_blocks):
      x = ConvBlock(self.channels, self.downsample, self.conv_impl)(x)
    return x.reshape(x.shape[0], -1)


class MLPBody(nn.Module):
  """Hidden ReLU layers (the MAML paper's sinusoid net: 40-40)."""
  features: tuple[int, ...] = (40, 40)

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for width in self.features:
      x = nn.relu(nn.Dense(width)(x))
    return x


class Learner(NamedTuple):
  """A body and a linear head as pure functions of their parameters."""
  body: nn.Module
  num_outputs: int

  @property
  def head(self) -> nn.Module:
    return nn.Dense(self.num_outputs)

  def init(self, key, sample_input) -> dict:
    body_key, head_key = jax.random.split(key)
    body = self.body.init(body_key, sample_input)['params']
    features = self.body.apply({'params': body}, sample_input)
    return {'body': body,
            'head': self.head.init(head_key, features)['params']}

  def features(self, body_params, x):
    return self.body.apply({'params': body_params}, x)

  def logits(self, head_params, features):
    return self.head.apply({'params': head_params}, features)

  def apply(self, params, x):
    return self.logits(params['head'], self.features(params['body'], x))
