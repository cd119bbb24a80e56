"""lib.conv: the same values and derivatives as lax's convolution, faster HLO in loops."""

import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lib import conv

NHWC = ('NHWC', 'HWIO', 'NHWC')
CASES = [  # (input size, kernel size, strides, padding)
    ((9, 9), (3, 3), (1, 1), 'SAME'),
    ((8, 8), (3, 3), (2, 2), 'SAME'),
    ((9, 7), (3, 3), (2, 2), 'SAME'),
    ((8, 8), (1, 1), (2, 2), 'VALID'),
    ((12, 12), (5, 5), (1, 1), 'VALID'),
    ((11, 11), (7, 7), (2, 2), ((3, 3), (3, 3))),
    ((10, 9), (3, 2), (3, 2), ((0, 2), (1, 0))),
]


def _inputs(size, window, in_channels=3, out_channels=4):
  kx, kk = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (2, *size, in_channels))
  kernel = jax.random.normal(kk, (*window, in_channels, out_channels)) / 3
  return x, kernel


def _assert_matches_up_to_second_order(ours, reference, x, kernel,
                                       inner_argnum):
  """Values, gradients, and the gradients of |d loss / d arg inner_argnum|^2
  agree between two losses of (x, kernel), each jitted."""
  def outer(impl_loss):
    return lambda x, k: (jax.grad(impl_loss, argnums=inner_argnum)(x, k)
                         ** 2).sum()

  for transform, tolerance in ((lambda f: f, 1e-5),
                               (lambda f: jax.grad(f, argnums=(0, 1)), 1e-4),
                               (lambda f: jax.grad(outer(f), argnums=(0, 1)),
                                1e-3)):
    chex.assert_trees_all_close(
        jax.jit(transform(ours))(x, kernel),
        jax.jit(transform(reference))(x, kernel),
        rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize('size, window, strides, padding', CASES)
def test_values_and_gradients_match_lax(size, window, strides, padding):
  x, kernel = _inputs(size, window)
  probe = jax.random.normal(jax.random.key(1), lax.conv_general_dilated(
      x, kernel, strides, padding, dimension_numbers=NHWC).shape)

  def loss(impl):
    return lambda x, k: (jnp.tanh(impl(x, k, strides, padding,
                                       dimension_numbers=NHWC)) * probe).sum()

  # Second order through the kernel gradient, as MAML takes it.
  _assert_matches_up_to_second_order(loss(conv.conv_general_dilated),
                                     loss(lax.conv_general_dilated), x, kernel,
                                     inner_argnum=1)


DILATED = [  # (input size, kernel size, strides, padding, lhs, rhs dilation)
    ((5, 5), (3, 3), (1, 1), ((1, 1), (1, 1)), (2, 2), (1, 1)),
    ((6, 5), (3, 2), (1, 2), ((2, 1), (0, 1)), (2, 1), (1, 1)),
    ((9, 9), (3, 3), (1, 1), 'SAME', (1, 1), (2, 2)),
    ((10, 9), (3, 3), (2, 1), 'VALID', (1, 1), (2, 3)),
    ((5, 6), (2, 3), (1, 1), ((1, 2), (2, 1)), (2, 2), (2, 1)),
]


@pytest.mark.parametrize('size, window, strides, padding, lhs, rhs', DILATED)
def test_dilated_values_and_derivatives_match_lax(size, window, strides,
                                                  padding, lhs, rhs):
  """Input and kernel dilations (a strided convolution's gradients) up to
  the second derivative, as WGAN-GP's penalty and MAML take them."""
  x, kernel = _inputs(size, window)

  def loss(impl):
    return lambda x, k: jnp.tanh(impl(
        x, k, strides, padding, lhs_dilation=lhs, rhs_dilation=rhs,
        dimension_numbers=NHWC)).sum()

  # Second order through the input gradient, as WGAN-GP's penalty takes it.
  _assert_matches_up_to_second_order(loss(conv.conv_general_dilated),
                                     loss(lax.conv_general_dilated), x, kernel,
                                     inner_argnum=0)


def test_a_gradient_penalty_of_a_strided_conv_in_a_loop_is_canonical():
  """WGAN-GP's critic update: the kernel gradient of the input gradient's
  norm, for a stride-2 convolution, in a loop body."""
  x, kernel = _inputs((8, 8), (4, 4), in_channels=4, out_channels=8)

  def critic_steps(impl):
    def critic(x, k):
      return jnp.tanh(impl(x, k, (2, 2), ((1, 1), (1, 1)),
                           dimension_numbers=NHWC)).sum()

    def penalty(k):
      grad = jax.grad(critic)(x, k)
      return ((jnp.sqrt((grad ** 2).sum((1, 2, 3))) - 1) ** 2).mean()

    def step(_, k):
      return k - 0.01 * jax.grad(penalty)(k)
    return jax.jit(lambda k: lax.fori_loop(0, 2, step, k))

  hlo = critic_steps(conv.conv_general_dilated).lower(
      kernel).compile().as_text()
  labels = {line.split('dim_labels=')[1].split(',')[0]
            for line in hlo.splitlines() if ' convolution(' in line}
  assert labels == {'b01f_01io->b01f'}
  np.testing.assert_allclose(critic_steps(conv.conv_general_dilated)(kernel),
                             critic_steps(lax.conv_general_dilated)(kernel),
                             rtol=1e-4, atol=1e-5)


def test_other_layouts_and_groups_fall_back_to_lax():
  x, kernel = _inputs((6, 6), (3, 3), in_channels=4)
  grouped = conv.conv_general_dilated(x, kernel[:, :, :2], (1, 1), 'SAME',
                                      dimension_numbers=NHWC,
                                      feature_group_count=2)
  chex.assert_trees_all_close(grouped, lax.conv_general_dilated(
      x, kernel[:, :, :2], (1, 1), 'SAME', dimension_numbers=NHWC,
      feature_group_count=2))
  nchw = conv.conv_general_dilated(x.transpose(0, 3, 1, 2), kernel, (1, 1),
                                   'SAME', dimension_numbers=('NCHW', 'HWIO',
                                                              'NCHW'))
  chex.assert_trees_all_close(nchw.transpose(0, 2, 3, 1),
                              conv.conv_general_dilated(x, kernel, (1, 1),
                                                        'SAME',
                                                        dimension_numbers=NHWC),
                              rtol=1e-5, atol=1e-5)


def test_gradient_convolutions_in_a_loop_body_are_canonical():
  x, kernel = _inputs((8, 8), (3, 3), in_channels=8, out_channels=8)

  def attack(impl):
    def step(_, x):
      grad = jax.grad(lambda x: jnp.tanh(impl(
          x, kernel, (1, 1), 'SAME', dimension_numbers=NHWC)).sum())(x)
      return x + 0.1 * grad
    return jax.jit(lambda x: lax.fori_loop(0, 3, step, x))

  def dim_labels(fn):
    hlo = fn.lower(x).compile().as_text()
    return {line.split('dim_labels=')[1].split(',')[0]
            for line in hlo.splitlines() if ' convolution(' in line}

  assert dim_labels(attack(conv.conv_general_dilated)) == {'b01f_01io->b01f'}
  np.testing.assert_allclose(attack(conv.conv_general_dilated)(x),
                             attack(lax.conv_general_dilated)(x), rtol=1e-4,
                             atol=1e-5)


def test_importing_lib_keeps_convolutions_off_ynnpack():
  x, kernel = _inputs((16, 16), (3, 3), in_channels=32, out_channels=64)
  x = jnp.tile(x, (64, 1, 1, 1))
  hlo = jax.jit(lambda x, k: conv.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=NHWC)).lower(
          x, kernel).compile().as_text()
  assert ' convolution(' in hlo
  assert '__ynn_fusion' not in hlo


@pytest.mark.parametrize('before, after', [
    ('', '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'),
    ('--xla_dump_to=/tmp/x', '--xla_dump_to=/tmp/x '
     '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'),
    ('--xla_cpu_experimental_ynn_fusion_type=individual_dot',
     '--xla_cpu_experimental_ynn_fusion_type=individual_dot'),
])
def test_lib_sets_its_xla_default_only_where_the_user_has_not(before, after):
  env = dict(os.environ, XLA_FLAGS=before)
  flags = subprocess.run(
      [sys.executable, '-c', 'import os, lib; print(os.environ["XLA_FLAGS"])'],
      env=env, capture_output=True, text=True, check=True).stdout.strip()
  assert flags == after
