"""RealNVP (Dinh et al. 2017), the lecture's flow: an exact log-likelihood.

Images on `levels` grey levels are dequantized with uniform noise, mapped to
logit space (y -> logit(alpha + (1 - 2 alpha) y), as the paper does), and sent
through affine coupling layers in the paper's multi-scale layout: at every
scale but the last, 3 checkerboard couplings, a squeeze (2x2 pixels to 4
channels), 3 channel couplings, and half the channels factored out as latent;
the last scale has 4 checkerboard couplings. Each coupling keeps one half of
the input, x_b, and maps the other to x * exp(s(x_b)) + t(x_b), so its
log-determinant is the sum of s and its inverse is exact. The score is bits
per dimension, -log2 p(x) / D of the discrete image (the dequantized bound).

config.task='flow' trains one on the shared loop as a plain lib.trainer
Experiment and reports test bits/dim against two baselines: uniform levels
and independent per-pixel histograms fitted on the training split.
"""

import dataclasses
import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import errors
from lib import loop
from lib import trainer
from projects.gan import data as data_lib
from projects.gan import quality

CHECKER_COUPLINGS = 3
CHANNEL_COUPLINGS = 3
LAST_COUPLINGS = 4


def squeeze(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, 4C]: each 2x2 block of pixels to channels."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c // 4)


