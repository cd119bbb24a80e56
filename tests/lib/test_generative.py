"""Shapes, ranges and errors of the shared conv encoder and decoder."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import errors
from lib import generative


@pytest.mark.parametrize('size,steps', [(8, 1), (28, 2), (32, 3), (64, 4)])
def test_resolution_steps(size, steps):
  assert generative.upsamplings(size) == steps
  assert generative.widths(4, size) == [4 * 2**i for i in range(steps + 1)]


@pytest.mark.parametrize('size,channels,output,norm', [
    (8, 1, 'sigmoid', 'batch'), (28, 1, 'tanh', 'none'),
    (32, 3, 'none', 'layer')])
def test_decoder_then_encoder_shapes_and_ranges(size, channels, output, norm):
  decoder = generative.ConvDecoder(size, channels, width=4, norm=norm,
                                   output=output)
  z = jax.random.normal(jax.random.key(0), (3, 5))
  variables = jax.jit(decoder.init)(jax.random.key(1), z)
  images = jax.jit(decoder.apply)(variables, z)
  chex.assert_shape(images, (3, size, size, channels))
  chex.assert_tree_all_finite(images)
  if output == 'sigmoid':
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
  if output == 'tanh':
    assert -1.0 <= float(images.min()) and float(images.max()) <= 1.0
  encoder = generative.ConvEncoder(7, width=4, norm=norm)
  encoder_variables = jax.jit(encoder.init)(jax.random.key(2), images)
  chex.assert_shape(jax.jit(encoder.apply)(encoder_variables, images), (3, 7))


def test_batch_norm_decoder_updates_its_statistics_in_training():
  decoder = generative.ConvDecoder(8, width=4, norm='batch')
  z = jax.random.normal(jax.random.key(0), (6, 3))
  variables = jax.jit(decoder.init)(jax.random.key(1), z)
  _, updated = jax.jit(functools.partial(
      decoder.apply, train=True, mutable=['batch_stats']))(variables, z)
  before = jax.tree.leaves(variables['batch_stats'])
  after = jax.tree.leaves(updated['batch_stats'])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize('kwargs,message', [
    (dict(norm='group'), 'norm must be one of'),
    (dict(output='relu'), 'output must be one of')])
def test_bad_options_raise_config_errors(kwargs, message):
  decoder = generative.ConvDecoder(8, width=4, **kwargs)
  with pytest.raises(errors.ConfigError, match=message):
    decoder.init(jax.random.key(0), jnp.zeros((1, 2)))


def test_too_small_images_are_refused():
  with pytest.raises(errors.ConfigError, match='below the smallest'):
    generative.upsamplings(2)
