"""Models shared by several topics, as flax Linen modules applied functionally."""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib import conv
from lib.errors import ConfigError


def apply_model(model: nn.Module, params, model_state, x, *, train: bool,
                key=None):
  """Runs `model` on `x`; returns (outputs, new model_state).

  The one place that knows flax's variables, mutable collections and rngs.
  """
  variables = {'params': params, **model_state}
  rngs = {'dropout': key} if key is not None else None
  if train and model_state:
    outputs, new_state = model.apply(variables, x, train=True, rngs=rngs,
                                     mutable=list(model_state))
    return outputs, dict(new_state)
  return model.apply(variables, x, train=train, rngs=rngs), model_state


class MLP(nn.Module):
  """Flattens inputs, then Dense -> [BatchNorm] -> activation -> [Dropout] per layer."""
  features: Sequence[int]
  num_outputs: int
  batch_norm: bool = False
  dropout: float = 0.0
  activation: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    for width in self.features:
      x = nn.Dense(width, use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = self.activation(x)
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)


class Maxout(nn.Module):
  """Dense to `width * pieces` units, then the max over each unit's pieces."""
  width: int
  pieces: int

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.width * self.pieces)(x)
    return x.reshape(*x.shape[:-1], self.width, self.pieces).max(-1)


class MaxoutMLP(nn.Module):
  """Flattens inputs, then [Dropout] -> Maxout per layer, [Dropout], a linear head.

  Goodfellow et al. (2013)'s MNIST network: dropout on the input and on every
  hidden layer.
  """
  hidden: Sequence[int]
  pieces: int
  num_outputs: int
  dropout: float = 0.0
  input_dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    if self.input_dropout:
      x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
    for width in self.hidden:
      x = Maxout(width, self.pieces)(x)
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)


class SmallCNN(nn.Module):
  """Conv(3x3) -> BatchNorm -> ReLU -> max-pool blocks, then global average pool and a linear head."""
  channels: Sequence[int] = (32, 64)
  num_outputs: int = 10
  batch_norm: bool = True
  dropout: float = 0.0
  # Not a parameter: explanations swap in ReLUs with other backward rules.
  activation: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    for width in self.channels:
      x = conv.Conv(width, (3, 3), use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = self.activation(x)
      if min(x.shape[1:3]) >= 2:
        x = max_pool2x2(x)
    x = _expose_features(self, x).mean(axis=(1, 2))
    if self.dropout:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)


def max_pool2x2(x: jax.Array) -> jax.Array:
  """2x2 max pooling, stride 2, odd edges dropped (as PyTorch's MaxPool2d(2)).

  Written as a max of row pairs, then of column pairs (reshapes and
  `jnp.maximum`), whose derivatives of every order are cheap elementwise
  selects: on XLA's CPU backend reduce_window's gradient (select_and_scatter)
  cost a third of a small CNN's train step, and a reshape-and-reduce-max form's
  gradient 3x this one's. A tie splits the gradient between the maxima.
  """
  n, h, w, c = x.shape
  h, w = h // 2, w // 2
  rows = x[:, :2 * h, :2 * w].reshape(n, h, 2, w, 2 * c)
  rows = jnp.maximum(rows[:, :, 0], rows[:, :, 1]).reshape(n, h, w, 2, c)
  return jnp.maximum(rows[..., 0, :], rows[..., 1, :])


def _norm(train: bool, batch_norm: bool, **kwargs):
  if batch_norm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, **kwargs)
  return lambda x: x


def _expose_features(module: nn.Module, x: jax.Array) -> jax.Array:
  """Marks the last feature map, for Grad-CAM and feature-space plots.

  `sow` records it under the 'intermediates' collection when that is mutable;
  `perturb` adds a zero 'perturbations' variable, so the gradient with respect
  to the feature map is the gradient with respect to that variable.
  """
  module.sow('intermediates', 'features', x)
  return module.perturb('features', x)


class ResidualBlock(nn.Module):
  """Two 3x3 convs with batch norm and an identity (or 1x1 projection) shortcut."""
  channels: int
  strides: int = 1
  batch_norm: bool = True
  activation: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    shortcut = x
    y = conv.Conv(self.channels, (3, 3), self.strides, use_bias=False)(x)
    y = self.activation(_norm(train, self.batch_norm)(y))
    y = conv.Conv(self.channels, (3, 3), use_bias=False)(y)
    # A zero-initialized last scale makes each block start as the identity.
    y = _norm(train, self.batch_norm, scale_init=nn.initializers.zeros)(y)
    if shortcut.shape != y.shape:
      shortcut = conv.Conv(self.channels, (1, 1), self.strides,
                         use_bias=False)(x)
      shortcut = _norm(train, self.batch_norm)(shortcut)
    return self.activation(y + shortcut)


