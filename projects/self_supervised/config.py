"""Configs for self-supervised image representations (SimCLR, MoCo v2, BYOL,
SimSiam, VICReg) evaluated on frozen features.

Variants (`--config=projects/self_supervised/config.py:VARIANT`):
  (none)   scikit-learn's 8x8 digits (offline), every method, 1,500 steps
           each, fine-tuning on 1% and 10% of the labels against scratch.
  quick    the tour: SimCLR on digits, 200 steps of 64 images. Raw digit pixels are
           already good features, so the row is made to need learning: the
           linear probe is trained on 2 labels per class (20 images) and
           scored on the 360 test digits, against the probe of the same
           backbone at its random initialization, measured in the same run.
           A collapsed backbone's features are one point (chance, 0.1); an
           untrained one's scored about 0.5 here (see the README).
  cifar10  CIFAR-10 (data.cifar10_dir), every method at one budget: a ResNet
           with stages (1, 1, 1) of width 32 on 10,000 training images.
  mnist    MNIST (data.mnist_dir), 10,000 training images, SmallCNN.
Each method of config.methods trains in WORKDIR/<method>; the random
backbone's probe is the baseline 'random/...'.
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from lib.config import require_choice
from lib.data import augment as augment_lib
from lib.data import images
from projects.self_supervised import methods as methods_lib

VARIANTS = ('quick', 'cifar10', 'mnist')
SCHEDULES = ('constant', 'cosine')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('self_supervised', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'self_supervised'
  config.methods = methods_lib.METHODS
  config.data = images.config('digits', val_fraction=0.1)
  config.model = config_lib.image_model_config('small_cnn')
  config.model.channels = (32, 64)
  config.head = ml_collections.ConfigDict(dict(
      dim=64,  # projector (and predictor) output
      hidden=256, projector_layers=1,  # hidden layers of `hidden` units
      predictor_hidden=128))
  # Digits are not mirror-symmetric and are grey: crop and jitter only.
  config.augment = augment_lib.views_config(
      crop_scale=(0.4, 1.0), flip=False, jitter_strength=0.5,
      greyscale_probability=0.0)
  config.simclr = ml_collections.ConfigDict(dict(temperature=0.2))
  config.moco = ml_collections.ConfigDict(dict(
      temperature=0.2, queue_size=1024, momentum=0.99,
      momentum_schedule='constant'))
  config.byol = ml_collections.ConfigDict(dict(
      momentum=0.99, momentum_schedule='cosine'))  # BYOL's tau -> 1
  config.vicreg = ml_collections.ConfigDict(dict(
      invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0))
  config.eval = ml_collections.ConfigDict(dict(
      labels_per_class=0,  # labels the probe and k-NN see; 0 = all
      knn_k=200, knn_temperature=0.1,
      probe_steps=500, probe_learning_rate=0.01, probe_weight_decay=1e-4))
  # Each fraction of the labels: fine-tune every method's backbone and train
  # the same network from scratch.
  config.finetune = ml_collections.ConfigDict(dict(
      fractions=(0.01, 0.1), num_steps=300, learning_rate=1e-3,
      batch_size=64, crop_padding=1))
  # sweep.py: SimCLR's accuracy against each strength knob (one run each).
  config.sweep = ml_collections.ConfigDict(dict(
      method='simclr', crop_min_scales=(0.08, 0.2, 0.4, 0.7, 1.0),
      jitter_strengths=(0.0, 0.25, 0.5, 1.0)))
  config.batch_size = 128
  config.num_steps = 1500
  config.log_every = 50
  config.eval_every = 500
  config.checkpoint_every = 0
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 50
  config.tour.metric = 'simclr/probe/accuracy'
  config.tour.mode = 'max'
  config.tour.target = 0.7
  config.tour.baseline = 'random/probe/accuracy'

  if arg == 'quick':
    config.methods = ('simclr',)
    config.model.channels = (16, 32)
    config.batch_size = 64
    config.num_steps = 200
    config.eval_every = 200
    config.eval.labels_per_class = 2
    config.finetune.fractions = ()
    config.plots = False
  elif arg == 'cifar10':
    config.data = images.config('cifar10', val_fraction=0.05,
                                max_train_examples=10000,
                                max_test_examples=5000)
    config.model = config_lib.image_model_config('resnet')
    config.model.stage_sizes = (1, 1, 1)
    config.model.width = 32
    config.head.update(dim=128, hidden=512, predictor_hidden=256)
    config.augment = augment_lib.views_config()  # SimCLR's CIFAR-10 recipe
    config.moco.queue_size = 4096
    config.batch_size = 128
    config.num_steps = 600
    config.eval_every = 300
    config.finetune.update(num_steps=300, batch_size=64, crop_padding=4)
    config.sweep.crop_min_scales = (0.08, 0.2, 0.5, 1.0)
  elif arg == 'mnist':
    config.data = images.config('mnist', val_fraction=0.05,
                                max_train_examples=10000,
                                max_test_examples=5000)
    config.num_steps = 800
    config.finetune.crop_padding = 2
  return config


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first unusable field."""
  config_lib.validate(config)
  config_lib.require_distinct_choices(config.methods, 'methods',
                                      methods_lib.METHODS)
  augment_lib.validate_views(config.augment)
  require(config.model.name in ('small_cnn', 'resnet'),
          f"config.model.name={config.model.name!r}: choose 'small_cnn' or "
          "'resnet'")
  head = config.head
  for name in ('dim', 'hidden', 'projector_layers', 'predictor_hidden'):
    require(isinstance(head[name], int) and head[name] > 0,
            f'config.head.{name}={head[name]!r} must be a positive integer')
  for name in ('simclr', 'moco'):
    require(config[name].temperature > 0,
            f'config.{name}.temperature={config[name].temperature} must be '
            '> 0')
  for name in ('moco', 'byol'):
    momentum = config[name].momentum
    require(0 <= momentum < 1,
            f'config.{name}.momentum={momentum} must lie in [0, 1)')
    require_choice(config[name].momentum_schedule,
                   f'{name}.momentum_schedule', SCHEDULES)
  queue = config.moco.queue_size
  require(isinstance(queue, int) and queue > 0 and
          queue % (2 * config.batch_size) == 0,
          f'config.moco.queue_size={queue!r} must be a positive multiple of '
          f'2 * batch_size = {2 * config.batch_size} (both views enqueue)')
  for name, value in config.vicreg.items():
    require(value >= 0, f'config.vicreg.{name}={value} must be >= 0')
  e = config.eval
  for name in ('knn_k', 'probe_steps'):
    require(isinstance(e[name], int) and e[name] > 0,
            f'config.eval.{name}={e[name]!r} must be a positive integer')
  require(isinstance(e.labels_per_class, int) and e.labels_per_class >= 0,
          f'config.eval.labels_per_class={e.labels_per_class!r} must be an '
          'integer >= 0 (0 = all labels)')
  for name in ('knn_temperature', 'probe_learning_rate'):
    require(e[name] > 0, f'config.eval.{name}={e[name]} must be > 0')
  f = config.finetune
  require(all(0 < x <= 1 for x in f.fractions),
          f'config.finetune.fractions={tuple(f.fractions)!r} must lie in '
          '(0, 1]')
  for name in ('num_steps', 'batch_size'):
    require(isinstance(f[name], int) and f[name] > 0,
            f'config.finetune.{name}={f[name]!r} must be a positive integer')
  require(f.learning_rate > 0,
          f'config.finetune.learning_rate={f.learning_rate} must be > 0')
  require_choice(config.sweep.method, 'sweep.method', methods_lib.METHODS)