def coupling_mask(kind: str, parity: int, shape) -> jnp.ndarray:
  """1 where a coupling keeps (and reads) the input, 0 where it transforms."""
  h, w, c = shape
  if kind == 'checker':
    rows, cols = np.indices((h, w))
    keep = ((rows + cols) % 2 == parity)[..., None]
  else:
    keep = (np.arange(c) < c // 2) == (parity == 0)
  return jnp.asarray(np.broadcast_to(keep, (h, w, c)), jnp.float32)


class Coupling(nn.Module):
  """An affine coupling; s and t from a small residual CNN of the kept half."""
  kind: str  # checker | channel
  parity: int
  hidden: int
  num_blocks: int

  @nn.compact
  def __call__(self, x, reverse: bool = False):
    keep = coupling_mask(self.kind, self.parity, x.shape[1:])
    kept = x * keep
    h = nn.Conv(self.hidden, (3, 3))(
        jnp.concatenate([kept, jnp.broadcast_to(keep, x.shape)], -1))
    for _ in range(self.num_blocks):
      r = nn.Conv(self.hidden, (3, 3))(nn.relu(h))
      h = h + nn.Conv(self.hidden, (3, 3))(nn.relu(r))
    # Zero-initialized: every coupling starts as the identity.
    out = nn.Conv(2 * x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(
        nn.relu(h))
    raw_s, t = jnp.split(out, 2, axis=-1)
    rescale = self.param('rescale', nn.initializers.ones, (x.shape[-1],))
    s = (1 - keep) * rescale * jnp.tanh(raw_s)
    t = (1 - keep) * t
    if reverse:
      return kept + (1 - keep) * (x - t) * jnp.exp(-s)
    return kept + (1 - keep) * (x * jnp.exp(s) + t), jnp.sum(s, (1, 2, 3))


def _alternating(kind, count, hidden, num_blocks, prefix):
  return [Coupling(kind, i % 2, hidden, num_blocks, name=f'{prefix}_{i}')
          for i in range(count)]


class RealNVP(nn.Module):
  """x [B, H, W, C] (logit space) <-> z [B, H*W*C], with log|det dz/dx|."""
  image_shape: tuple
  num_scales: int = 3
  hidden: int = 32
  num_blocks: int = 1

  def setup(self):
    h, w, _ = self.image_shape
    step = 2 ** (self.num_scales - 1)
    if h % step or w % step:
      raise errors.ConfigError(
          f'flow.num_scales={self.num_scales} squeezes {step}x: images of '
          f'{h}x{w} must have sides divisible by {step}')
    args = (self.hidden, self.num_blocks)
    self.checker = [_alternating('checker', CHECKER_COUPLINGS, *args,
                                 f'scale{i}_checker')
                    for i in range(self.num_scales - 1)]
    self.channel = [_alternating('channel', CHANNEL_COUPLINGS, *args,
                                 f'scale{i}_channel')
                    for i in range(self.num_scales - 1)]
    self.last = _alternating('checker', LAST_COUPLINGS, *args, 'last_checker')

  def _latent_shapes(self):
    """The shapes of the factored-out parts, in order, then the last scale's."""
    h, w, c = self.image_shape
    shapes = []
    for _ in range(self.num_scales - 1):
      h, w, c = h // 2, w // 2, 2 * c  # squeezed to 4c, half factored out
      shapes.append((h, w, c))
    return shapes + [(h, w, c)]

  def __call__(self, x, *, train: bool = False):
    del train  # no dropout or batch statistics
    logdet = jnp.zeros(x.shape[0])

    def through(layers, x, logdet):
      for layer in layers:
        x, layer_logdet = layer(x)
        logdet += layer_logdet
      return x, logdet

    latents = []
    for checker, channel in zip(self.checker, self.channel):
      x, logdet = through(checker, x, logdet)
      x, logdet = through(channel, squeeze(x), logdet)
      x, out = jnp.split(x, 2, axis=-1)
      latents.append(out)
    x, logdet = through(self.last, x, logdet)
    latents.append(x)
    z = jnp.concatenate([v.reshape(v.shape[0], -1) for v in latents], -1)
    return z, logdet

  def inverse(self, z):
    shapes = self._latent_shapes()
    sizes = np.cumsum([np.prod(s) for s in shapes])[:-1]
    parts = [p.reshape(-1, *s) for p, s in zip(jnp.split(z, sizes, -1), shapes)]
    x = parts[-1]
    for layer in reversed(self.last):
      x = layer(x, reverse=True)
    for i in reversed(range(self.num_scales - 1)):
      x = jnp.concatenate([x, parts[i]], -1)
      for layer in reversed(self.channel[i]):
        x = layer(x, reverse=True)
      x = unsqueeze(x)
      for layer in reversed(self.checker[i]):
        x = layer(x, reverse=True)
    return x


def to_logit(y, alpha: float):
  """logit(alpha + (1 - 2 alpha) y) and its log-determinant per example."""
  p = alpha + (1 - 2 * alpha) * y
  logdet = jnp.log1p(-2 * alpha) - jnp.log(p) - jnp.log1p(-p)
  return jnp.log(p) - jnp.log1p(-p), jnp.sum(logdet, (1, 2, 3))


def from_logit(x, alpha: float):
  return jnp.clip((jax.nn.sigmoid(x) - alpha) / (1 - 2 * alpha), 0.0, 1.0)


def bits_per_dim(model: RealNVP, params, images01, noise, *, levels: int,
                 alpha: float) -> jax.Array:
  """-log2 p(x) / D per example of images on `levels` levels in [0, 1],
  dequantized by `noise` (uniform in [0, 1), the images' shape)."""
  y = (jnp.round(images01 * (levels - 1)) + noise) / levels
  x, logit_logdet = to_logit(y, alpha)
  z, flow_logdet = model.apply({'params': params}, x)
  dims = z.shape[-1]
  log_prior = -0.5 * jnp.sum(z ** 2 + jnp.log(2 * jnp.pi), -1)
  log_density = log_prior + flow_logdet + logit_logdet - dims * jnp.log(levels)
  return -log_density / (dims * jnp.log(2.0))


def histogram_bits_per_dim(train01: np.ndarray, test01: np.ndarray,
                           levels: int) -> float:
  """Independent pixels: each pixel's level histogram on the training split
  (add-one smoothed), scored on the test split."""
  def pixel_levels(images01):  # [N, pixels] -> pixel * levels + level
    values = np.rint(images01 * (levels - 1)).astype(np.int64)
    values = values.reshape(len(values), -1)
    return np.arange(values.shape[1]) * levels + values

  num_pixels = int(np.prod(train01.shape[1:]))
  counts = 1.0 + np.bincount(pixel_levels(train01).ravel(),
                             minlength=num_pixels * levels)
  counts = counts.reshape(num_pixels, levels)
  log2_p = np.log2(counts / counts.sum(1, keepdims=True)).ravel()
  return float(-log2_p[pixel_levels(test01)].mean())


def check_levels(images01: np.ndarray, levels: int, name: str):
  off = np.abs(images01 * (levels - 1) - np.rint(images01 * (levels - 1)))
  if off.max() > 1e-3:
    raise errors.DataError(
        f'{name} images are not on config.flow.levels={levels} grey levels '
        f'(a pixel is {off.max():.3f} of a level away); set flow.levels to '
        'the data set\'s (digits 17, mnist and cifar10 256)')


def build(config: ml_collections.ConfigDict,
          problem: data_lib.Problem) -> trainer.Experiment:
  f = config.flow
  train, test = problem.images.train, problem.images.test
  for split in (train, test):
    check_levels(split['image'], f.levels, config.data.name)
  model = RealNVP(tuple(problem.sample_shape), f.num_scales, f.hidden,
                  f.num_blocks)
  score = functools.partial(bits_per_dim, model, levels=f.levels,
                            alpha=f.alpha)

  def loss_fn(params, model_state, batch, key):
    noise = jax.random.uniform(key, batch['image'].shape)
    bpd = score(params, batch['image'], noise)
    return jnp.mean(bpd), ({'bits_per_dim': jnp.mean(bpd)}, model_state)

  def eval_fn(params, model_state, batch):
    del model_state  # one fixed dequantization, the same at every evaluation
    noise = jax.random.uniform(jax.random.key(0), batch['image'].shape)
    return {'bits_per_dim': score(params, batch['image'], noise)}

  return trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=eval_fn,
      train_data={'image': train['image']},
      eval_data={'test': {'image': test['image']}},
      sample_input=np.zeros((1, *problem.sample_shape), np.float32),
      baselines={
          'baseline/uniform_bits_per_dim': float(np.log2(f.levels)),
          'baseline/pixel_histogram_bits_per_dim': histogram_bits_per_dim(
              train['image'], test['image'], f.levels)})


def sample(model: RealNVP, params, num: int, key, *, temperature: float,
           alpha: float) -> np.ndarray:
  """`num` images in [0, 1] from z ~ N(0, temperature^2 I)."""
  dims = int(np.prod(model.image_shape))
  z = temperature * jax.random.normal(key, (num, dims))
  x = jax.jit(lambda p, z: model.apply({'params': p}, z,
                                       method=RealNVP.inverse))(params, z)
  return np.asarray(from_logit(x, alpha))


def make_task(config: ml_collections.ConfigDict, problem: data_lib.Problem,
              mesh, workdir: str | None = None, feature_fn=None) -> loop.Task:
  del feature_fn  # scored by likelihood, not by a classifier
  experiment = build(config, problem)
  task = trainer.make_task(config, experiment, mesh)

  def report(state, summary):
    del summary
    if workdir and config.plots:
      images = sample(experiment.model, state.params, config.eval.grid_images,
                      jax.random.key(config.seed + 1),
                      temperature=config.flow.temperature,
                      alpha=config.flow.alpha)
      if loop.is_chief():
        quality.save_images(images, os.path.join(workdir, 'samples.png'),
                            f'RealNVP samples (temperature '
                            f'{config.flow.temperature})')
    return {}

  return dataclasses.replace(task, report=report, name='flow: RealNVP')
