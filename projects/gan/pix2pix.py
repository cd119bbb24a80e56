"""pix2pix (Isola et al. 2017) for the lecture's paired case: complete a digit
from its visible half.

The condition is the image with its hidden half (`MASKS`) set to 0, the
middle grey of [-1, 1]. A U-Net generator (encoder-decoder with skip
connections) predicts the whole image; the completion keeps the visible half
as given and takes only the hidden half from the generator, so every loss and
metric is about the hidden half. A PatchGAN discriminator scores each patch
of (condition, image) pairs: real pairs (condition, truth) against fake ones
(condition, completion). The generator minimizes

  gan_weight * GAN loss (losses.py) + l1_weight * L1 on the hidden half

(gan_weight = 0: L1 alone, the regression to the mean that blurs; l1_weight =
0: the GAN alone, free to invent any digit that fits the visible half).

`Pix2Pix.step` is one discriminator update and one generator update from one
generator forward pass (the generator's gradient is pulled back through it
after the discriminator's update, as the reference code does); `make_step`
jits it, state replicated and donated, the batch split over the mesh.
`make_task` runs it on lib.loop and scores the completions of the whole test
split.
"""

import dataclasses
import os
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import conv
from lib import generative
from lib import loop
from lib import mesh as mesh_lib
from lib import predict
from lib.data import splits
from lib.errors import ConfigError
from lib.metrics import sample_quality
from projects.gan import data as data_lib
from projects.gan import gan as gan_lib
from projects.gan import losses
from projects.gan import quality

MASKS = ('bottom_half', 'right_half')
# No weight clipping or gradient penalty here.
LOSSES = ('minimax', 'nonsaturating', 'hinge', 'least_squares')
# The lecture's three: L1 alone blurs, the GAN alone invents, both together.
SETTINGS = {'l1_only': {'gan_weight': 0.0}, 'gan_only': {'l1_weight': 0.0},
            'l1_gan': {}}
_SHOWN = 12  # test images in WORKDIR/completions.png


def hidden_mask(kind: str, size: int) -> np.ndarray:
  """[size, size, 1] float32: 1 on the pixels the generator must fill in."""
  rows, columns = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  if kind == 'bottom_half':
    hidden = rows >= size // 2
  elif kind == 'right_half':
    hidden = columns >= size // 2
  else:
    raise ConfigError(f'config.pix2pix.mask={kind!r}: choose one of {MASKS}')
  return hidden[..., None].astype(np.float32)


def shown_input(images01: np.ndarray, hidden: np.ndarray) -> np.ndarray:
  """The condition as a picture: the hidden half grey."""
  return images01 * (1 - hidden) + 0.5 * hidden


def hidden_mean(values, hidden):
  """The mean of `values` [N, H, W, C] over the hidden pixels."""
  hidden = jnp.broadcast_to(hidden, values.shape)
  return jnp.sum(values * hidden) / jnp.sum(hidden)


def generator_objective(kind: str, fake_scores, completion, target, hidden, *,
                        l1_weight: float, gan_weight: float):
  """(gan_weight * GAN loss + l1_weight * hidden-half L1, its two parts)."""
  adversarial = losses.generator_loss(kind, fake_scores)
  l1 = hidden_mean(jnp.abs(completion - target), hidden)
  return gan_weight * adversarial + l1_weight * l1, {'g_gan': adversarial,
                                                     'l1': l1}


