"""A slimmable separable CNN (Yu et al. 2019): one set of weights, several widths.

Every conv keeps its full kernel; at width multiplier w a layer of C channels
runs on its first round(w C) filters and input channels (the stem's input and
the head's outputs are never cut). Batch norm is switchable: one set of
scale, bias and running statistics per width, since the narrower nets' features
have other statistics. The parameter tree mirrors lib's SeparableCNN (batch
norm arrays stacked over widths), so `variables_at_width` cuts out an ordinary
SeparableCNN of that width, which evaluation and FLOP counting use as is.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lib import models as lib_models

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def width_channels(channels: int, width: float) -> int:
  return max(1, int(round(channels * width)))


class SlimConv(nn.Module):
  """A bias-free SAME conv on the first `features` of its full kernel's
  filters and on as many input channels as `x` has (depthwise: one filter per
  input channel)."""
  in_features: int
  full_features: int
  kernel_size: int
  strides: int = 1
  depthwise: bool = False

  @nn.compact
  def __call__(self, x, features: int):
    shape = (self.kernel_size, self.kernel_size,
             1 if self.depthwise else self.in_features, self.full_features)
    kernel = self.param('kernel', nn.initializers.lecun_normal(), shape)
    kernel = kernel[:, :, :1 if self.depthwise else x.shape[-1], :features]
    return jax.lax.conv_general_dilated(
        x, kernel, (self.strides, self.strides), 'SAME',
        dimension_numbers=_NHWC,
        feature_group_count=x.shape[-1] if self.depthwise else 1)


class SwitchableBatchNorm(nn.Module):
  """Batch norm with its own scale, bias and running statistics per width
  (stacked [widths, features]); flax's BatchNorm (momentum 0.9) at each."""
  features: int
  num_widths: int
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, index: int, *, train: bool):
    shape, c = (self.num_widths, self.features), x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, shape)[index, :c]
    bias = self.param('bias', nn.initializers.zeros, shape)[index, :c]
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, shape)
    running_var = self.variable('batch_stats', 'var', jnp.ones, shape)
    if train:
      mean = x.mean(axis=(0, 1, 2))
      var = jnp.maximum((x * x).mean(axis=(0, 1, 2)) - mean * mean, 0.0)
      if not self.is_initializing():
        for stat, value in ((running_mean, mean), (running_var, var)):
          stat.value = stat.value.at[index, :c].set(
              self.momentum * stat.value[index, :c]
              + (1 - self.momentum) * value)
    else:
      mean, var = running_mean.value[index, :c], running_var.value[index, :c]
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class SlimmableSeparableBlock(nn.Module):
  """lib's SeparableBlock (with batch norm) at each of `widths`."""
  in_channels: int
  channels: int
  strides: int
  num_widths: int

  @nn.compact
  def __call__(self, x, index: int, width: float, *, train: bool):
    depthwise = SlimConv(self.in_channels, self.in_channels, 3, self.strides,
                         depthwise=True, name='Conv_0')
    pointwise = SlimConv(self.in_channels, self.channels, 1, name='Conv_1')
    x = depthwise(x, x.shape[-1])
    x = nn.relu(SwitchableBatchNorm(self.in_channels, self.num_widths,
                                    name='BatchNorm_0')(x, index, train=train))
    x = pointwise(x, width_channels(self.channels, width))
    return nn.relu(SwitchableBatchNorm(self.channels, self.num_widths,
                                       name='BatchNorm_1')(x, index,
                                                           train=train))


class SlimmableSeparableCNN(nn.Module):
  """lib's SeparableCNN whose every width in `widths` shares the weights.

  Returns a tuple of logits, one per width in `widths` order (each with its
  own batch norm), as EarlyExitCNN returns one per head.
  """
  channels: Sequence[int] = (32, 64, 64)
  strides: Sequence[int] = (1, 2, 1)
  stem_channels: int = 16
  num_outputs: int = 10
  widths: Sequence[float] = (0.25, 0.5, 0.75, 1.0)

  @nn.compact
  def __call__(self, x, *, train: bool = False) -> tuple[jax.Array, ...]:
    num_widths = len(self.widths)
    stem = SlimConv(x.shape[-1], self.stem_channels, 3, name='Conv_0')
    stem_norm = SwitchableBatchNorm(self.stem_channels, num_widths,
                                    name='BatchNorm_0')
    inputs = (self.stem_channels, *self.channels[:-1])
    blocks = [SlimmableSeparableBlock(c_in, c, s, num_widths,
                                      name=f'SeparableBlock_{i}')
              for i, (c_in, c, s) in enumerate(zip(inputs, self.channels,
                                                   self.strides))]
    full = self.channels[-1]
    head_kernel = self.param('Dense_0', lambda key: {
        'kernel': nn.initializers.lecun_normal()(key,
                                                 (full, self.num_outputs)),
        'bias': jnp.zeros((self.num_outputs,))})
    logits = []
    for index, width in enumerate(self.widths):
      h = stem(x, width_channels(self.stem_channels, width))
      h = nn.relu(stem_norm(h, index, train=train))
      for block in blocks:
        h = block(h, index, width, train=train)
      h = h.mean(axis=(1, 2))
      logits.append(h @ head_kernel['kernel'][:h.shape[-1]]
                    + head_kernel['bias'])
    return tuple(logits)


def separable_at_width(model: SlimmableSeparableCNN,
                       index: int) -> lib_models.SeparableCNN:
  """The ordinary SeparableCNN that `model` runs at widths[index]."""
  width = model.widths[index]
  return lib_models.SeparableCNN(
      tuple(width_channels(c, width) for c in model.channels),
      tuple(model.strides), width_channels(model.stem_channels, width),
      model.num_outputs, batch_norm=True)


def variables_at_width(model: SlimmableSeparableCNN, variables: dict,
                       index: int, sample: jax.Array) -> dict:
  """`variables` cut to `separable_at_width(model, index)`'s: each array's
  first channels (and its batch norm's entry for that width)."""
  shapes = jax.eval_shape(separable_at_width(model, index).init,
                          jax.random.key(0), sample)

  def cut(target, leaf):
    leaf = np.asarray(leaf)
    if leaf.ndim > len(target.shape):  # switchable batch norm: [widths, C]
      leaf = leaf[index]
    return leaf[tuple(slice(0, n) for n in target.shape)]

  return {name: jax.tree.map(cut, shapes[name], variables[name])
          for name in variables}