class ResNet(nn.Module):
  """ResNet with basic blocks (He et al. 2016).

  `stage_sizes=(2, 2, 2, 2), width=64, stem='imagenet'` is ResNet-18;
  `stage_sizes=(3, 3, 3), width=16, stem='cifar'` is the CIFAR ResNet-20. Each
  stage after the first halves the resolution and doubles the width.
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width: int = 64
  num_outputs: int = 10
  stem: str = 'cifar'  # cifar: one 3x3 conv; imagenet: 7x7/2 conv + max-pool
  batch_norm: bool = True
  dropout: float = 0.0
  activation: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.stem == 'imagenet':
      x = conv.Conv(self.width, (7, 7), 2, use_bias=False)(x)
    elif self.stem == 'cifar':
      x = conv.Conv(self.width, (3, 3), use_bias=False)(x)
    else:
      raise ValueError(f"stem={self.stem!r}: choose 'cifar' or 'imagenet'")
    x = self.activation(_norm(train, self.batch_norm)(x))
    if self.stem == 'imagenet':
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = ResidualBlock(self.width * 2**stage, strides, self.batch_norm,
                          self.activation)(x, train=train)
    x = _expose_features(self, x).mean(axis=(1, 2))
    if self.dropout:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)


class SeparableBlock(nn.Module):
  """Depthwise 3x3 conv (one filter per channel) then pointwise 1x1 conv.

  Costs 9*C_in + C_in*C_out weights where a full 3x3 conv costs 9*C_in*C_out.
  """
  channels: int
  strides: int = 1
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = conv.Conv(x.shape[-1], (3, 3), self.strides,
                feature_group_count=x.shape[-1], use_bias=not self.batch_norm)(x)
    x = nn.relu(_norm(train, self.batch_norm)(x))
    x = conv.Conv(self.channels, (1, 1), use_bias=not self.batch_norm)(x)
    return nn.relu(_norm(train, self.batch_norm)(x))


class SeparableCNN(nn.Module):
  """A MobileNet-style net: a full 3x3 stem, then depthwise-separable blocks.

  `channels[i]` is block i's width and `strides[i]` its stride (2 halves the
  resolution); `block(channels, strides, batch_norm)` builds a block
  (SeparableBlock, or a variant such as a low-rank one).
  """
  channels: Sequence[int] = (64, 128, 128, 256, 256)
  strides: Sequence[int] = (1, 2, 1, 2, 1)
  stem_channels: int = 32
  num_outputs: int = 10
  batch_norm: bool = True
  dropout: float = 0.0
  block: Callable[..., nn.Module] = SeparableBlock

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if len(self.channels) != len(self.strides):
      raise ValueError(f'channels {self.channels} and strides {self.strides} '
                       'must have the same length')
    x = conv.Conv(self.stem_channels, (3, 3), use_bias=not self.batch_norm)(x)
    x = nn.relu(_norm(train, self.batch_norm)(x))
    for i, (width, strides) in enumerate(zip(self.channels, self.strides)):
      x = self.block(width, strides, self.batch_norm,
                     name=f'SeparableBlock_{i}')(x, train=train)
    x = _expose_features(self, x).mean(axis=(1, 2))
    if self.dropout:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)


IMAGE_CLASSIFIERS = ('small_cnn', 'resnet', 'separable', 'mlp', 'maxout')
ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu}


def make_image_classifier(config, num_outputs: int) -> nn.Module:
  """The image classifier that `config` (lib.config.image_model_config) names."""
  if config.name == 'small_cnn':
    return SmallCNN(tuple(config.channels), num_outputs, config.batch_norm,
                    config.dropout)
  if config.name == 'resnet':
    return ResNet(tuple(config.stage_sizes), config.width, num_outputs,
                  config.stem, config.batch_norm, config.dropout)
  if config.name == 'separable':
    return SeparableCNN(tuple(config.channels), tuple(config.strides),
                        config.stem_channels, num_outputs, config.batch_norm,
                        config.dropout)
  if config.name == 'mlp':
    if config.activation not in ACTIVATIONS:
      raise ConfigError(f'model.activation={config.activation!r}: choose one '
                        f'of {tuple(ACTIVATIONS)}')
    return MLP(tuple(config.hidden), num_outputs, config.batch_norm,
               config.dropout, ACTIVATIONS[config.activation])
  if config.name == 'maxout':
    if config.pieces < 1:
      raise ConfigError(f'model.pieces={config.pieces} must be >= 1')
    return MaxoutMLP(tuple(config.hidden), config.pieces, num_outputs,
                     config.dropout, config.input_dropout)
  raise ConfigError(f'model.name={config.name!r}: choose one of '
                    f'{IMAGE_CLASSIFIERS}')


def num_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