class UNet(nn.Module):
  """Condition (N, S, S, C) -> image (N, S, S, C) in [-1, 1].

  Encoder: per resolution of generative.widths (S, S/2, ...; channels width,
  2 width, ...) a 3x3 conv, stepping down by 4x4 stride-2 convs; one more
  3x3 conv at the smallest map, so its field reaches across the image.
  Decoder: 2x upsample, concatenate the encoder's map of that resolution
  (the skip connection), 3x3 conv; a last 3x3 conv and tanh.
  """
  width: int = 32
  norm: str = 'batch'

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    def block(x, width, activation, **conv_args):
      x = conv.Conv(width, use_bias=generative.bias_before(self.norm),
                    **conv_args)(x)
      return activation(generative.normalization(self.norm, train)(x))

    leaky = lambda x: nn.leaky_relu(x, 0.2)
    channels = generative.widths(self.width, x.shape[1])
    image_channels = x.shape[-1]
    skips = []
    for level, width in enumerate(channels):
      if level:
        x = block(x, width, leaky, kernel_size=(4, 4), strides=(2, 2))
      x = block(x, width, leaky, kernel_size=(3, 3))
      skips.append(x)
    x = block(x, channels[-1], nn.relu, kernel_size=(3, 3))
    for width, skip in zip(channels[-2::-1], skips[-2::-1]):
      x = jnp.concatenate([generative.upsample2x(x), skip], axis=-1)
      x = block(x, width, nn.relu, kernel_size=(3, 3))
    return jnp.tanh(conv.Conv(image_channels, (3, 3))(x))


class PatchDiscriminator(nn.Module):
  """(condition, image) -> one score per patch [N, S / 2**k, S / 2**k];
  with condition None it scores the image alone (CycleGAN's discriminator).

  A 3x3 conv, then 4x4 stride-2 convs doubling the channels down to the
  encoder's smallest map, and a 3x3 conv to one score per position; each
  score sees a patch of the pair (PatchGAN, sized for small images).
  """
  width: int = 32
  norm: str = 'none'
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, condition, image, *, train: bool = False):
    sn = lambda layer: generative.spectrally_normalized(
        layer, self.spectral_norm, train)
    leaky = lambda x: nn.leaky_relu(x, 0.2)
    x = image if condition is None else jnp.concatenate([condition, image],
                                                        axis=-1)
    channels = generative.widths(self.width, x.shape[1])
    x = leaky(sn(conv.Conv(channels[0], (3, 3)))(x))
    for width in channels[1:]:
      x = sn(conv.Conv(width, (4, 4), strides=(2, 2),
                       use_bias=generative.bias_before(self.norm)))(x)
      x = leaky(generative.normalization(self.norm, train)(x))
    return sn(conv.Conv(1, (3, 3)))(x)[..., 0]


@flax.struct.dataclass
class Pix2PixState:
  step: jax.Array
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any
  g_state: Any  # the generator's other collections, e.g. batch statistics
  d_state: Any  # the discriminator's, e.g. spectral-norm vectors


