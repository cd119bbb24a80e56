"""The agent (actor and critic) and the two learned helpers of the advanced part."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib import models

ACTIVATIONS = {'tanh': nn.tanh, 'relu': nn.relu}


class ActorCritic(nn.Module):
  """Two separate MLPs: action logits (the actor) and a state value (the critic)."""
  num_actions: int
  hidden: Sequence[int] = (64, 64)
  activation: str = 'tanh'

  @nn.compact
  def __call__(self, obs, *, train: bool = False):
    act = ACTIVATIONS[self.activation]
    logits = models.MLP(self.hidden, self.num_actions, activation=act,
                        name='actor')(obs, train=train)
    value = models.MLP(self.hidden, 1, activation=act,
                       name='critic')(obs, train=train)
    return logits, value[:, 0]


def state_action(obs, actions, num_actions: int):
  """Flattened observation with a one-hot action appended."""
  obs = obs.reshape((obs.shape[0], -1))
  return jnp.concatenate(
      [obs, jax.nn.one_hot(actions, num_actions, dtype=obs.dtype)], axis=-1)


class ForwardModel(nn.Module):
  """Predicts the next observation from (s, a): the curiosity module."""
  num_actions: int
  obs_size: int
  hidden: Sequence[int] = (64,)

  @nn.compact
  def __call__(self, obs, actions, *, train: bool = False):
    x = state_action(obs, actions, self.num_actions)
    # The change of the observation, which is small and centred, is learned.
    delta = models.MLP(self.hidden, self.obs_size, activation=nn.relu)(
        x, train=train)
    return obs.reshape((obs.shape[0], -1)) + delta


class Discriminator(nn.Module):
  """GAIL's D(s, a) as a logit: expert (high) or policy (low)."""
  num_actions: int
  hidden: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, obs, actions, *, train: bool = False):
    x = state_action(obs, actions, self.num_actions)
    return models.MLP(self.hidden, 1, activation=nn.tanh)(x, train=train)[:, 0]
