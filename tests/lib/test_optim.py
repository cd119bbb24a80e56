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


_REFERENCES = {
    'sgd': lambda lr: optax.sgd(lr),
    'momentum': lambda lr: optax.sgd(lr, momentum=0.9),
    'nesterov': lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    'adagrad': lambda lr: optax.adagrad(lr),
    'rmsprop': lambda lr: optax.rmsprop(lr),
    'adam': lambda lr: optax.adam(lr),
    'adamw': lambda lr: optax.adamw(lr, weight_decay=0.0),
}


def _updates(tx, grads_seq, params):
  opt_state = tx.init(params)
  out = []
  for grads in grads_seq:
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out


@pytest.mark.parametrize('name', optim.OPTIMIZERS)
def test_each_name_is_its_optimizer(name):
  """Three updates equal optax's optimizer of that name, and differ from SGD's."""
  params = {'w': jnp.array([3.0, -2.0, 0.5])}
  grads = [{'w': jnp.array(g)} for g in
           ([1.0, -0.5, 2.0], [0.3, 0.2, -1.0], [-0.1, 1.5, 0.4])]
  ours = _updates(optim.make_optimizer(
      _optimizer_config(name=name, learning_rate=0.1), num_steps=100),
                  grads, params)
  reference = _updates(_REFERENCES[name](0.1), grads, params)
  for a, b in zip(ours, reference):
    np.testing.assert_allclose(a['w'], b['w'], rtol=1e-6)
  if name != 'sgd':
    sgd = _updates(optax.sgd(0.1), grads, params)
    assert not np.allclose(ours[-1]['w'], sgd[-1]['w'])


@pytest.mark.parametrize('name', ['sgd', 'adam', 'adamw'])
def test_weight_decay_shrinks_the_weights(name):
  """With a zero gradient, decay alone moves the weights towards zero."""
  params = {'w': jnp.array([2.0, -4.0])}
  tx = optim.make_optimizer(_optimizer_config(
      name=name, learning_rate=0.1, weight_decay=0.5), num_steps=10)
  (update,) = _updates(tx, [{'w': jnp.zeros(2)}], params)
  if name == 'sgd':  # -lr * wd * w
    np.testing.assert_allclose(update['w'], [-0.1, 0.2], rtol=1e-6)
  assert np.all(np.sign(update['w']) == -np.sign(params['w']))
  no_decay = optim.make_optimizer(_optimizer_config(
      name=name, learning_rate=0.1), num_steps=10)
  (plain,) = _updates(no_decay, [{'w': jnp.zeros(2)}], params)
  np.testing.assert_allclose(plain['w'], 0.0)


def test_grad_clip_norm_bounds_the_update():
  params = {'w': jnp.zeros(2)}
  grads = [{'w': jnp.array([30.0, 40.0])}]  # norm 50
  tx = optim.make_optimizer(_optimizer_config(
      name='sgd', learning_rate=0.1, grad_clip_norm=5.0), num_steps=10)
  (update,) = _updates(tx, grads, params)
  np.testing.assert_allclose(update['w'], [-0.3, -0.4], rtol=1e-6)
  unclipped = optim.make_optimizer(_optimizer_config(
      name='sgd', learning_rate=0.1), num_steps=10)
  np.testing.assert_allclose(_updates(unclipped, grads, params)[0]['w'],
                             [-3.0, -4.0], rtol=1e-6)


@pytest.mark.parametrize('overrides,message', [
    ({'name': 'adamax2'}, 'optimizer.name'),
    ({'learning_rate': 0.0}, 'learning_rate'),
    ({'schedule': 'triangle'}, 'schedule'),
    ({'warmup_steps': 500}, 'warmup_steps'),
])
def test_bad_optimizer_configs(overrides, message):
  with pytest.raises(errors.ConfigError, match=message):
    optim.make_optimizer(_optimizer_config(**overrides), num_steps=100)
