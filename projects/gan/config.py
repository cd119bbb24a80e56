"""Configs for HW6: the GAN family on 2-D mixtures and images.

Variants (`--config=projects/gan/config.py:VARIANT`):
  (none)              8 Gaussians on a ring (std 0.02), MLP players (3 x 128),
                      the non-saturating loss, 6,000 steps of 256.
  quick               the ring with 3 x 64 players, batch 128, 2,000 steps: a
                      few seconds (the tour: modes covered, target >= 7).
  grid                25 Gaussians on a 5x5 grid (std 0.05).
  digits              DCGAN players on scikit-learn's 8x8 digits (offline),
                      scored by a classifier trained on the real digits.
  digits_conditional  a class-conditional generator and a projection
                      discriminator on the digits.
  mnist               DCGAN on MNIST (`data.mnist_dir`, 28x28).
  cifar10             DCGAN on CIFAR-10 (`data.cifar10_dir`, 32x32 RGB).
  stacked_mnist       DCGAN on Stacked MNIST: three MNIST training digits as
                      the R, G, B channels (1,000 modes), scored by mode
                      counting on 26,000 samples (as PacGAN): each channel
                      read by the classifier trained on single digits.
  stacked_digits      the same on scikit-learn's 8x8 digits (offline).
  folder              every image under `data.folder` (the homework's anime
                      faces) at 64x64; samples and grids only (no labels, so
                      no classifier to score them).
  pix2pix             pix2pix (pix2pix.py) on the digits upsampled to 16x16
                      (offline): complete the hidden bottom half; L1 + GAN.
  pix2pix_mnist       pix2pix on MNIST (`data.mnist_dir`, 28x28).
  flow                a RealNVP flow (flow.py) on the digits (17 grey levels,
                      offline), scored in bits per dimension.
  flow_mnist          RealNVP on MNIST (`data.mnist_dir`, 256 levels).
  cycle               CycleGAN (cycle.py): scikit-learn's digits <-> the
                      other half of them on dark colour textures (digits_m,
                      offline), 16x16, scored by CyCADA's protocol.
  cycle_mnist_usps    CycleGAN MNIST <-> USPS (`data.mnist_dir`,
                      `data.usps_path`), 16x16, 10k training images each.
Fields beyond lib.config.base_config():
  task          sample (a GAN that samples images or points) | pix2pix
                (paired image completion, pix2pix.py) | flow (RealNVP,
                exact likelihood, flow.py) | cycle (CycleGAN, unpaired
                translation, cycle.py).
  cycle         cycle_weight: of the cycle-consistency L1 (the paper's 10);
                identity_weight: of the identity L1, times cycle_weight
                (the paper's 0.5; 0 turns it off); num_blocks: residual
                blocks in each generator. A CycleGAN's `data` is
                lib.data.domains' source/target block (source, target,
                image_size, ...); it takes loss least_squares | minimax |
                nonsaturating | hinge, n_critic 1, steps_per_call 1, pack 1,
                no conditional or ema_decay; model.width, g_norm and d_norm
                for both generators and both discriminators; config.classifier
                for the source-only, target-only and translated classifiers
                (the first two in classifier.workdir, default
                WORKDIR/classifiers).
  flow          levels: the images' grey levels (digits 17, mnist and
                cifar10 256); alpha: the logit transform's margin;
                num_scales, hidden, num_blocks: the coupling layout and
                each coupling's CNN (a conv in, num_blocks residual blocks,
                a conv out); temperature: of the samples.
                A flow trains as a plain experiment: batch_size,
                num_steps, optimizer; eval.batch_size and grid_images.
  pix2pix       mask: which half the generator fills in (bottom_half |
                right_half); l1_weight, gan_weight: the generator's loss
                gan_weight * GAN loss + l1_weight * hidden-half L1
                (gan_weight=0: L1 only; l1_weight=0: GAN only; not both 0).
                pix2pix takes loss minimax | nonsaturating | hinge,
                n_critic 1, steps_per_call 1, no conditional or ema_decay
                (it scores the raw generator), model.width and g_norm /
                d_norm for both players, and scores the whole test split
                in batches of eval.batch_size.
  loss          minimax | nonsaturating | wgan | wgan_gp | hinge |
                least_squares (losses.py).
  spectral_norm spectrally normalize the discriminator (SNGAN: with hinge).
  n_critic      discriminator updates per generator update.
  gp_weight     WGAN-GP's penalty weight; clip_value WGAN's weight clip.
  ema_decay     EMA of the generator's weights, sampled at evaluation
                (0: the raw weights).
  conditional   class-conditional players (labelled image data only).
  pack          samples per discriminator input (PacGAN: `pack` real or
                `pack` fake samples concatenated along the channel axis;
                1 = a plain GAN); batch_size / devices must divide by it.
  steps_per_call  GAN steps per jitted call (a loop step; 50 on mixtures,
                1 on images); num_steps, log_every, eval_every and
                checkpoint_every count GAN steps and must be multiples of it.
  optimizer / d_optimizer  the generator's and the discriminator's (adam
                with b1, b2, or any lib.optim name).
  classifier    the feature network for FID/KID/IS/precision-recall: a
                small CNN (conv blocks of `classifier.channels`) trained
                first in `classifier.workdir` (default WORKDIR/classifier;
                runs on the same data may share one).
  eval          num_samples scored (mode counting or image metrics), k for
                precision/recall, grid images per picture. Stacked data
                report modes_covered (modes with any sample) and mode_kl
                (KL of the mode histogram to uniform, nats) against
                baseline/real_* (as many stacked test images).
Examples: `--config.loss=wgan_gp --config.n_critic=5`,
`--config.loss=hinge --config.spectral_norm=True` (SNGAN),
`--config.loss=wgan --config.optimizer.name=rmsprop --config.n_critic=5`.
"""

