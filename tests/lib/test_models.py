"""Shapes, dtypes and train/eval behaviour of the shared models."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import models


@pytest.mark.parametrize('batch_norm,dropout', [(False, 0.0), (True, 0.5)])
def test_mlp_shapes_and_state(batch_norm, dropout):
  model = models.MLP((16, 8), num_outputs=5, batch_norm=batch_norm,
                     dropout=dropout)
  x = jnp.ones((4, 3, 7))  # flattened to [4, 21]
  variables = model.init(jax.random.key(0), x, train=False)
  params = variables.pop('params')
  chex.assert_shape(params['Dense_0']['kernel'], (21, 16))
  assert ('batch_stats' in variables) == batch_norm
  out, new_state = models.apply_model(model, params, dict(variables), x,
                                      train=True, key=jax.random.key(1))
  chex.assert_shape(out, (4, 5))
  chex.assert_type(out, jnp.float32)
  chex.assert_tree_all_finite(out)
  if batch_norm:
    assert not np.allclose(new_state['batch_stats']['BatchNorm_0']['mean'],
                           variables['batch_stats']['BatchNorm_0']['mean'])


def test_mlp_dropout_is_random_in_training_only():
  model = models.MLP((64,), num_outputs=3, dropout=0.5)
  x = jnp.ones((2, 10))
  params = model.init(jax.random.key(0), x)['params']
  a, _ = models.apply_model(model, params, {}, x, train=True,
                            key=jax.random.key(1))
  b, _ = models.apply_model(model, params, {}, x, train=True,
                            key=jax.random.key(2))
  c, _ = models.apply_model(model, params, {}, x, train=False)
  d, _ = models.apply_model(model, params, {}, x, train=False)
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize('shape', [(2, 8, 8, 1), (2, 28, 28, 1), (2, 32, 32, 3)])
def test_small_cnn_shapes(shape):
  model = models.SmallCNN(channels=(8, 16), num_outputs=10)
  x = jnp.zeros(shape)
  variables = model.init(jax.random.key(0), x)
  params = variables.pop('params')
  out, new_state = models.apply_model(model, params, dict(variables), x,
                                      train=True)
  chex.assert_shape(out, (2, 10))
  chex.assert_trees_all_equal_structs(new_state, dict(variables))
