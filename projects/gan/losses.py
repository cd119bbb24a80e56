"""The GAN objectives of the lecture, on the discriminator's raw scores.

  minimax         D: -log D(x) - log(1 - D(G(z))); G: log(1 - D(G(z)))
                  (the original game; G's gradient vanishes where D wins)
  nonsaturating   the same D; G: -log D(G(z))
  wgan            critic: E f(G(z)) - E f(x); G: -E f(G(z)); the critic's
                  weights clipped to [-c, c] after every update
  wgan_gp         wgan plus the gradient penalty E (||grad f(x_hat)|| - 1)^2
                  on random interpolates x_hat (WGAN-GP)
  hinge           D: E relu(1 - D(x)) + E relu(1 + D(G(z))); G: -E D(G(z))
                  (SNGAN's, with config.spectral_norm)
  least_squares   D: E (D(x) - 1)^2 + E D(G(z))^2; G: E (D(G(z)) - 1)^2
                  (LSGAN, Mao et al. 2017; CycleGAN's)
With D(x) = sigmoid(score), log D = -softplus(-score), log(1 - D) = -softplus(score).
"""

from typing import Callable

import jax
import jax.numpy as jnp

LOSSES = ('minimax', 'nonsaturating', 'wgan', 'wgan_gp', 'hinge',
          'least_squares')
WASSERSTEIN = ('wgan', 'wgan_gp')


def discriminator_loss(kind: str, real_scores, fake_scores) -> jax.Array:
  if kind in ('minimax', 'nonsaturating'):
    return (jnp.mean(jax.nn.softplus(-real_scores)) +
            jnp.mean(jax.nn.softplus(fake_scores)))
  if kind in WASSERSTEIN:
    return jnp.mean(fake_scores) - jnp.mean(real_scores)
  if kind == 'hinge':
    return (jnp.mean(jax.nn.relu(1.0 - real_scores)) +
            jnp.mean(jax.nn.relu(1.0 + fake_scores)))
  if kind == 'least_squares':
    return jnp.mean((real_scores - 1.0)**2) + jnp.mean(fake_scores**2)
  raise ValueError(f'unknown GAN loss {kind!r}; choose one of {LOSSES}')


def generator_loss(kind: str, fake_scores) -> jax.Array:
  if kind == 'minimax':
    return -jnp.mean(jax.nn.softplus(fake_scores))
  if kind == 'nonsaturating':
    return jnp.mean(jax.nn.softplus(-fake_scores))
  if kind in (*WASSERSTEIN, 'hinge'):
    return -jnp.mean(fake_scores)
  if kind == 'least_squares':
    return jnp.mean((fake_scores - 1.0)**2)
  raise ValueError(f'unknown GAN loss {kind!r}; choose one of {LOSSES}')


def input_gradient_norms(critic: Callable, x: jax.Array) -> jax.Array:
  """||d critic(x_i) / d x_i|| per example (the critic scores examples
  independently, so the gradient of the sum holds every example's own)."""
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x)
  return jnp.sqrt(jnp.sum(grads.reshape(len(x), -1)**2, axis=1) + 1e-12)


def gradient_penalty(critic: Callable, real, fake, key) -> jax.Array:
  """E (||grad critic(x_hat)|| - 1)^2, x_hat uniform on segments real-fake;
  differentiating it takes a gradient of a gradient."""
  shape = (len(real),) + (1,) * (real.ndim - 1)
  mix = jax.random.uniform(key, shape)
  interpolates = mix * real + (1.0 - mix) * fake
  return jnp.mean((input_gradient_norms(critic, interpolates) - 1.0)**2)


def clip_weights(params, clip_value: float):
  """WGAN's Lipschitz constraint: every critic weight in [-c, c]."""
  return jax.tree.map(lambda w: jnp.clip(w, -clip_value, clip_value), params)
