"""The ensemble members: an MLP (lib.models) or LeNet-5 written to vmap well.

LeNet-5's convolutions are im2col (shifted slices and one matmul): under
`jax.vmap` over members with their own kernels a convolution becomes a
grouped convolution, slow on XLA's CPU backend (see projects/meta's README),
while a matmul becomes a batched matmul; the slices' gradients are pads.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib import models
from lib.errors import ConfigError

NAMES = ('mlp', 'lenet5')


def im2col(x: jax.Array, size: int) -> jax.Array:
  """[N, H, W, C] -> [N, H, W, size * size * C]: the 'SAME'-padded windows."""
  pad = size // 2
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  height, width = x.shape[1:3]
  return jnp.concatenate([padded[:, i:i + height, j:j + width]
                          for i in range(size) for j in range(size)], -1)


def _dense(features: int, x: jax.Array, name: str) -> jax.Array:
  # Over one flattened leading axis: XLA's CPU weight gradient is twice as
  # fast as over several (see tests/benchmarks/README.md, the GPT step).
  flat = nn.Dense(features, name=name)(x.reshape(-1, x.shape[-1]))
  return flat.reshape(*x.shape[:-1], features)


class LeNet5(nn.Module):
  """Conv 6 -> pool -> conv 16 -> pool -> conv 120 -> dense 84 -> outputs.

  As uncertainty-baselines' MNIST LeNet-5: 5x5 'SAME' convolutions, ReLU,
  2x2 max pooling.
  """
  channels: tuple = (6, 16, 120)
  hidden: int = 84
  num_outputs: int = 10
  kernel_size: int = 5

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train
    for index, width in enumerate(self.channels):
      x = nn.relu(_dense(width, im2col(x, self.kernel_size), f'conv{index}'))
      if index < len(self.channels) - 1:
        x = models.max_pool2x2(x)
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_outputs)(x)


def make_network(config, num_outputs: int) -> nn.Module:
  name = config.model.name
  if name == 'mlp':
    return models.MLP(tuple(config.model.features), num_outputs=num_outputs)
  if name == 'lenet5':
    return LeNet5(tuple(config.model.channels), config.model.hidden,
                  num_outputs)
  raise ConfigError(f'config.model.name={name!r}: choose one of {NAMES}')