import jax
import ml_collections

from lib import config as config_lib
from lib import generative
from lib.config import require
from lib.config import require_choice
from lib.data import domains
from lib.data import images as images_lib
from projects.gan import cycle
from projects.gan import data as data_lib
from projects.gan import losses
from projects.gan import pix2pix

VARIANTS = ('quick', 'grid', 'digits', 'digits_conditional', 'mnist',
            'cifar10', 'folder', 'stacked_mnist', 'stacked_digits', 'pix2pix',
            'pix2pix_mnist', 'flow', 'flow_mnist', 'cycle',
            'cycle_mnist_usps')
TASKS = ('sample', 'pix2pix', 'flow', 'cycle')
DATASETS = (*data_lib.MIXTURES, *data_lib.IMAGE_SETS)


def _optimizer(learning_rate: float) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name='adam', learning_rate=learning_rate, b1=0.5, b2=0.999,
      schedule='constant', warmup_steps=0, momentum=0.9, weight_decay=0.0,
      grad_clip_norm=0.0, decay_rate=0.01))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('gan', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'gan'
  config.task = 'sample'
  config.data = images_lib.config('ring', std=0.02, folder='')
  config.loss = 'nonsaturating'
  config.spectral_norm = False
  config.n_critic = 1
  config.gp_weight = 10.0
  config.clip_value = 0.01
  config.ema_decay = 0.999
  config.latent_dim = 2
  config.conditional = False
  config.pack = 1
  config.steps_per_call = 50  # 1 for images, where compute dominates
  config.pix2pix = ml_collections.ConfigDict(dict(
      mask='bottom_half', l1_weight=100.0, gan_weight=1.0))
  config.cycle = ml_collections.ConfigDict(dict(
      cycle_weight=10.0, identity_weight=0.5, num_blocks=3))
  config.flow = ml_collections.ConfigDict(dict(
      levels=256, alpha=0.05, num_scales=3, hidden=32, num_blocks=1,
      temperature=0.7))
  config.model = ml_collections.ConfigDict(dict(
      hidden=(128, 128, 128),  # MLP players (mixtures)
      width=32, features=256,  # conv players: first width, D's feature size
      g_norm='batch', d_norm='none'))
  config.optimizer = _optimizer(1e-3)
  config.d_optimizer = _optimizer(1e-3)
  config.classifier = ml_collections.ConfigDict(dict(
      num_steps=600, batch_size=128, learning_rate=1e-3,
      channels=(32, 64),  # its conv blocks (lib.models.SmallCNN)
      workdir=''))  # '' = WORKDIR/classifier; a finished one is reused
  config.eval = ml_collections.ConfigDict(dict(
      num_samples=2048, batch_size=512, k=3, grid_images=64))
  config.batch_size = 256
  config.num_steps = 6000
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint_every = 2000
  config.tour.metric = 'test/modes_covered'
  config.tour.mode = 'max'
  config.tour.target = 7.0
  config.tour.baseline = 'baseline/init_modes_covered'

  if arg == 'quick':
    config.model.hidden = (64, 64, 64)
    config.batch_size = 128
    config.num_steps = 2000
    config.eval_every = 2000
    config.log_every = 500
    config.checkpoint_every = 0
    config.plots = False
  elif arg == 'grid':
    config.data.name = 'grid'
    config.data.std = 0.05
    config.num_steps = 10000
  elif arg in ('digits', 'digits_conditional', 'mnist', 'cifar10', 'folder',
               *data_lib.STACKED):
    config.data.name = arg.removesuffix('_conditional')
    config.conditional = arg == 'digits_conditional'
    config.steps_per_call = 1
    config.latent_dim = 64
    config.optimizer = _optimizer(2e-4)
    config.d_optimizer = _optimizer(2e-4)
    config.batch_size = 64
    config.num_steps = 3000
    config.eval_every = 1000
    config.checkpoint_every = 1000
    config.eval.num_samples = 5120
    config.tour.metric = 'test/inception_score_ratio'
    config.tour.target = 0.9
    config.tour.baseline = 'baseline/init_inception_score_ratio'
    if arg == 'folder':
      config.data.image_size = 64
      config.model.width = 64
    if arg in data_lib.STACKED:
      config.eval.num_samples = 26000  # PacGAN's count
      config.tour.update(dict(
          metric='test/modes_covered', target=1000.0,  # PacGAN's (of 1,000)
          baseline='baseline/init_modes_covered'))
    if arg == 'stacked_mnist':
      # A mode needs all three digits read right: two blocks read 86% of
      # MNIST's test digits after 1,000 steps, too few.
      config.classifier.update(num_steps=1000, channels=(32, 64, 128))
  elif arg in ('pix2pix', 'pix2pix_mnist'):
    config.task = 'pix2pix'
    config.data.name = 'digits' if arg == 'pix2pix' else 'mnist'
    config.data.image_size = 16 if arg == 'pix2pix' else 0
    config.steps_per_call = 1
    config.ema_decay = 0.0
    config.optimizer = _optimizer(2e-4)  # pix2pix's Adam
    config.d_optimizer = _optimizer(2e-4)
    config.update(dict(batch_size=64, num_steps=2000, log_every=100,
                       eval_every=1000, checkpoint_every=1000))
    config.tour.update(dict(
        metric='test/hidden_l1', mode='min',
        target=0.1,  # the mean image's: 0.16 on the digits
        baseline='baseline/mean_fill_hidden_l1'))
  elif arg in ('flow', 'flow_mnist'):
    digits = arg == 'flow'
    config.task = 'flow'
    config.steps_per_call = 1
    config.data.name = 'digits' if digits else 'mnist'
    config.flow.levels = 17 if digits else 256
    config.optimizer = _optimizer(1e-3)
    config.optimizer.update(b1=0.9, schedule='cosine', warmup_steps=100,
                            grad_clip_norm=100.0)
    # The digits' 1,438 training images overfit after about 1,000 steps.
    config.update(dict(batch_size=64, num_steps=1000 if digits else 4000,
                       log_every=100, eval_every=250 if digits else 1000,
                       checkpoint_every=1000))
    config.tour.update(dict(
        metric='test/bits_per_dim', mode='min',
        # Digits: 2.01 after 1,000 steps; MNIST: 1.58 after 4,000, below
        # independent pixels' 1.69.
        target=2.1 if digits else 1.6,
        baseline='baseline/pixel_histogram_bits_per_dim'))
  elif arg in ('cycle', 'cycle_mnist_usps'):
    digits = arg == 'cycle'
    config.task = 'cycle'
    config.data = domains.config(*(('digits', 'digits_m') if digits else
                                   ('mnist', 'usps')))
    if not digits:  # as domain_adaptation's mnist_usps
      config.data.update(max_train_examples=10000, max_test_examples=2000)
    config.loss = 'least_squares'
    config.steps_per_call = 1
    config.ema_decay = 0.0
    config.model.update(width=16 if digits else 32, g_norm='instance',
                        d_norm='instance')
    config.cycle.num_blocks = 2 if digits else 3
    config.optimizer = _optimizer(2e-4)  # the paper's Adam
    config.d_optimizer = _optimizer(2e-4)
    config.classifier.num_steps = 300 if digits else 1000
    config.update(dict(batch_size=32, num_steps=400 if digits else 4000,
                       log_every=50 if digits else 100,
                       eval_every=200 if digits else 1000,
                       checkpoint_every=400 if digits else 1000))
    config.tour.update(dict(
        metric='test/translated_accuracy', mode='max',
        target=0.3 if digits else 0.95,
        baseline='baseline/source_only_accuracy'))
  return config


def validate(config: ml_collections.ConfigDict):
  """ConfigError naming the first unusable field of the GAN config."""
  config_lib.validate(config)
  require_choice(config.task, 'task', TASKS)
  if config.task == 'cycle':
    domains.validate(config.data)  # a source/target pair
  else:
    validate_data(config)
  require_choice(config.loss, 'loss', losses.LOSSES)
  require_choice(config.model.g_norm, 'model.g_norm', generative.NORMS)
  require_choice(config.model.d_norm, 'model.d_norm', generative.NORMS)
  for name in ('n_critic', 'latent_dim', 'steps_per_call', 'pack'):
    require(isinstance(config[name], int) and config[name] > 0,
            f'config.{name}={config[name]!r} must be a positive integer')
  for group, names in (('model', ('width', 'features')),
                       ('classifier', ('num_steps', 'batch_size')),
                       ('eval', ('num_samples', 'batch_size', 'k',
                                 'grid_images'))):
    for name in names:
      value = config[group][name]
      require(isinstance(value, int) and value > 0,
              f'config.{group}.{name}={value!r} must be a positive integer')
  for name, widths in (('model.hidden', config.model.hidden),
                       ('classifier.channels', config.classifier.channels)):
    require(len(widths) > 0 and
            all(isinstance(w, int) and w > 0 for w in widths),
            f'config.{name}={widths!r} must be positive integers')
  require(0.0 <= config.ema_decay < 1.0,
          f'config.ema_decay={config.ema_decay} must lie in [0, 1)')
  require(config.gp_weight >= 0, f'config.gp_weight={config.gp_weight} must '
          'be >= 0')
  require(config.clip_value > 0, f'config.clip_value={config.clip_value} '
          'must be > 0')
  require(not (config.loss == 'wgan_gp' and config.model.d_norm == 'batch'),
          "config.loss='wgan_gp' penalizes per-example gradients: use "
          "config.model.d_norm='none' or 'layer', not 'batch'")
  for name in ('optimizer', 'd_optimizer'):
    require(config[name].learning_rate > 0,
            f'config.{name}.learning_rate must be > 0')
  for name in ('num_steps', 'log_every', 'eval_every', 'checkpoint_every'):
    require(config[name] % config.steps_per_call == 0,
            f'config.{name}={config[name]} must be a multiple of '
            f'config.steps_per_call={config.steps_per_call}')
  if config.task == 'pix2pix':
    validate_pix2pix(config)
  if config.task == 'flow':
    validate_flow(config)
  if config.task == 'cycle':
    validate_cycle(config)
  num_devices = config.num_devices or jax.device_count()
  for name, value in (('batch_size', config.batch_size),
                      ('eval.batch_size', config.eval.batch_size)):
    require(value % num_devices == 0, f'config.{name}={value} must be a '
            f'multiple of the number of devices ({num_devices})')
  require(config.batch_size % (config.pack * num_devices) == 0,
          f'config.batch_size={config.batch_size} must be a multiple of '
          f'config.pack={config.pack} times the number of devices '
          f'({num_devices}), so that each device packs whole packs')


def validate_data(config: ml_collections.ConfigDict):
  """The data of the tasks that read one data set (config.data.name)."""
  require_choice(config.data.name, 'data.name', DATASETS)
  require(config.data.name not in data_lib.MIXTURES or config.data.std > 0,
          f'config.data.std={config.data.std} must be > 0')
  require(config.data.name != 'folder' or config.data.image_size > 0,
          'config.data.image_size must be > 0 for data.name=folder')
  require(not config.conditional or config.data.name not in (
      *data_lib.MIXTURES, 'folder', *data_lib.STACKED),
          'config.conditional=True needs labelled images (digits, mnist, '
          f'cifar10, tfds), not data.name={config.data.name!r}')
  require(config.pack == 1 or not config.conditional,
          f'config.pack={config.pack} packs unlabelled samples: it takes '
          'config.conditional=False')
  require(config.data.name not in data_lib.STACKED or config.task == 'sample',
          f'config.data.name={config.data.name!r} is scored by its modes: it '
          f"takes config.task='sample', not {config.task!r}")


def validate_pix2pix(config: ml_collections.ConfigDict):
  p = config.pix2pix
  require_choice(p.mask, 'pix2pix.mask', pix2pix.MASKS)
  for name in ('l1_weight', 'gan_weight'):
    require(p[name] >= 0, f'config.pix2pix.{name}={p[name]} must be >= 0')
  require(p.l1_weight > 0 or p.gan_weight > 0,
          'config.pix2pix.l1_weight and config.pix2pix.gan_weight are both 0: '
          'the generator would learn nothing; set either or both > 0')
  require(config.data.name not in (*data_lib.MIXTURES, 'folder'),
          "config.task='pix2pix' completes labelled images (digits, mnist, "
          f'cifar10, tfds), not data.name={config.data.name!r}')
  require_choice(config.loss, 'loss (pix2pix)', pix2pix.LOSSES)
  _require_one_step_players(config)


def _require_one_step_players(config: ml_collections.ConfigDict):
  """pix2pix and CycleGAN: one update of each player a step, raw weights."""
  for name, value in (('n_critic', 1), ('steps_per_call', 1),
                      ('conditional', False), ('ema_decay', 0.0), ('pack', 1)):
    require(config[name] == value, f'config.task={config.task!r} takes '
            f'config.{name}={value!r}, not {config[name]!r}')


def validate_cycle(config: ml_collections.ConfigDict):
  c = config.cycle
  for name in ('cycle_weight', 'identity_weight'):
    require(c[name] >= 0, f'config.cycle.{name}={c[name]} must be >= 0')
  require(isinstance(c.num_blocks, int) and c.num_blocks >= 0,
          f'config.cycle.num_blocks={c.num_blocks!r} must be an integer >= 0')
  require_choice(config.loss, 'loss (cycle)', cycle.LOSSES)
  _require_one_step_players(config)


def validate_flow(config: ml_collections.ConfigDict):
  f = config.flow
  require(config.data.name not in (*data_lib.MIXTURES, 'folder'),
          "config.task='flow' scores images of a data set with a test split "
          f'(digits, mnist, cifar10, tfds), not data.name={config.data.name!r}')
  for name, least in (('levels', 2), ('num_scales', 1), ('hidden', 1),
                      ('num_blocks', 0)):
    require(isinstance(f[name], int) and f[name] >= least,
            f'config.flow.{name}={f[name]!r} must be an integer >= {least}')
  require(0.0 < f.alpha < 0.5, f'config.flow.alpha={f.alpha} must lie in '
          '(0, 0.5)')
  require(f.temperature > 0, f'config.flow.temperature={f.temperature} must '
          'be > 0')
  require(config.steps_per_call == 1, "config.task='flow' takes "
          f'config.steps_per_call=1, not {config.steps_per_call}')
