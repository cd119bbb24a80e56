"""Configs for HW10: adversarial attacks and defences on image classifiers.

Variants (`--config=projects/adversarial/config.py:VARIANT`):
  (none)    scikit-learn's embedded 8x8 digits (offline): two proxies, three
            unseen victims, every attack, the passive defences.
  quick     the same with one small proxy and one victim, a few seconds (the
            tour): white-box PGD accuracy of the proxy.
  cifar10   the course's setting: CIFAR-10 from `data.cifar10_dir` at an 8/255
            budget; small proxies and victims sized for 2 CPU cores.
  cifar10_at  adversarial training on CIFAR-10 (`mode='adversarial_training'`).
  mnist     MNIST IDX files from `data.mnist_dir`, epsilon 0.2 (as in the
            adversarial training literature).
  tfds      any TFDS image classification set by name (`data.tfds_name`).

`mode`:
  attack                trains (or reuses) the classifiers named in `proxies`
                        and `victims` (`name:seed`, name one of small_cnn,
                        resnet, separable; architecture fields in
                        `architectures.<name>`) under WORKDIR/models, attacks
                        `attack.num_examples` test images against the proxies'
                        logit ensemble (and, with `attack.from_single_proxy`,
                        against the first proxy alone), and reports clean,
                        white-box (the proxies) and black-box (the unseen
                        victims) accuracy, a universal perturbation, and the
                        passive defences in front of the victims.
  adversarial_training  trains `adversarial_training.model` normally and with
                        each of `adversarial_training.methods` (pgd: PGD-AT,
                        fgsm: fast FGSM-AT) and reports clean and white-box
                        PGD/FGSM accuracy of each.
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from lib import image_classifier
from lib.errors import ConfigError
from projects.adversarial import attacks
from projects.adversarial import defences

VARIANTS = ('quick', 'cifar10', 'cifar10_at', 'mnist', 'tfds')
MODES = ('attack', 'adversarial_training')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('adversarial', arg, VARIANTS)
  config = image_classifier.config('digits', 'small_cnn')
  config.project = 'adversarial'
  config.mode = 'attack'  # attack | adversarial_training
  config.proxies = 'small_cnn:0,resnet:0'  # the attacker's surrogates
  config.victims = 'small_cnn:1,resnet:1,separable:1'  # unseen, black-box
  config.architectures = ml_collections.ConfigDict({
      name: config_lib.image_model_config(name)
      for name in ('small_cnn', 'resnet', 'separable')})
  config.architectures.resnet.update(stage_sizes=(1, 1, 1), width=16)
  config.architectures.separable.update(channels=(32, 64, 64),
                                        strides=(1, 2, 1), stem_channels=16)
  config.attack = ml_collections.ConfigDict(dict(
      names='fgsm,ifgsm,mifgsm,dim_mifgsm',  # of attacks.ATTACKS, comma-separated
      epsilon=0.1,  # L-inf budget in [0, 1] pixel units
      step_size=0.02,  # of the iterative attacks
      num_steps=10,
      momentum=1.0,  # MI-FGSM's decay
      diversity_prob=0.5,  # DIM: probability of resize-and-pad per step
      diversity_min_scale=0.8,
      targeted=False,  # True: target class (label + 1) mod num_classes
      from_single_proxy=True,  # also attack from the first proxy alone
      num_examples=359,  # test images attacked (0: all)
      batch_size=128,
      pgd_eval_steps=20,  # white-box PGD (random start) for robust accuracy
      num_plotted=8,  # examples in adversarial_examples.png
  ))
  config.universal = ml_collections.ConfigDict(dict(
      enabled=True, num_steps=200, step_size=0.005, batch_size=64,
      num_examples=1000))  # training images it is fitted on (0: all)
  config.defence = ml_collections.ConfigDict(dict(
      names='jpeg,gaussian,median,resize_pad',  # of defences.DEFENCES ('' none)
      attack='',  # whose examples the defences face ('' = last of attack.names)
      jpeg_quality=75, gaussian_sigma=0.7, median_size=3,
      resize_min_scale=0.8))
  config.adversarial_training = ml_collections.ConfigDict(dict(
      methods='pgd,fgsm',  # pgd (PGD-AT) | fgsm (fast FGSM-AT), comma-separated
      model='small_cnn',  # of architectures
      epsilon=0.1, step_size=0.025, num_steps=5))  # PGD-AT's attack
  config.augment.crop_padding = 1
  config.batch_size = 64
  config.num_steps = 400
  config.eval_every = 200
  config.checkpoint_every = 0
  # White-box PGD (attack.pgd_eval_steps, random start) against the proxies.
  config.tour.metric = 'whitebox/pgd_accuracy'
  config.tour.mode = 'min'
  config.tour.target = 0.2
  config.tour.baseline = 'clean/surrogate_accuracy'

  if arg == 'quick':
    config.proxies = 'small_cnn:0'
    config.victims = 'small_cnn:1'
    config.architectures.small_cnn.channels = (16, 32)
    config.attack.names = 'fgsm,ifgsm,mifgsm'
    config.attack.from_single_proxy = False
    config.attack.pgd_eval_steps = 10
    config.universal.num_steps = 50
    config.defence.names = 'jpeg,resize_pad'
    config.num_steps = 200
    config.eval_every = 200
  elif arg in ('cifar10', 'cifar10_at'):
    # Sized for 2 shared CPU cores (a few minutes per model); on a GPU raise
    # num_steps, max_train_examples and the architectures' widths.
    config.data.name = 'cifar10'
    config.data.max_train_examples = 20000
    config.augment.update(crop_padding=4, flip=True)
    config.attack.update(epsilon=8 / 255, step_size=2 / 255, num_steps=10,
                         num_examples=500)
    config.victims = 'small_cnn:1,resnet:1'
    config.universal.update(num_steps=150, step_size=1 / 255,
                            num_examples=5000)
    config.defence.jpeg_quality = 60
    config.defence.gaussian_sigma = 0.5
    config.batch_size = 64
    config.num_steps = 400
    config.eval_every = 200
    config.checkpoint_every = 200
    config.optimizer.update(learning_rate=3e-3, schedule='cosine',
                            warmup_steps=50)
    config.architectures.small_cnn.channels = (16, 32, 64)
    config.adversarial_training.update(epsilon=8 / 255, step_size=3 / 255,
                                       num_steps=3)
    config.tour.target = 0.05
    if arg == 'cifar10_at':
      config.mode = 'adversarial_training'
      config.tour.metric = 'pgd_at/pgd_accuracy'
      config.tour.mode = 'max'
      config.tour.target = 0.2
      config.tour.baseline = 'standard/pgd_accuracy'
  elif arg == 'mnist':
    config.data.name = 'mnist'
    config.augment.crop_padding = 2
    config.attack.update(epsilon=0.2, step_size=0.04, num_examples=1000)
    config.adversarial_training.update(epsilon=0.2, step_size=0.05)
    config.batch_size = 128
    config.num_steps = 2000
    config.eval_every = 500
    config.checkpoint_every = 500
  elif arg == 'tfds':
    config.data.name = 'tfds'
    config.data.tfds_name = 'cifar10'
    config.augment.update(crop_padding=4, flip=True)
    config.attack.update(epsilon=8 / 255, step_size=2 / 255, num_examples=1000)
    config.adversarial_training.update(epsilon=8 / 255, step_size=2 / 255)
    config.batch_size = 128
    config.num_steps = 5000
    config.eval_every = 1000
    config.checkpoint_every = 1000
  return config


def names(value: str) -> list[str]:
  """'fgsm, ifgsm' -> ['fgsm', 'ifgsm']."""
  return [n.strip() for n in value.split(',') if n.strip()]


def model_specs(config: ml_collections.ConfigDict,
                field: str) -> list[tuple[str, int]]:
  """config.<field>='resnet:0,small_cnn:1' -> [('resnet', 0), ('small_cnn', 1)]."""
  specs = []
  for item in names(config[field]):
    name, _, seed = item.partition(':')
    require(name in config.architectures and seed.isdigit(),
            f'config.{field}={config[field]!r}: each entry must be name:seed '
            f'with name one of {sorted(config.architectures)} and seed an '
            f'integer >= 0, got {item!r}')
    specs.append((name, int(seed)))
  return specs


def _require_positive_ints(section: ml_collections.ConfigDict, path: str,
                           fields: tuple[str, ...]):
  for name in fields:
    value = section[name]
    require(isinstance(value, int) and value > 0,
            f'config.{path}.{name}={value!r} must be a positive integer')


def _require_known(field: str, value: str, known: tuple[str, ...]):
  for name in names(value):
    require(name in known, f'config.{field}: {name!r} is not one of {known}')


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first of this project's fields that is unusable."""
  require(config.mode in MODES,
          f'config.mode={config.mode!r}: choose one of {MODES}')
  settings = config.attack
  require(0.0 <= settings.epsilon <= 1.0,
          f'config.attack.epsilon={settings.epsilon} must be in [0, 1] '
          '(pixels are in [0, 1])')
  _require_positive_ints(settings, 'attack',
                         ('num_steps', 'batch_size', 'pgd_eval_steps'))
  require(settings.step_size > 0,
          f'config.attack.step_size={settings.step_size} must be > 0')
  require(0.0 <= settings.diversity_prob <= 1.0,
          f'config.attack.diversity_prob={settings.diversity_prob} must be '
          'in [0, 1]')
  require(0.0 < settings.diversity_min_scale <= 1.0,
          'config.attack.diversity_min_scale='
          f'{settings.diversity_min_scale} must be in (0, 1]')
  require(settings.num_examples >= 0,
          f'config.attack.num_examples={settings.num_examples} must be >= 0')
  _require_known('attack.names', settings.names, attacks.ATTACKS)
  defence = config.defence
  _require_known('defence.names', defence.names, defences.DEFENCES)
  require(not defence.attack or defence.attack in names(settings.names),
          f'config.defence.attack={defence.attack!r} must be one of '
          f'config.attack.names={settings.names!r}')
  require(1 <= defence.jpeg_quality <= 100,
          f'config.defence.jpeg_quality={defence.jpeg_quality} must be in '
          '[1, 100]')
  require(defence.median_size >= 1 and defence.median_size % 2 == 1,
          f'config.defence.median_size={defence.median_size} must be odd '
          'and >= 1')
  require(defence.gaussian_sigma > 0,
          f'config.defence.gaussian_sigma={defence.gaussian_sigma} must be '
          '> 0')
  training = config.adversarial_training
  _require_known('adversarial_training.methods', training.methods,
                 defences.ADVERSARIAL_TRAINING)
  require(training.model in config.architectures,
          f'config.adversarial_training.model={training.model!r}: choose '
          f'one of {sorted(config.architectures)}')
  _require_positive_ints(training, 'adversarial_training', ('num_steps',))
  proxies = model_specs(config, 'proxies')
  victims = model_specs(config, 'victims')
  if config.mode == 'attack':
    require(proxies and victims, 'config.proxies and config.victims must '
            'each name at least one model (name:seed)')
    shared = sorted(set(proxies) & set(victims))
    require(not shared, f'config.victims shares {shared} with '
            'config.proxies: a victim must be unseen by the attacker')
  _require_positive_ints(config.universal, 'universal',
                         ('num_steps', 'batch_size'))
