"""Models shared by several topics, as flax Linen modules applied functionally."""

from typing import Callable, Sequence

import flax.linen as nn
import jax


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


class SmallCNN(nn.Module):
  """Conv(3x3) -> BatchNorm -> ReLU -> max-pool blocks, then global average pool and a linear head."""
  channels: Sequence[int] = (32, 64)
  num_outputs: int = 10
  batch_norm: bool = True
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    for width in self.channels:
      x = nn.Conv(width, (3, 3), use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
      if min(x.shape[1:3]) >= 2:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.mean(axis=(1, 2))
    if self.dropout:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)
