"""Return and advantage estimators over time-major rollouts ([T, ...] arrays).

`dones[t]` is 1 where the episode ended at step t (terminated or truncated):
nothing after it belongs to the same episode. `terminated[t]` is 1 only for a
true end (the pole fell), where the next state's value is zero; a time-limit
truncation still bootstraps from the value of the final observation.
"""

import jax
import jax.numpy as jnp


def discounted_returns(rewards, dones, gamma: float, bootstrap=None):
  """G_t = r_t + gamma (1 - done_t) G_{t+1}, with G_T = `bootstrap` (default 0).

  gamma=1 gives the reward-to-go of the lecture's second version.
  """
  last = jnp.zeros_like(rewards[0]) if bootstrap is None else bootstrap

  def backward(future, step):
    reward, done = step
    value = reward + gamma * (1.0 - done) * future
    return value, value

  _, values = jax.lax.scan(backward, last, (rewards, dones), reverse=True)
  return values


def episode_totals(rewards, dones):
  """Each step's whole-episode total reward (REINFORCE's first version)."""
  to_go = discounted_returns(rewards, dones, 1.0)
  starts = jnp.concatenate([jnp.ones_like(dones[:1]), dones[:-1]])

  def forward(total, step):
    value, start = step
    total = jnp.where(start > 0, value, total)
    return total, total

  _, totals = jax.lax.scan(forward, to_go[0], (to_go, starts))
  return totals


def gae(rewards, values, next_values, terminated, dones, gamma: float,
        lam: float):
  """Generalized advantage estimation; returns (advantages, value targets).

  `values[t]` = V(s_t), `next_values[t]` = V(s_{t+1}) of the observation that
  step t led to (the final one when the episode ended there). lam=0 gives the
  one-step TD target r + gamma V(s'), lam=1 the Monte Carlo return
  bootstrapped at truncations and at the end of the rollout.
  """
  deltas = rewards + gamma * (1.0 - terminated) * next_values - values

  def backward(future, step):
    delta, done = step
    advantage = delta + gamma * lam * (1.0 - done) * future
    return advantage, advantage

  _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]),
                               (deltas, dones), reverse=True)
  return advantages, advantages + values


def normalize(x, mask=None, eps: float = 1e-8):
  """(x - mean) / std over the entries where `mask` is 1 (all by default)."""
  mask = jnp.ones_like(x) if mask is None else mask
  count = jnp.maximum(mask.sum(), 1.0)
  mean = (x * mask).sum() / count
  var = (jnp.square(x - mean) * mask).sum() / count
  return (x - mean) / jnp.sqrt(var + eps) * mask


def alive_mask(dones):
  """1 up to and including each column's first episode end, 0 after it."""
  before = jnp.concatenate([jnp.zeros_like(dones[:1]), dones[:-1]])
  return jnp.cumprod(1.0 - before, axis=0)
