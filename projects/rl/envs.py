"""gymnax environments by name, and the potentials used for reward shaping."""

import gymnax
import jax.numpy as jnp

from lib.errors import ConfigError


def make(name: str):
  """(env, env_params) of a gymnax environment with discrete actions."""
  if name not in gymnax.registered_envs:
    raise ConfigError(f'config.env.name={name!r} is not a gymnax environment; '
                      f'choose one of {gymnax.registered_envs}')
  env, params = gymnax.make(name)
  if not hasattr(env.action_space(params), 'n'):
    raise ConfigError(f'config.env.name={name!r} has continuous actions; the '
                      'agents here are for discrete actions')
  return env, params


def obs_size(env, params) -> int:
  size = 1
  for dim in env.observation_space(params).shape:
    size *= dim
  return size


# Potentials phi(obs) for shaping F = gamma phi(s') - phi(s) (Ng et al., 1999):
# the optimal policy stays the same while the reward gets denser.
def _cartpole_upright(obs):
  # obs = [x, x_dot, theta, theta_dot]: higher when the pole is upright and
  # the cart near the centre.
  return -jnp.abs(obs[..., 2]) / 0.21 - jnp.abs(obs[..., 0]) / 2.4


def _acrobot_height(obs):
  # obs = [cos t1, sin t1, cos t2, sin t2, ...]: the tip's height.
  cos1, sin1, cos2, sin2 = (obs[..., i] for i in range(4))
  return -cos1 - (cos1 * cos2 - sin1 * sin2)


def _mountain_car_height(obs):
  # obs = [position, velocity]: the track is y = sin(3x).
  return jnp.sin(3.0 * obs[..., 0])


POTENTIALS = {
    'cartpole_upright': _cartpole_upright,
    'acrobot_height': _acrobot_height,
    'mountain_car_height': _mountain_car_height,
}


def shaping_bonus(potential, obs, next_obs, terminated, gamma: float):
  """F = gamma phi(s') - phi(s), with phi = 0 after a true end.

  Summed with discount gamma over an episode it telescopes to
  -phi(s_0) (plus gamma^T phi(s_T) if the episode was cut by the time limit),
  so every policy's return moves by the same amount.
  """
  return gamma * (1.0 - terminated) * potential(next_obs) - potential(obs)
