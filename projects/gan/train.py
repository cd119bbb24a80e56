"""HW6's training: one GAN on lib.loop, scored as it trains.

`train_and_evaluate(config, workdir)` loads the data, trains (for images)
the feature classifier in WORKDIR/classifier, then runs the GAN as a
`lib.loop.Task` in WORKDIR: each loop step draws the real batches of
`steps_per_call` GAN steps and runs them in one jitted call (each GAN step:
n_critic discriminator updates, one generator update, the EMA); the loop's
step (and so the metrics' step) counts these calls. Evaluations score the EMA
generator (mode counting on mixtures and stacked digits;
FID/KID/IS/precision/recall against the real test images) and save a picture
per evaluation in WORKDIR/samples/; the end adds the final samples, a latent
interpolation and both players' curves. With config.task='pix2pix' the task
is pix2pix.make_task's (paired completion), after the same classifier; with
config.task='flow' it is flow.make_task's (a RealNVP scored in bits per
dimension, no classifier).
"""

import os

import ml_collections
import numpy as np

from lib import loop
from lib import mesh as mesh_lib
from lib import metric_log
from projects.gan import config as gan_config
from projects.gan import cycle
from projects.gan import data as data_lib
from projects.gan import flow
from projects.gan import gan as gan_lib
from projects.gan import networks
from projects.gan import pix2pix
from projects.gan import quality


def build_gan(config: ml_collections.ConfigDict,
              problem: data_lib.Problem) -> gan_lib.GAN:
  generator, discriminator = networks.make_players(
      config, problem.sample_shape, problem.num_classes)
  return gan_lib.GAN(
      generator=generator, discriminator=discriminator,
      g_tx=gan_lib.make_optimizer(config.optimizer, config.num_steps),
      d_tx=gan_lib.make_optimizer(config.d_optimizer,
                                  config.num_steps * config.n_critic),
      loss=config.loss, latent_dim=config.latent_dim,
      sample_shape=tuple(problem.sample_shape),
      num_classes=problem.num_classes if config.conditional else 0,
      n_critic=config.n_critic, gp_weight=config.gp_weight,
      clip_value=config.clip_value, ema_decay=config.ema_decay,
      pack=config.pack)


def train_classifier(config, problem: data_lib.Problem, workdir: str):
  """(feature function, test accuracy) of the feature classifier, trained
  on the single digits of stacked data, in config.classifier.workdir or
  WORKDIR/classifier (a finished one is restored, not retrained)."""
  name = data_lib.base_image_set(config.data.name)
  return quality.train_classifier(
      config, problem.images,
      config.classifier.workdir or os.path.join(workdir, 'classifier'),
      ml_collections.ConfigDict({**config.data.to_dict(), 'name': name}))


