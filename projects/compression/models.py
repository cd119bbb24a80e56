"""HW13's own models: low-rank factorized layers and an early-exit network.

The plain student is lib.models.SeparableCNN (depthwise 3x3 + pointwise 1x1
blocks). `low_rank_separable_cnn` is the same net with each pointwise conv
written as two thinner factors (lib's parameter names for the stem, the blocks
and the head, so that structured pruning, pruning.slim_separable, works on
both).
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib import conv
from lib import models


def _norm(train: bool, batch_norm: bool):
  if batch_norm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)
  return lambda x: x


class LowRankDense(nn.Module):
  """x @ down @ up: a [C_in, C_out] matrix as rank `rank` factors.

  Costs rank * (C_in + C_out) weights instead of C_in * C_out; on an NHWC
  feature map it is a factorized 1x1 conv.
  """
  features: int
  rank: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.rank, use_bias=False)(x)  # Dense_0: down
    return nn.Dense(self.features, use_bias=self.use_bias)(x)  # Dense_1: up


class LowRankSeparableBlock(nn.Module):
  """Depthwise 3x3 conv, then a rank-`rank` factorized pointwise conv."""
  channels: int
  strides: int = 1
  batch_norm: bool = True
  rank: int = 16

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = conv.Conv(x.shape[-1], (3, 3), self.strides,
                feature_group_count=x.shape[-1],
                use_bias=not self.batch_norm)(x)
    x = nn.relu(_norm(train, self.batch_norm)(x))
    x = LowRankDense(self.channels, min(self.rank, self.channels, x.shape[-1]),
                     use_bias=not self.batch_norm)(x)
    return nn.relu(_norm(train, self.batch_norm)(x))


def low_rank_separable_cnn(rank: int, **kwargs) -> models.SeparableCNN:
  """lib.models.SeparableCNN(**kwargs) with rank-`rank` pointwise convs."""
  return models.SeparableCNN(
      block=functools.partial(LowRankSeparableBlock, rank=rank), **kwargs)


class EarlyExitCNN(nn.Module):
  """Separable blocks with a classifier head after each block in `exits`.

  Returns a tuple of logits, one per exit head and the final head last.
  `num_heads` stops the forward pass after that many heads: its cost is the
  cost of exiting there (used to count FLOPs per exit).
  """
  channels: Sequence[int] = (32, 64, 64, 128)
  strides: Sequence[int] = (1, 2, 1, 2)
  exits: Sequence[int] = (1,)  # block indices followed by an exit head
  stem_channels: int = 16
  num_outputs: int = 10
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool = False,
               num_heads: int | None = None) -> tuple[jax.Array, ...]:
    num_heads = num_heads or len(self.exits) + 1
    x = conv.Conv(self.stem_channels, (3, 3), use_bias=not self.batch_norm)(x)
    x = nn.relu(_norm(train, self.batch_norm)(x))
    logits = []
    for i, (width, strides) in enumerate(zip(self.channels, self.strides)):
      x = models.SeparableBlock(width, strides, self.batch_norm,
                                name=f'block_{i}')(x, train=train)
      if i in self.exits:
        logits.append(nn.Dense(self.num_outputs, name=f'exit_{i}')(
            x.mean(axis=(1, 2))))
        if len(logits) == num_heads:
          return tuple(logits)
    logits.append(nn.Dense(self.num_outputs, name='final')(
        x.mean(axis=(1, 2))))
    return tuple(logits)


def exit_choice(probabilities: jax.Array, threshold: float) -> jax.Array:
  """The head each example exits at: the first whose max probability > threshold.

  `probabilities` is [heads, B, classes]; the last head always takes what
  is left. Returns int32 [B].
  """
  confident = probabilities[:-1].max(axis=-1) > threshold  # [heads - 1, B]
  confident = jnp.concatenate(
      [confident, jnp.ones_like(confident[:1])], axis=0)
  return jnp.argmax(confident, axis=0).astype(jnp.int32)
