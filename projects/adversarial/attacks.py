"""White-box L-infinity attacks as pure functions of (logits_fn, images, labels, key).

Every attack takes `logits_fn(images) -> logits` (one model, or `ensemble` of
several), images in [0, 1] and integer labels, and returns adversarial images
with |x_adv - x| <= epsilon everywhere and x_adv in [0, 1]. The attack loop is
a `lax.fori_loop`, so one `jax.jit` of an attack runs every step over the
whole batch on the device (on a CPU, fast only with convolutions from
`lib.conv`, as `lib.models` uses: see `lib/conv.py`).

  fgsm          one signed-gradient step of size epsilon (Goodfellow et al. 2015)
  ifgsm         `num_steps` signed steps of `step_size`, projected (Kurakin et al.)
  pgd           ifgsm from a uniform random start in the ball (Madry et al. 2018)
  mifgsm        ifgsm on a momentum of L1-normalized gradients (Dong et al. 2018)
  dim_mifgsm    mifgsm whose gradients pass through random resize-and-pad of the
                input with probability `diversity_prob` (Xie et al. 2019)

Untargeted attacks raise the cross-entropy of the true label; with
`targets` they lower the cross-entropy of the target class instead.
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from lib.errors import ConfigError

ATTACKS = ('fgsm', 'ifgsm', 'pgd', 'mifgsm', 'dim_mifgsm')
LogitsFn = Callable[[jax.Array], jax.Array]


def ensemble(logits_fns: Sequence[LogitsFn]) -> LogitsFn:
  """One surrogate from several: the mean of their logits (Liu et al. 2017)."""
  logits_fns = tuple(logits_fns)
  return lambda images: sum(f(images) for f in logits_fns) / len(logits_fns)


def project(adversarial: jax.Array, images: jax.Array,
            epsilon: float) -> jax.Array:
  """The nearest point of the L-inf ball of radius epsilon around `images` and of [0, 1]."""
  adversarial = jnp.clip(adversarial, images - epsilon, images + epsilon)
  return jnp.clip(adversarial, 0.0, 1.0)


def random_resize_and_pad(key, images: jax.Array, *, min_scale: float = 0.8,
                          prob: float = 1.0) -> jax.Array:
  """Each image, with probability `prob`, shrunk by a random factor and padded back.

  The factor is uniform in [min_scale, 1] and the shrunk image lands at a
  random offset in a zero canvas of the original size, so shapes are kept
  (the input-diversity transform of DIM, and the randomization defence of
  Xie et al. 2018). Differentiable in the images.
  """
  batch, height, width, _ = images.shape
  scale_key, offset_key, apply_key = jax.random.split(key, 3)
  scale = jax.random.uniform(scale_key, (batch,), minval=min_scale, maxval=1.0)
  room = jnp.stack([height * (1 - scale), width * (1 - scale)], -1)
  offset = jax.random.uniform(offset_key, (batch, 2)) * room

  def resize_one(image, scale, offset):
    return jax.image.scale_and_translate(
        image, image.shape, (0, 1), jnp.stack([scale, scale]), offset,
        'linear', antialias=True)

  resized = jax.vmap(resize_one)(images, scale, offset)
  apply = jax.random.bernoulli(apply_key, prob, (batch, 1, 1, 1))
  return jnp.where(apply, resized, images)


def _loss_gradient(logits_fn, adversarial, labels, targets):
  """d loss / d images, where the attack ascends loss."""

  def loss(x):
    logits = logits_fn(x)
    if targets is None:
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).sum()
    return -optax.softmax_cross_entropy_with_integer_labels(
        logits, targets).sum()

  return jax.grad(loss)(adversarial)


def iterative_attack(logits_fn: LogitsFn, images: jax.Array,
                     labels: jax.Array, key: jax.Array, *, epsilon: float,
                     step_size: float, num_steps: int,
                     random_start: bool = False, momentum: float = 0.0,
                     diversity_prob: float = 0.0,
                     diversity_min_scale: float = 0.8,
                     targets: jax.Array | None = None) -> jax.Array:
  """The general signed-gradient attack every named attack is a setting of.

  momentum > 0 accumulates g = momentum * g + grad / ||grad||_1 (per example)
  and steps along sign(g) (MI-FGSM); diversity_prob > 0 takes each gradient
  through `random_resize_and_pad` (DIM). Returns images in the epsilon ball
  around `images` and in [0, 1].
  """
  start_key, loop_key = jax.random.split(key)
  adversarial = images
  if random_start:
    adversarial = project(images + jax.random.uniform(
        start_key, images.shape, images.dtype, -epsilon, epsilon), images,
                          epsilon)

  def surrogate(x, step_key):
    if diversity_prob:
      x = random_resize_and_pad(step_key, x, min_scale=diversity_min_scale,
                                prob=diversity_prob)
    return logits_fn(x)

  def step(i, carry):
    adversarial, velocity = carry
    step_key = jax.random.fold_in(loop_key, i)
    grad = _loss_gradient(functools.partial(surrogate, step_key=step_key),
                          adversarial, labels, targets)
    if momentum:
      l1 = jnp.abs(grad).sum(axis=tuple(range(1, grad.ndim)), keepdims=True)
      velocity = momentum * velocity + grad / jnp.maximum(l1, 1e-12)
      grad = velocity
    adversarial = project(adversarial + step_size * jnp.sign(grad), images,
                          epsilon)
    return adversarial, velocity

  adversarial, _ = jax.lax.fori_loop(
      0, num_steps, step, (adversarial, jnp.zeros_like(images)))
  return adversarial


def fgsm(logits_fn, images, labels, key, *, epsilon: float, targets=None):
  return iterative_attack(logits_fn, images, labels, key, epsilon=epsilon,
                          step_size=epsilon, num_steps=1, targets=targets)


def ifgsm(logits_fn, images, labels, key, *, epsilon: float,
          step_size: float, num_steps: int, targets=None):
  return iterative_attack(logits_fn, images, labels, key, epsilon=epsilon,
                          step_size=step_size, num_steps=num_steps,
                          targets=targets)


def pgd(logits_fn, images, labels, key, *, epsilon: float, step_size: float,
        num_steps: int, targets=None):
  return iterative_attack(logits_fn, images, labels, key, epsilon=epsilon,
                          step_size=step_size, num_steps=num_steps,
                          random_start=True, targets=targets)


def mifgsm(logits_fn, images, labels, key, *, epsilon: float,
           step_size: float, num_steps: int, momentum: float = 1.0,
           targets=None):
  return iterative_attack(logits_fn, images, labels, key, epsilon=epsilon,
                          step_size=step_size, num_steps=num_steps,
                          momentum=momentum, targets=targets)


def dim_mifgsm(logits_fn, images, labels, key, *, epsilon: float,
               step_size: float, num_steps: int, momentum: float = 1.0,
               diversity_prob: float = 0.5, diversity_min_scale: float = 0.8,
               targets=None):
  return iterative_attack(logits_fn, images, labels, key, epsilon=epsilon,
                          step_size=step_size, num_steps=num_steps,
                          momentum=momentum, diversity_prob=diversity_prob,
                          diversity_min_scale=diversity_min_scale,
                          targets=targets)


def make_attack(name: str, settings) -> Callable:
  """attack(logits_fn, images, labels, key, targets=None) for config.attack's fields.

  `settings` has epsilon, step_size, num_steps, momentum, diversity_prob and
  diversity_min_scale; each attack reads the ones it uses.
  """
  if name == 'fgsm':
    return functools.partial(fgsm, epsilon=settings.epsilon)
  steps = dict(epsilon=settings.epsilon, step_size=settings.step_size,
               num_steps=settings.num_steps)
  if name == 'ifgsm':
    return functools.partial(ifgsm, **steps)
  if name == 'pgd':
    return functools.partial(pgd, **steps)
  if name == 'mifgsm':
    return functools.partial(mifgsm, momentum=settings.momentum, **steps)
  if name == 'dim_mifgsm':
    return functools.partial(
        dim_mifgsm, momentum=settings.momentum,
        diversity_prob=settings.diversity_prob,
        diversity_min_scale=settings.diversity_min_scale, **steps)
  raise ConfigError(f'attack {name!r}: choose from {ATTACKS}')


def universal_perturbation(logits_fn: LogitsFn, images: jax.Array,
                           labels: jax.Array, key: jax.Array, *,
                           epsilon: float, step_size: float, num_steps: int,
                           batch_size: int) -> jax.Array:
  """One perturbation [H, W, C] in the epsilon ball that fools on a whole data set.

  Signed-gradient ascent of the mean cross-entropy over random batches of
  `images` (the SGD form of Moosavi-Dezfooli et al. 2017's universal
  perturbation, as in Shafahi et al. 2020); every step stays in the ball and
  keeps each perturbed image in [0, 1] by clipping.
  """

  def loss(delta, batch_images, batch_labels):
    logits = logits_fn(jnp.clip(batch_images + delta, 0.0, 1.0))
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch_labels).mean()

  def step(i, delta):
    index = jax.random.choice(jax.random.fold_in(key, i), images.shape[0],
                              (batch_size,), replace=False)
    grad = jax.grad(loss)(delta, images[index], labels[index])
    return jnp.clip(delta + step_size * jnp.sign(grad), -epsilon, epsilon)

  return jax.lax.fori_loop(0, num_steps, step, jnp.zeros(images.shape[1:],
                                                         images.dtype))
