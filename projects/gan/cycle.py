"""CycleGAN (Zhu et al. 2017) for the lecture's unpaired case: translate
images of a source domain X (e.g. MNIST) to a target domain Y (e.g. USPS)
with no pairs, and back.

Two generators, G: X -> Y and F: Y -> X, and two PatchGAN discriminators,
D_Y (real y against G(x)) and D_X (real x against F(y)). The generators
minimize

  GAN(D_Y, G(x)) + GAN(D_X, F(y))
  + cycle_weight * (|F(G(x)) - x| + |G(F(y)) - y|)            cycle consistency
  + identity_weight * cycle_weight * (|G(y) - y| + |F(x) - x|)  identity

with the least-squares GAN loss by default (the paper's). As in the reference
code, one optimizer moves both generators and one both discriminators; a
step updates the generators, then the discriminators on the same (detached)
fakes, each discriminator's loss halved. The reference's history pool of 50
old fakes is left out: the discriminators see the current fakes only.

Scored with CyCADA's protocol (Hoffman et al. 2018): a classifier trained on
the source training images translated by G, with their source labels, and
tested on the real target test images (`test/translated_accuracy`, at the
end), against a classifier trained on the untranslated source
(`baseline/source_only_accuracy`) and one trained on the target's own labels
(`baseline/target_only_accuracy`, the upper reference). Every evaluation
also measures, cheaply, how often the target-only classifier reads the
translated source test images as their source label
(`test/judged_accuracy`: G keeps the digit and makes it look like the
target's) and the cycle error on both test splits.
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
from lib import metric_log
from lib import predict
from lib.data import domains
from lib.data import images as images_lib
from lib.data import splits
from projects.gan import gan as gan_lib
from projects.gan import losses
from projects.gan import pix2pix
from projects.gan import quality

LOSSES = ('least_squares', 'minimax', 'nonsaturating', 'hinge')
_SHOWN = 8  # test images per domain in the translation pictures


class ResnetGenerator(nn.Module):
  """Image (N, S, S, C) -> image of the same shape in [-1, 1]: CycleGAN's
  generator sized for small images. A 3x3 conv, up to two 4x4 stride-2 convs
  doubling the channels (generative.widths), `num_blocks` residual blocks,
  back up by 2x upsampling and 3x3 convs, a last 3x3 conv and tanh."""
  width: int = 32
  num_blocks: int = 3
  norm: str = 'instance'

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    def conv_norm(x, width, **conv_args):
      x = conv.Conv(width, use_bias=generative.bias_before(self.norm),
                    **conv_args)(x)
      return generative.normalization(self.norm, train)(x)

    channels = generative.widths(self.width, x.shape[1])[:3]
    image_channels = x.shape[-1]
    x = nn.relu(conv_norm(x, channels[0], kernel_size=(3, 3)))
    for width in channels[1:]:
      x = nn.relu(conv_norm(x, width, kernel_size=(4, 4), strides=(2, 2)))
    for _ in range(self.num_blocks):
      h = nn.relu(conv_norm(x, channels[-1], kernel_size=(3, 3)))
      x = x + conv_norm(h, channels[-1], kernel_size=(3, 3))
    for width in channels[-2::-1]:
      x = nn.relu(conv_norm(generative.upsample2x(x), width,
                            kernel_size=(3, 3)))
    return jnp.tanh(conv.Conv(image_channels, (3, 3))(x))


@flax.struct.dataclass
class CycleState:
  step: jax.Array
  g_params: Any  # {'xy': G's, 'yx': F's}
  d_params: Any  # {'y': D_Y's, 'x': D_X's}
  g_opt_state: Any
  d_opt_state: Any
  g_state: Any  # each generator's other collections (batch statistics)
  d_state: Any  # each discriminator's (spectral-norm vectors)


@dataclasses.dataclass(frozen=True)
class CycleGAN:
  generator: nn.Module
  discriminator: nn.Module
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  loss: str
  image_shape: tuple  # (S, S, C), both domains
  cycle_weight: float
  identity_weight: float

  def init(self, key) -> CycleState:
    image = jnp.zeros((1, *self.image_shape))
    keys = dict(zip(('xy', 'yx', 'y', 'x'), jax.random.split(key, 4)))
    g_vars = {name: dict(self.generator.init(keys[name], image))
              for name in ('xy', 'yx')}
    d_vars = {name: dict(self.discriminator.init(keys[name], None, image))
              for name in ('y', 'x')}
    g_params = {name: v.pop('params') for name, v in g_vars.items()}
    d_params = {name: v.pop('params') for name, v in d_vars.items()}
    return CycleState(
        step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
        g_opt_state=self.g_tx.init(g_params),
        d_opt_state=self.d_tx.init(d_params), g_state=g_vars, d_state=d_vars)

  def translate(self, g_params, g_state, direction: str, images):
    """G ('xy') or F ('yx') of images in [-1, 1], in inference mode."""
    return gan_lib.apply(self.generator, g_params[direction],
                         g_state[direction], images, train=False)[0]

  def _scores(self, d_params, d_state, domain: str, images, train: bool):
    return gan_lib.apply(self.discriminator, d_params[domain],
                         d_state[domain], None, images, train=train)

  def step(self, state: CycleState, batch):
    """One update of both generators, then of both discriminators, on
    unpaired batches batch['x'], batch['y'] [B, S, S, C] in [-1, 1]."""
    x, y = batch['x'], batch['y']

    def g_loss_fn(g_params):
      collections = dict(state.g_state)

      def run(direction, images):
        out, collections[direction] = gan_lib.apply(
            self.generator, g_params[direction], collections[direction],
            images, train=True)
        return out

      if self.identity_weight:  # G(y) ~ y, F(x) ~ x, in the same calls
        fake_y, same_y = jnp.split(run('xy', jnp.concatenate([x, y])), 2)
        fake_x, same_x = jnp.split(run('yx', jnp.concatenate([y, x])), 2)
        identity = jnp.mean(jnp.abs(same_y - y)) + jnp.mean(
            jnp.abs(same_x - x))
      else:
        fake_y, fake_x, identity = run('xy', x), run('yx', y), 0.0
      cycle = (jnp.mean(jnp.abs(run('yx', fake_y) - x)) +
               jnp.mean(jnp.abs(run('xy', fake_x) - y)))
      adversarial = sum(
          losses.generator_loss(self.loss, self._scores(
              state.d_params, state.d_state, domain, fake, False)[0])
          for domain, fake in (('y', fake_y), ('x', fake_x)))
      loss = (adversarial + self.cycle_weight * cycle +
              self.identity_weight * self.cycle_weight * identity)
      metrics = {'g_loss': loss, 'g_gan': adversarial, 'cycle_l1': cycle,
                 'identity_l1': identity}
      return loss, (metrics, collections, {'y': fake_y, 'x': fake_x})

    (_, (g_metrics, g_state, fakes)), g_grads = jax.value_and_grad(
        g_loss_fn, has_aux=True)(state.g_params)
    g_updates, g_opt_state = self.g_tx.update(g_grads, state.g_opt_state,
                                              state.g_params)

    def d_loss_fn(d_params):
      total, d_state, metrics = 0.0, {}, {}
      for domain, real in (('y', y), ('x', x)):
        scores, d_state[domain] = self._scores(
            d_params, state.d_state, domain,
            jnp.concatenate([real, jax.lax.stop_gradient(fakes[domain])]),
            True)
        real_scores, fake_scores = jnp.split(scores, 2)
        loss = 0.5 * losses.discriminator_loss(self.loss, real_scores,
                                               fake_scores)
        total += loss
        metrics[f'd_{domain}_loss'] = loss
      return total, ({'d_loss': total, **metrics}, d_state)

    (_, (d_metrics, d_state)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = self.d_tx.update(d_grads, state.d_opt_state,
                                              state.d_params)
    state = state.replace(
        step=state.step + 1,
        g_params=optax.apply_updates(state.g_params, g_updates),
        d_params=optax.apply_updates(state.d_params, d_updates),
        g_opt_state=g_opt_state, d_opt_state=d_opt_state, g_state=g_state,
        d_state=d_state)
    # The NaN stop watches 'loss': both players' losses together.
    return state, {**g_metrics, **d_metrics,
                   'loss': g_metrics['g_loss'] + d_metrics['d_loss']}


def build(config: ml_collections.ConfigDict, image_shape: tuple) -> CycleGAN:
  m, c = config.model, config.cycle
  return CycleGAN(
      generator=ResnetGenerator(m.width, c.num_blocks, m.g_norm),
      discriminator=pix2pix.PatchDiscriminator(m.width, m.d_norm,
                                               config.spectral_norm),
      g_tx=gan_lib.make_optimizer(config.optimizer, config.num_steps),
      d_tx=gan_lib.make_optimizer(config.d_optimizer, config.num_steps),
      loss=config.loss, image_shape=tuple(image_shape),
      cycle_weight=c.cycle_weight, identity_weight=c.identity_weight)


def make_step(model: CycleGAN, mesh):
  """step(state, batch) jitted once: state replicated and donated, both
  domains' batches split over the mesh's 'data' axis."""
  replicated = mesh_lib.replicated(mesh)
  return jax.jit(model.step, donate_argnums=0,
                 in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated))


def real_batch(config: ml_collections.ConfigDict, source: dict, target: dict,
               step: int) -> dict[str, np.ndarray]:
  """This process's share of step `step`'s unpaired batches, in [-1, 1]:
  a pure function of (seed, step, process)."""
  rng = np.random.default_rng([config.seed, step, jax.process_index()])
  size = config.batch_size // jax.process_count()
  return {name: 2 * images[rng.integers(0, len(images), size)] - 1
          for name, images in (('x', source['train']['image']),
                               ('y', target['train']['image']))}


def train_classifier(config: ml_collections.ConfigDict, train: dict,
                     test: dict, workdir: str):
  """(feature function, test accuracy) of config.classifier's small CNN
  trained on `train` (10% held out for validation), tested on `test`."""
  train, val = splits.split_fraction(train, 0.1, config.seed)
  images = images_lib.ImageData(train, val, test, 10,
                                tuple(str(d) for d in range(10)))
  return quality.train_classifier(config, images, workdir, config.data)


def accuracy(feature_fn, images01: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(feature_fn(images01)[1].argmax(1) == labels))


def make_task(config: ml_collections.ConfigDict, mesh,
              workdir: str) -> loop.Task:
  """The loop task: one CycleGAN step per loop step. Trains the source-only
  and target-only classifiers first (in config.classifier.workdir or
  WORKDIR/classifiers), and the CyCADA classifier at the end."""
  mesh_lib.check_batch_size(config.batch_size, mesh)
  source, target = domains.load_pair(config.data)  # data errors first
  model = build(config, source['train']['image'].shape[1:])
  step_fn = make_step(model, mesh)
  root = config.classifier.workdir or os.path.join(workdir, 'classifiers')
  _, source_only = train_classifier(config, source['train'], target['test'],
                                    os.path.join(root, 'source_only'))
  judge, target_only = train_classifier(config, target['train'],
                                        target['test'],
                                        os.path.join(root, 'target_only'))
  chief = loop.is_chief()

  def predictor(there, back):
    def fn(variables, batch, key):
      del key
      translated = model.translate(*variables, there, 2 * batch['image'] - 1)
      cycled = model.translate(*variables, back, translated)
      return {'translated': (translated + 1) / 2, 'cycled': (cycled + 1) / 2}
    return predict.Predictor(fn, mesh)

  predictors = {'xy': predictor('xy', 'yx'), 'yx': predictor('yx', 'xy')}

  def translate(state, direction, split):
    """G or F (and back) of a whole split, every process taking part."""
    return predictors[direction](
        (state.g_params, state.g_state), splits.contiguous_share(split),
        config.eval.batch_size, all_processes=True)

  def score(state) -> dict[str, float]:
    forward = translate(state, 'xy', source['test'])
    backward = translate(state, 'yx', target['test'])
    return {
        'judged_accuracy': accuracy(judge, forward['translated'],
                                    source['test']['label']),
        'cycle_l1_x': float(np.mean(np.abs(forward['cycled'] -
                                           source['test']['image']))),
        'cycle_l1_y': float(np.mean(np.abs(backward['cycled'] -
                                           target['test']['image'])))}

  def picture(state, path, title):
    rows = []
    for direction, domain in (('xy', source), ('yx', target)):
      images = {k: v[:_SHOWN] for k, v in domain['test'].items()}
      out = translate(state, direction, images)
      rows += [images['image'], out['translated'], out['cycled']]
    if chief:  # rows: x, G(x), F(G(x)), y, F(y), G(F(y))
      quality.save_images(np.concatenate(rows), path, title,
                          columns=len(rows[0]))

  def step(state, step):
    batch = real_batch(config, source, target, step)
    return step_fn(state, mesh_lib.shard_batch(batch, mesh))

  def evaluate(state, step):
    if config.plots:
      picture(state, os.path.join(workdir, 'samples', f'step_{step:06d}.png'),
              f'rows: x, G(x), F(G(x)), y, F(y), G(F(y)); step {step}')
    return {'test': score(state)}

  def report(state, summary):
    del summary
    translated = dict(source['train'])
    translated['image'] = translate(state, 'xy', source['train'])['translated']
    _, cycada = train_classifier(
        config, translated, target['test'],
        os.path.join(workdir, 'classifiers', 'translated'))
    if config.plots and chief:
      quality.plot_players(metric_log.read_metrics(workdir),
                           os.path.join(workdir, 'players.png'), 1,
                           f'CycleGAN ({config.loss}): both players')
    if config.plots:
      picture(state, os.path.join(workdir, 'translations.png'),
              'rows: x, G(x), F(G(x)), y, F(y), G(F(y))')
    return {'test/translated_accuracy': cycada}

  init = gan_lib.make_init(model, config.seed, mesh)
  baselines = {
      'baseline/source_only_accuracy': source_only,
      'baseline/target_only_accuracy': target_only,
      'baseline/judged_accuracy_untranslated': accuracy(
          judge, source['test']['image'], source['test']['label']),
      **{f'baseline/init_{k}': v for k, v in score(init()).items()}}
  return loop.Task(init=init, step=step, num_steps=config.num_steps,
                   evaluate=evaluate, report=report, baselines=baselines,
                   name=f'CycleGAN: {config.data.source} <-> '
                   f'{config.data.target}',
                   remedy='lower optimizer.learning_rate and '
                   'd_optimizer.learning_rate')