def make_task(config: ml_collections.ConfigDict, problem: data_lib.Problem,
              mesh, workdir: str | None = None,
              feature_fn=None) -> loop.Task:
  """The loop task; pictures go to `workdir` where it is given."""
  gan = build_gan(config, problem)
  gan_step = gan_lib.make_step(gan, mesh)
  sampler = gan_lib.make_sampler(gan, mesh)
  ev = config.eval
  labels = quality.evaluation_labels(ev.num_samples, gan.num_classes)
  real_test = (None if problem.images is None or problem.stacked else
               problem.images.test['image'][:ev.num_samples])
  # Every process draws the (sharded) samples; only the chief writes them.
  drawing = bool(workdir) and config.plots
  chief = loop.is_chief()

  def generator_of(state):
    return state.g_ema if config.ema_decay else state.g_params

  def samples_of(state, num=ev.num_samples, sample_labels=labels):
    return quality.draw_samples(sampler, generator_of(state), state.g_state,
                                num, ev.batch_size, config.latent_dim,
                                config.seed + 1, sample_labels)

  def score(state) -> dict[str, float]:
    samples = samples_of(state)
    if problem.centers is not None:
      return quality.mixture_metrics(samples, problem)
    if feature_fn is None:
      return {}
    if problem.stacked:
      return quality.stacked_mode_metrics((samples + 1) / 2, feature_fn)
    return quality.image_metrics((samples + 1) / 2, real_test, feature_fn,
                                 k=ev.k, labels=labels)

  def picture(state, path, title):
    if problem.centers is not None:
      samples = samples_of(state)
      if chief:
        quality.plot_mixture(samples, problem, path, title)
      return
    count = min(ev.grid_images, ev.num_samples)
    shown = samples_of(state, count, None if labels is None else
                       quality.evaluation_labels(count, gan.num_classes))
    if chief:
      quality.save_images((shown + 1) / 2, path, title)

  def step(state, step):
    batches = data_lib.real_chunk(config, problem, step)
    return gan_step(state, gan_lib.shard_chunk(batches, mesh))

  def evaluate(state, step):
    if drawing:
      gan_steps = step * config.steps_per_call
      picture(state, os.path.join(workdir, 'samples',
                                  f'step_{gan_steps:06d}.png'),
              f'{config.loss}, step {gan_steps}')
    return {'test': score(state)}

  def report(state, summary):
    del summary
    if drawing:
      picture(state, os.path.join(workdir, 'samples.png'),
              f'{config.loss}: final (EMA generator)')
      if problem.centers is None:
        z = quality.interpolation_latents(config.latent_dim, 8, 8,
                                          config.seed + 2)
        rows = (None if not gan.num_classes else
                np.repeat(np.arange(8) % gan.num_classes, 8).astype(np.int32))
        images = quality.sample_latents(sampler, generator_of(state),
                                        state.g_state, z, ev.batch_size, rows)
        if chief:
          quality.save_images((images + 1) / 2,
                              os.path.join(workdir, 'interpolation.png'),
                              'latent interpolation (one line per row)')
      if chief:
        quality.plot_players(metric_log.read_metrics(workdir),
                             os.path.join(workdir, 'players.png'),
                             config.steps_per_call,
                             f'GAN ({config.loss}): both players')
    return {}

  init = gan_lib.make_init(gan, config.seed, mesh)
  baselines = {f'baseline/init_{k}': v for k, v in score(init()).items()}
  if problem.stacked and feature_fn is not None:
    real, modes = data_lib.stacked_test(problem, ev.num_samples,
                                        config.seed + 3)
    baselines.update({f'baseline/real_{k}': v for k, v in
                      quality.stacked_mode_metrics(real, feature_fn,
                                                   modes).items()})
  return loop.Task(init=init, step=step,
                   num_steps=config.num_steps // config.steps_per_call,
                   evaluate=evaluate, report=report, baselines=baselines,
                   name=f'gan: {config.loss}',
                   remedy='lower optimizer.learning_rate and '
                   'd_optimizer.learning_rate')


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains the GAN, pix2pix, the flow or CycleGAN (config.task), after the
  feature classifier for images (CycleGAN trains its own classifiers)."""
  gan_config.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  if config.task == 'cycle':
    task = cycle.make_task(config, mesh, workdir)
  else:
    problem = data_lib.load_problem(config)  # data errors before any write
    feature_fn, extra = None, {}
    if problem.images is not None and config.task != 'flow':
      feature_fn, accuracy = train_classifier(config, problem, workdir)
      extra['classifier/test_accuracy'] = accuracy
    make = {'sample': make_task, 'pix2pix': pix2pix.make_task,
            'flow': flow.make_task}[config.task]
    task = make(config, problem, mesh, workdir, feature_fn)
    task.baselines.update(extra)
  per_call = config.steps_per_call
  cadence = loop.Cadence.from_config(
      config, log_every=config.log_every // per_call,
      eval_every=config.eval_every // per_call,
      checkpoint_every=config.checkpoint_every // per_call)
  return loop.run(task, workdir, cadence,
                  metadata={'config': config.to_dict()})
