"""Signed-gradient L-infinity attacks on inputs in a box: images, waveforms.

`iterative_attack(logits_fn, inputs, labels, key, ...)` returns adversarial
inputs with |x_adv - x| <= epsilon everywhere and x_adv inside `bounds`. Its
loop is a `lax.fori_loop`, so one `jax.jit` runs every step over the whole
batch. Untargeted attacks raise the cross-entropy of the true label; with
`targets` they lower the cross-entropy of the target class instead.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

LogitsFn = Callable[[jax.Array], jax.Array]
Transform = Callable[[jax.Array, jax.Array], jax.Array]  # (key, x) -> x


def project(adversarial: jax.Array, originals: jax.Array, epsilon: float,
            bounds: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
  """The nearest point of the L-inf ball of radius epsilon around `originals` and of the box."""
  adversarial = jnp.clip(adversarial, originals - epsilon, originals + epsilon)
  return jnp.clip(adversarial, *bounds)


def loss_gradient(logits_fn: LogitsFn, inputs: jax.Array, labels: jax.Array,
                  targets: jax.Array | None = None) -> jax.Array:
  """d loss / d inputs, where the attack ascends loss."""

  def loss(x):
    logits = logits_fn(x)
    if targets is None:
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).sum()
    return -optax.softmax_cross_entropy_with_integer_labels(
        logits, targets).sum()

  return jax.grad(loss)(inputs)


def iterative_attack(logits_fn: LogitsFn, inputs: jax.Array,
                     labels: jax.Array, key: jax.Array, *, epsilon: float,
                     step_size: float, num_steps: int,
                     random_start: bool = False, momentum: float = 0.0,
                     transform: Transform | None = None,
                     eot_samples: int = 1,
                     targets: jax.Array | None = None,
                     bounds: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
  """`num_steps` signed-gradient steps of `step_size`, each projected.

  random_start: start from a uniform point of the ball (PGD). momentum > 0
  accumulates g = momentum * g + grad / ||grad||_1 (per example) and steps
  along sign(g) (MI-FGSM). `transform(key, x)`, when given, is applied before
  the model at each step (a random one: input diversity or a randomized
  defence), and each gradient is the mean over `eot_samples` independent
  draws of it (expectation over transformation).
  """
  start_key, loop_key = jax.random.split(key)
  adversarial = inputs
  if random_start:
    adversarial = project(inputs + jax.random.uniform(
        start_key, inputs.shape, inputs.dtype, -epsilon, epsilon), inputs,
                          epsilon, bounds)

  def step(i, carry):
    adversarial, velocity = carry

    def gradient(step_key):
      surrogate = logits_fn
      if transform is not None:
        surrogate = lambda x: logits_fn(transform(step_key, x))
      return loss_gradient(surrogate, adversarial, labels, targets)

    step_key = jax.random.fold_in(loop_key, i)
    if eot_samples == 1:
      grad = gradient(step_key)
    else:
      grad = jax.vmap(gradient)(jax.random.split(step_key, eot_samples)).mean(0)
    if momentum:
      l1 = jnp.abs(grad).sum(axis=tuple(range(1, grad.ndim)), keepdims=True)
      velocity = momentum * velocity + grad / jnp.maximum(l1, 1e-12)
      grad = velocity
    adversarial = project(adversarial + step_size * jnp.sign(grad), inputs,
                          epsilon, bounds)
    return adversarial, velocity

  adversarial, _ = jax.lax.fori_loop(
      0, num_steps, step, (adversarial, jnp.zeros_like(inputs)))
  return adversarial
