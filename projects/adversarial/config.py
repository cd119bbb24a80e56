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
  robustness  digits (offline): softmax regression, a maxout network and a
            small CNN, each attacked directly (`mode='robustness'`).
  goodfellow  Goodfellow et al. (2015)'s MNIST reproduction: FGSM at 0.25
            against softmax regression and a maxout network.
  backdoor  digits (offline): a BadNets backdoor (`mode='backdoor'`).
  backdoor_mnist  the same on MNIST.
  reprogram  digits (offline): adversarial reprogramming to count squares
            (`mode='reprogram'`).
  reprogram_mnist  the same with an MNIST classifier.
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
  robustness            trains the models named in `models` normally and
                        attacks each directly: FGSM and PGD (white box), the
                        one-pixel attack (black box, `one_pixel`), and the
                        randomization defence (random resize-and-pad) against
                        an attacker who ignores it and one who takes the
                        expectation over it (`robustness`).
  backdoor              trains `backdoor.model` on clean data and on data where
                        `backdoor.poison_fraction` of the training images carry
                        a trigger and the label `backdoor.target_class`; reports
                        each one's clean accuracy and attack success rate.
  reprogram             trains `reprogram.model` on the data, then an
                        adversarial program (a frame around a small image) that
                        makes it count 1 to `reprogram.num_classes` squares,
                        and the same for the network untrained.
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from lib import image_classifier
from lib.errors import ConfigError
from projects.adversarial import attacks
from projects.adversarial import defences

VARIANTS = ('quick', 'cifar10', 'cifar10_at', 'mnist', 'tfds', 'robustness',
            'goodfellow', 'backdoor', 'backdoor_mnist', 'reprogram',
            'reprogram_mnist')
MODES = ('attack', 'adversarial_training', 'robustness', 'backdoor',
         'reprogram')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('adversarial', arg, VARIANTS)
  config = image_classifier.config('digits', 'small_cnn')
  config.project = 'adversarial'
  config.mode = 'attack'  # of MODES
  config.proxies = 'small_cnn:0,resnet:0'  # the attacker's surrogates
  config.victims = 'small_cnn:1,resnet:1,separable:1'  # unseen, black-box
  config.models = 'linear:0,maxout:0,small_cnn:0'  # robustness mode
  config.architectures = ml_collections.ConfigDict({
      name: config_lib.image_model_config(name)
      for name in ('small_cnn', 'resnet', 'separable', 'maxout')})
  # Softmax regression, and Goodfellow et al. (2013)'s maxout network.
  config.architectures.linear = config_lib.image_model_config('mlp')
  config.architectures.linear.hidden = ()
  config.architectures.maxout.update(dropout=0.5, input_dropout=0.2)
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
      eot_samples=8,  # eot_pgd: random resize-and-pads averaged per step
      pgd_restarts=1,  # robust accuracy: random starts an image must resist
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
  config.robustness = ml_collections.ConfigDict(dict(
      one_pixel=False,  # the one-pixel attack on each model
      randomization=False))  # random resize-and-pad vs an unaware and an EOT PGD
  config.one_pixel = ml_collections.ConfigDict(dict(
      population=100, generations=30,  # differential evolution
      scale=0.5,  # its mutation factor F
      num_examples=200))  # test images attacked (its cost; 0: all attacked)
  config.backdoor = ml_collections.ConfigDict(dict(
      model='small_cnn',  # of architectures
      target_class=0,
      poison_fraction=0.05,  # of the training images, from the other classes
      trigger_size=3))  # a checkerboard in the bottom-right corner
  config.reprogram = ml_collections.ConfigDict(dict(
      model='small_cnn',  # the frozen model, of architectures
      grid=4,  # cells a side of the counting task, in the frame's centre half
      num_classes=10,  # 1 to num_classes squares; outputs 0.. are read
      num_train=5000, num_test=1000,  # generated images (val and test each)
      num_steps=600, learning_rate=0.05,  # Adam on the program alone
      weight_decay=1e-4))  # L2 on the program's weights
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
  elif arg in ('robustness', 'goodfellow'):
    config.mode = 'robustness'
    config.robustness.update(one_pixel=True, randomization=True)
    config.augment.crop_padding = 0
    config.attack.num_examples = 0
    config.defence.resize_min_scale = 0.9  # 8x8 digits lose much below it
    if arg == 'goodfellow':
      _mnist_run(config, num_steps=6000)
      config.models = 'linear:0,maxout:0'
      config.attack.update(epsilon=0.25, step_size=0.05, batch_size=500)
      # At 0.25 the PGD made without the defence already defeats it.
      config.robustness.randomization = False
  elif arg in ('backdoor', 'backdoor_mnist', 'reprogram', 'reprogram_mnist'):
    config.mode = arg.removesuffix('_mnist')
    config.augment.crop_padding = 0
    if arg.endswith('_mnist'):
      _mnist_run(config, num_steps=2000)
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


def _mnist_run(config: ml_collections.ConfigDict, num_steps: int):
  config.data.name = 'mnist'
  config.update(batch_size=128, num_steps=num_steps, eval_every=1000,
                checkpoint_every=1000)


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
  _require_positive_ints(settings, 'attack', ('eot_samples', 'pgd_restarts'))
  pixel = config.one_pixel
  _require_positive_ints(pixel, 'one_pixel', ('generations',))
  require(isinstance(pixel.population, int) and pixel.population >= 4,
          f'config.one_pixel.population={pixel.population!r} must be an '
          'integer >= 4 (each child needs three other candidates)')
  require(pixel.scale > 0,
          f'config.one_pixel.scale={pixel.scale} must be > 0')
  require(pixel.num_examples >= 0,
          f'config.one_pixel.num_examples={pixel.num_examples} must be >= 0')
  if config.mode == 'robustness':
    require(model_specs(config, 'models'),
            'config.models must name at least one model (name:seed)')
  program = config.reprogram
  require(program.model in config.architectures,
          f'config.reprogram.model={program.model!r}: choose one of '
          f'{sorted(config.architectures)}')
  _require_positive_ints(program, 'reprogram', (
      'grid', 'num_train', 'num_test', 'num_steps'))
  require(isinstance(program.num_classes, int) and program.num_classes >= 2,
          f'config.reprogram.num_classes={program.num_classes!r} must be an '
          'integer >= 2')
  require(program.learning_rate > 0 and program.weight_decay >= 0,
          'config.reprogram.learning_rate must be > 0 and weight_decay >= 0')
  backdoor = config.backdoor
  require(backdoor.model in config.architectures,
          f'config.backdoor.model={backdoor.model!r}: choose one of '
          f'{sorted(config.architectures)}')
  require(0.0 < backdoor.poison_fraction < 1.0,
          f'config.backdoor.poison_fraction={backdoor.poison_fraction} must '
          'be in (0, 1)')
  _require_positive_ints(backdoor, 'backdoor', ('trigger_size',))
  require(isinstance(backdoor.target_class, int) and
          backdoor.target_class >= 0,
          f'config.backdoor.target_class={backdoor.target_class!r} must be '
          'a class index >= 0')
