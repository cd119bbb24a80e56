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
  eot_pgd       pgd whose every gradient is the mean over `eot_samples` random
                resize-and-pads: the expectation over transformation that
                breaks the randomization defence (Athalye et al. 2018)
  one_pixel     black box: differential evolution over one pixel's place and
                colour, querying only the model's probabilities (Su et al. 2019)

Untargeted attacks raise the cross-entropy of the true label; with
`targets` they lower the cross-entropy of the target class instead.
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from lib import attacks as lib_attacks
from lib.errors import ConfigError

ATTACKS = ('fgsm', 'ifgsm', 'pgd', 'mifgsm', 'dim_mifgsm', 'eot_pgd')
LogitsFn = lib_attacks.LogitsFn


def ensemble(logits_fns: Sequence[LogitsFn]) -> LogitsFn:
  """One surrogate from several: the mean of their logits (Liu et al. 2017)."""
  logits_fns = tuple(logits_fns)
  return lambda images: sum(f(images) for f in logits_fns) / len(logits_fns)


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


def iterative_attack(logits_fn: LogitsFn, images: jax.Array,
                     labels: jax.Array, key: jax.Array, *, epsilon: float,
                     step_size: float, num_steps: int,
                     random_start: bool = False, momentum: float = 0.0,
                     diversity_prob: float = 0.0,
                     diversity_min_scale: float = 0.8,
                     eot_samples: int = 1,
                     targets: jax.Array | None = None) -> jax.Array:
  """lib.attacks.iterative_attack on images in [0, 1], every named attack a setting of it.

  diversity_prob > 0 takes each gradient through `random_resize_and_pad`
  (DIM), averaged over `eot_samples` independent draws (EOT).
  """
  transform = None
  if diversity_prob:
    transform = functools.partial(random_resize_and_pad,
                                  min_scale=diversity_min_scale,
                                  prob=diversity_prob)
  return lib_attacks.iterative_attack(
      logits_fn, images, labels, key, epsilon=epsilon, step_size=step_size,
      num_steps=num_steps, random_start=random_start, momentum=momentum,
      transform=transform, eot_samples=eot_samples, targets=targets)


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


def eot_pgd(logits_fn, images, labels, key, *, epsilon: float,
            step_size: float, num_steps: int, eot_samples: int,
            min_scale: float = 0.8, targets=None):
  return iterative_attack(logits_fn, images, labels, key, epsilon=epsilon,
                          step_size=step_size, num_steps=num_steps,
                          random_start=True, diversity_prob=1.0,
                          diversity_min_scale=min_scale,
                          eot_samples=eot_samples, targets=targets)


def one_pixel(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array,
              key: jax.Array, *, population: int = 100,
              generations: int = 30, scale: float = 0.5,
              candidates_at_once: int = 8,
              targets: jax.Array | None = None) -> jax.Array:
  """Each image with one pixel changed, found by differential evolution.

  A candidate is (row, column, colour...); the first generation's places are
  uniform and its colours N(0.5, 0.5) clipped to [0, 1]. Each generation every
  candidate i meets a child r1 + scale * (r2 - r3) of three others drawn
  without replacement, which replaces it when its fitness is no worse; the
  fitness is the true label's probability (with `targets`, minus the target's).
  Only the model's outputs are read: a black-box attack. The model sees
  `candidates_at_once` candidates of every image per call (memory).
  """
  batch, height, width, channels = images.shape
  place_key, colour_key, loop_key = jax.random.split(key, 3)
  shape = (batch, population)
  candidates = jnp.concatenate([
      jax.random.uniform(place_key, (*shape, 2)) * jnp.array([height, width]),
      jnp.clip(0.5 + 0.5 * jax.random.normal(colour_key, (*shape, channels)),
               0.0, 1.0)], -1)
  bounds = jnp.array([height - 1e-3, width - 1e-3] + [1.0] * channels)

  def perturb(candidates):  # [B, P, 2 + C] -> [B, P, H, W, C]
    row = jax.nn.one_hot(candidates[..., 0].astype(jnp.int32), height)
    column = jax.nn.one_hot(candidates[..., 1].astype(jnp.int32), width)
    mask = (row[..., :, None] * column[..., None, :])[..., None]
    colour = candidates[..., None, None, 2:]
    return images[:, None] * (1 - mask) + mask * colour

  def fitness(candidates):
    perturbed = jnp.swapaxes(perturb(candidates), 0, 1)  # [P, B, H, W, C]
    logits = jax.lax.map(logits_fn, perturbed, batch_size=candidates_at_once)
    probs = jax.nn.softmax(jnp.swapaxes(logits, 0, 1))
    score = jnp.take_along_axis(probs, labels[:, None, None], -1)[..., 0]
    if targets is not None:
      score = -jnp.take_along_axis(probs, targets[:, None, None], -1)[..., 0]
    return score

  def generation(g, carry):
    candidates, scores = carry
    noise = jax.random.uniform(jax.random.fold_in(loop_key, g),
                               (*shape, population))
    noise = noise + jnp.eye(population)  # never pick oneself
    _, parents = jax.lax.top_k(-noise, 3)  # [B, P, 3], distinct
    pick = jax.vmap(lambda c, p: c[p])(candidates, parents)  # [B, P, 3, D]
    child = jnp.clip(pick[..., 0, :] + scale * (pick[..., 1, :] -
                                                pick[..., 2, :]),
                     0.0, bounds)
    child_scores = fitness(child)
    better = child_scores <= scores
    return (jnp.where(better[..., None], child, candidates),
            jnp.where(better, child_scores, scores))

  candidates, scores = jax.lax.fori_loop(
      0, generations, generation, (candidates, fitness(candidates)))
  best = jnp.take_along_axis(candidates, scores.argmin(1)[:, None, None], 1)
  return perturb(best)[:, 0]


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
  if name == 'eot_pgd':
    return functools.partial(eot_pgd, eot_samples=settings.eot_samples,
                             min_scale=settings.diversity_min_scale, **steps)
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