@dataclasses.dataclass(frozen=True)
class Pix2Pix:
  generator: nn.Module
  discriminator: nn.Module
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  loss: str
  image_shape: tuple  # (S, S, C)
  hidden: np.ndarray  # [S, S, 1], 1 on the hidden half
  l1_weight: float
  gan_weight: float

  def init(self, key) -> Pix2PixState:
    g_key, d_key = jax.random.split(key)
    image = jnp.zeros((1, *self.image_shape))
    g_vars = dict(self.generator.init(g_key, image))
    d_vars = dict(self.discriminator.init(d_key, image, image))
    g_params, d_params = g_vars.pop('params'), d_vars.pop('params')
    return Pix2PixState(
        step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
        g_opt_state=self.g_tx.init(g_params),
        d_opt_state=self.d_tx.init(d_params), g_state=g_vars, d_state=d_vars)

  def condition(self, images):
    """The images with their hidden half set to 0 (middle grey)."""
    return images * (1.0 - self.hidden)

  def complete(self, g_params, g_state, condition, *, train: bool):
    """(completion: the visible half kept, the hidden half generated,
    the generator's updated collections)."""
    output, g_state = gan_lib.apply(self.generator, g_params, g_state,
                                    condition, train=train)
    return condition + self.hidden * output, g_state

  def step(self, state: Pix2PixState, target):
    """One discriminator and one generator update on target images [B, ...]
    in [-1, 1]."""
    condition = self.condition(target)
    completion, pull_back, g_state = jax.vjp(
        lambda g_params: self.complete(g_params, state.g_state, condition,
                                       train=True),
        state.g_params, has_aux=True)

    def d_loss_fn(d_params):
      scores, d_state = gan_lib.apply(
          self.discriminator, d_params, state.d_state,
          jnp.concatenate([condition, condition]),
          jnp.concatenate([target, jax.lax.stop_gradient(completion)]),
          train=True)
      real_scores, fake_scores = jnp.split(scores, 2)
      loss = losses.discriminator_loss(self.loss, real_scores, fake_scores)
      return loss, ({'d_loss': loss, 'd_real': jnp.mean(real_scores),
                     'd_fake': jnp.mean(fake_scores)}, d_state)

    (_, (d_metrics, d_state)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = self.d_tx.update(d_grads, state.d_opt_state,
                                              state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    def g_loss_fn(completion):  # the updated discriminator judges
      scores, _ = gan_lib.apply(self.discriminator, d_params, d_state,
                                condition, completion, train=False)
      return generator_objective(self.loss, scores, completion, target,
                                 self.hidden, l1_weight=self.l1_weight,
                                 gan_weight=self.gan_weight)

    (g_loss, g_metrics), completion_grad = jax.value_and_grad(
        g_loss_fn, has_aux=True)(completion)
    (g_grads,) = pull_back(completion_grad)
    g_updates, g_opt_state = self.g_tx.update(g_grads, state.g_opt_state,
                                              state.g_params)
    state = state.replace(
        step=state.step + 1, g_params=optax.apply_updates(state.g_params,
                                                          g_updates),
        d_params=d_params, g_opt_state=g_opt_state, d_opt_state=d_opt_state,
        g_state=g_state, d_state=d_state)
    # The NaN stop watches 'loss': both players' losses together.
    metrics = {**d_metrics, **g_metrics, 'g_loss': g_loss,
               'loss': d_metrics['d_loss'] + g_loss}
    return state, metrics


def build(config: ml_collections.ConfigDict,
          problem: data_lib.Problem) -> Pix2Pix:
  m, p = config.model, config.pix2pix
  return Pix2Pix(
      generator=UNet(m.width, m.g_norm),
      discriminator=PatchDiscriminator(m.width, m.d_norm,
                                       config.spectral_norm),
      g_tx=gan_lib.make_optimizer(config.optimizer, config.num_steps),
      d_tx=gan_lib.make_optimizer(config.d_optimizer, config.num_steps),
      loss=config.loss, image_shape=tuple(problem.sample_shape),
      hidden=hidden_mask(p.mask, problem.sample_shape[0]),
      l1_weight=p.l1_weight, gan_weight=p.gan_weight)


def make_step(model: Pix2Pix, mesh):
  """step(state, target) jitted once: state replicated and donated, the
  target batch split over the mesh's 'data' axis."""
  replicated = mesh_lib.replicated(mesh)
  return jax.jit(model.step, donate_argnums=0,
                 in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated))


def gradient_magnitude(images: np.ndarray) -> np.ndarray:
  """|image gradient| by forward differences, [N, S-1, S-1, C]."""
  dy = images[:, 1:, :-1] - images[:, :-1, :-1]
  dx = images[:, :-1, 1:] - images[:, :-1, :-1]
  return np.sqrt(dx**2 + dy**2)


def completion_metrics(completions: np.ndarray, images: np.ndarray,
                       labels: np.ndarray, hidden: np.ndarray,
                       feature_fn=None, real_features=None) -> dict:
  """Scores of completions against the true images (both in [0, 1]):
  hidden-half L1 and MSE; sharpness = mean gradient magnitude over the hidden
  half relative to the true images'; with a classifier, faithfulness (its
  accuracy on the completions against the true labels) and realism (FID
  against the real images' features)."""
  error = completions - images
  weights = np.broadcast_to(hidden, error.shape)
  gradients = [gradient_magnitude(x) for x in (completions, images)]
  grad_weights = np.broadcast_to(hidden[:-1, :-1], gradients[0].shape)
  sharpness = [np.average(g, weights=grad_weights) for g in gradients]
  metrics = {'hidden_l1': np.average(np.abs(error), weights=weights),
             'hidden_mse': np.average(error**2, weights=weights),
             'sharpness_ratio': sharpness[0] / sharpness[1]}
  if feature_fn is not None:
    features, probabilities = feature_fn(completions)
    metrics['accuracy'] = np.mean(probabilities.argmax(1) == labels)
    metrics['fid'] = sample_quality.fid(real_features, features)
  return {name: float(value) for name, value in metrics.items()}


def make_task(config: ml_collections.ConfigDict, problem: data_lib.Problem,
              mesh, workdir: str | None = None,
              feature_fn=None) -> loop.Task:
  """The loop task: one pix2pix step per loop step; evaluations score the
  completions of the whole test split; the end draws some of them."""
  mesh_lib.check_batch_size(config.batch_size, mesh)
  model = build(config, problem)
  step_fn = make_step(model, mesh)
  test = problem.images.test
  real_features = None if feature_fn is None else feature_fn(test['image'])[0]

  def predict_fn(variables, batch, key):
    del key
    condition = model.condition(2 * batch['image'] - 1)
    completion, _ = model.complete(*variables, condition, train=False)
    return {'completion': (completion + 1) / 2, 'image': batch['image'],
            'label': batch['label']}

  predictor = predict.Predictor(predict_fn, mesh)

  def test_completions(state):
    """Completions of the whole test split, with the truth beside them."""
    return predictor((state.g_params, state.g_state),
                     splits.shard_for_process(test), config.eval.batch_size,
                     all_processes=True)

  def score(outputs):
    return completion_metrics(outputs['completion'], outputs['image'],
                              outputs['label'], model.hidden, feature_fn,
                              real_features)

  def step(state, step):
    target = data_lib.real_batch(config, problem, step)['real'][0]
    return step_fn(state, mesh_lib.shard_batch(target, mesh))

  def report(state, summary):
    del summary
    if workdir and config.plots:
      images = test['image'][:_SHOWN]
      shown = completions(model, state, images)  # every process takes part
      if loop.is_chief():
        save_comparison(images, model.hidden,
                        {setting_name(config): shown},
                        os.path.join(workdir, 'completions.png'))
    return {}

  mean_fill = (test['image'] * (1 - model.hidden) + model.hidden *
               ((problem.train.mean(0) + 1) / 2))
  baselines = {f'baseline/mean_fill_{k}': v for k, v in score(
      {'completion': mean_fill, **test}).items()}
  return loop.Task(
      init=gan_lib.make_init(model, config.seed, mesh), step=step,
      num_steps=config.num_steps,
      evaluate=lambda state, step: {'test': score(test_completions(state))},
      report=report, baselines=baselines,
      name=f'pix2pix: {setting_name(config)}',
      remedy='lower optimizer.learning_rate and d_optimizer.learning_rate')


def setting_name(config: ml_collections.ConfigDict) -> str:
  """'L1 only', 'GAN only' or 'L1 x <l1_weight> + GAN x <gan_weight>'."""
  p = config.pix2pix
  if not p.gan_weight:
    return 'L1 only'
  if not p.l1_weight:
    return 'GAN only'
  return f'L1 x {p.l1_weight:g} + GAN x {p.gan_weight:g}'


def setting_config(config: ml_collections.ConfigDict,
                   setting: str) -> ml_collections.ConfigDict:
  """`config` with one of SETTINGS' weights: the L1 or the GAN term off."""
  if setting not in SETTINGS:
    raise ConfigError(f'unknown pix2pix setting {setting!r}; choose from '
                      f'{tuple(SETTINGS)}')
  config = config.copy_and_resolve_references()
  config.pix2pix.update(SETTINGS[setting])
  return config


def completions(model: Pix2Pix, state: Pix2PixState,
                images01: np.ndarray) -> np.ndarray:
  """The model's completions of `images01` (a few, in [0, 1])."""
  completion, _ = jax.jit(model.complete, static_argnames='train')(
      state.g_params, state.g_state, model.condition(2 * images01 - 1),
      train=False)
  return (np.asarray(completion) + 1) / 2


def save_comparison(images01: np.ndarray, hidden: np.ndarray,
                    columns: dict[str, np.ndarray], path: str):
  """Rows of input | each of `columns` (name: completions) | truth."""
  shown = [shown_input(images01, hidden), *columns.values(), images01]
  grid = np.stack(shown, axis=1).reshape(-1, *images01.shape[1:])
  quality.save_images(grid, path, ' | '.join(['input', *columns, 'truth']),
                      columns=len(shown))
