"""Optimizers and schedules from configs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import config as config_lib
from lib import errors
from lib import optim


def _optimizer_config(**overrides):
  config = config_lib.base_config().optimizer
  config.update(overrides)
  return config


def test_warmup_then_cosine():
  schedule = optim.make_schedule(
      _optimizer_config(learning_rate=1.0, schedule='cosine', warmup_steps=10),
      num_steps=110)
  np.testing.assert_allclose(
      [schedule(0), schedule(5), schedule(10), schedule(60), schedule(110)],
      [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)


@pytest.mark.parametrize('name', optim.OPTIMIZERS)
def test_every_optimizer_descends_a_quadratic(name):
  tx = optim.make_optimizer(_optimizer_config(name=name, learning_rate=0.1),
                            num_steps=100)
  params = {'w': jnp.array([3.0, -2.0])}
  opt_state = tx.init(params)
  loss = lambda p: jnp.sum(p['w'] ** 2)
  for _ in range(50):
    updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
    params = optax.apply_updates(params, updates)
  assert loss(params) < 0.5 * 13.0


@pytest.mark.parametrize('overrides,message', [
    ({'name': 'adamax2'}, 'optimizer.name'),
    ({'learning_rate': 0.0}, 'learning_rate'),
    ({'schedule': 'triangle'}, 'schedule'),
    ({'warmup_steps': 500}, 'warmup_steps'),
])
def test_bad_optimizer_configs(overrides, message):
  with pytest.raises(errors.ConfigError, match=message):
    optim.make_optimizer(_optimizer_config(**overrides), num_steps=100)
