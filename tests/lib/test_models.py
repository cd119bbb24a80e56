"""Shapes, dtypes and train/eval behaviour of the shared models."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import config as config_lib
from lib import errors
from lib import mesh as mesh_lib
from lib import models
from lib import train_state


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


def _init(model, shape):
  x = jax.random.uniform(jax.random.key(0), shape)
  return x, model.init(jax.random.key(1), x)


def test_resnet18_has_the_reference_parameter_count():
  # torchvision's resnet18(num_classes=10) has 11,181,642 parameters.
  model = models.ResNet((2, 2, 2, 2), 64, num_outputs=10, stem='imagenet')
  variables = jax.eval_shape(model.init, jax.random.key(0),
                             jnp.zeros((1, 64, 64, 3)))
  assert models.num_params(variables['params']) == 11_181_642


@pytest.mark.parametrize('name,shape', [('small_cnn', (8, 8, 8, 1)),
                                        ('resnet', (8, 8, 8, 1)),
                                        ('resnet', (8, 16, 16, 3)),
                                        ('separable', (8, 16, 16, 3))])
def test_image_classifiers_shapes_and_train_state(name, shape):
  model_config = config_lib.image_model_config(name)
  model_config.update(channels=(8, 16), strides=(1, 2), stem_channels=8,
                      stage_sizes=(1, 1), width=8)
  model = models.make_image_classifier(model_config, num_outputs=7)
  state = train_state.create_train_state(
      model, optax.sgd(0.1), jnp.zeros((1, *shape[1:])), jax.random.key(3),
      mesh_lib.make_mesh())
  assert set(state.model_state) == {'batch_stats'}  # no perturbations
  x = jax.random.uniform(jax.random.key(0), shape)
  apply = jax.jit(functools.partial(models.apply_model, model, train=True))
  logits, new_state = apply(state.params, state.model_state, x,
                            key=jax.random.key(2))
  chex.assert_shape(logits, (shape[0], 7))
  chex.assert_tree_all_finite(logits)
  chex.assert_trees_all_equal_structs(new_state, state.model_state)


def test_maxout_is_the_max_of_its_pieces_and_softmax_regression_is_affine():
  layer = models.Maxout(width=3, pieces=4)
  x = jax.random.normal(jax.random.key(0), (5, 6))
  params = layer.init(jax.random.key(1), x)['params']
  pieces = (x @ params['Dense_0']['kernel'] + params['Dense_0']['bias'])
  np.testing.assert_allclose(layer.apply({'params': params}, x),
                             pieces.reshape(5, 3, 4).max(-1), rtol=1e-6)
  maxout_config = config_lib.image_model_config('maxout')
  maxout_config.update(hidden=(16, 8), pieces=3, dropout=0.5,
                       input_dropout=0.2)
  network = models.make_image_classifier(maxout_config, num_outputs=7)
  images = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))
  variables = network.init(jax.random.key(3), images)
  chex.assert_shape(network.apply(variables, images), (4, 7))
  linear_config = config_lib.image_model_config('mlp')
  linear_config.hidden = ()
  linear = models.make_image_classifier(linear_config, num_outputs=7)
  params = linear.init(jax.random.key(4), images)['params']
  assert models.num_params(params) == 64 * 7 + 7
  logits = lambda x: linear.apply({'params': params}, x)
  np.testing.assert_allclose(logits(images[:1] + images[1:2]),
                             logits(images[:1]) + logits(images[1:2]) -
                             logits(jnp.zeros_like(images[:1])), atol=1e-5)
  with pytest.raises(errors.ConfigError, match='activation'):
    linear_config.activation = 'tanh'
    models.make_image_classifier(linear_config, num_outputs=7)


def test_separable_block_has_fewer_weights_than_a_full_conv():
  x = jnp.zeros((1, 8, 8, 32))
  separable = models.SeparableBlock(64, batch_norm=False).init(
      jax.random.key(0), x)
  assert models.num_params(separable['params']) == (9 * 32 + 32) + (
      32 * 64 + 64)


def test_feature_gradient_through_perturbations():
  model = models.SmallCNN((4, 6), num_outputs=3, batch_norm=False)
  x, variables = _init(model, (2, 8, 8, 1))
  _, captured = model.apply({'params': variables['params']}, x,
                            mutable=['intermediates'])
  features = captured['intermediates']['features'][0]
  chex.assert_shape(features, (2, 2, 2, 6))
  zeros = jax.tree.map(jnp.zeros_like, variables['perturbations'])

  def class_score(perturbations):
    logits = model.apply({'params': variables['params'],
                          'perturbations': perturbations}, x)
    return logits[:, 0].sum()

  grads = jax.grad(class_score)(zeros)['features']
  # The head is Dense(mean over space): d logit_0 / d feature = W[:, 0] / 4.
  kernel = variables['params']['Dense_0']['kernel']
  chex.assert_trees_all_close(
      grads, jnp.broadcast_to(kernel[:, 0] / 4, (2, 2, 2, 6)), atol=1e-6)


def test_unknown_image_classifier_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='model.name'):
    models.make_image_classifier(config_lib.image_model_config('vgg'), 10)


@pytest.mark.parametrize('height, width', [(8, 8), (7, 7), (6, 9)])
def test_max_pool2x2_matches_flax_max_pool_and_its_gradient(height, width):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, height, width, 3)),
                  jnp.float32)
  flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  chex.assert_trees_all_close(models.max_pool2x2(x), flax_pool(x))
  weights = jnp.arange(3 * (height // 2) * (width // 2) * 2.).reshape(
      2, height // 2, width // 2, 3)
  grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x) * weights))(x)
  chex.assert_trees_all_close(grad(models.max_pool2x2), grad(flax_pool))
