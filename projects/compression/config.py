"""Configs for HW13: network compression (distillation, pruning, quantization).

Variants (`--config=projects/compression/config.py:VARIANT`):
  (none)    scikit-learn's embedded 8x8 digits (offline), every method.
  quick     the same with short runs, a few seconds a model (the tour):
            teacher (every label), student alone (100 labels) and distilled
            student (the same labels and the teacher on every image).
  cifar10   CIFAR-10 from `data.cifar10_dir` (the JPEG copies), a ResNet
            teacher and a < 100k-parameter separable student, sized for a
            few minutes a model on 2 CPU cores; raise the steps (and make the
            teacher ResNet-18: teacher.model.stage_sizes=(2, 2, 2, 2),
            width=64, stem='imagenet' for the homework's 11.2M) on a GPU.
  mnist     MNIST IDX files from `data.mnist_dir`.
  tfds      any TFDS image classification set by name (`data.tfds_name`).

`method`: baseline | distill | prune | lottery | quantize | cluster | early_exit |
slimmable | binary | fitnets | all
(see train.py). `model` is the student, `teacher.model` the teacher.
`validate(config)` checks every field before anything loads or trains.
"""

import ml_collections

from lib import config as config_lib
from lib import image_classifier
from lib.errors import ConfigError

VARIANTS = ('quick', 'cifar10', 'mnist', 'tfds')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('compression', arg, VARIANTS)
  config = image_classifier.config('digits', 'separable')
  config.project = 'compression'
  config.method = 'all'
  config.max_params = 100_000  # the homework's budget for the student
  # The student: lib's SeparableCNN; rank > 0 factorizes each pointwise conv.
  config.model.update(channels=(32, 64, 64), strides=(1, 2, 1),
                      stem_channels=16)
  config.model.rank = 0
  config.teacher = ml_collections.ConfigDict(dict(
      model=config_lib.image_model_config('resnet'), num_steps=600))
  config.teacher.model.update(stage_sizes=(2, 2, 2), width=32)
  config.distill = ml_collections.ConfigDict(dict(temperature=4.0, alpha=0.9))
  # Labels the students may use: a random subset of this many training
  # examples (0: every label). The student alone trains on those; the
  # distilled student also learns the teacher's outputs on every training
  # image (an unlabelled transfer set); the teacher sees every label.
  config.student_labels = 0
  # What prune / quantize / cluster start from: distilled | student.
  config.compress_from = 'distilled'
  config.prune = ml_collections.ConfigDict(dict(
      sparsities=(0.5, 0.8, 0.9),  # magnitude pruning targets, in turn
      scope='global',  # global | layer
      rounds=3,  # pruning + fine-tuning rounds per target
      finetune_steps=100,  # per round
      learning_rate=3e-4,
      structured_fractions=(0.5,)))  # of the filters removed (L1 norm)
  # The lottery ticket: the trained student's magnitude masks, retrained.
  config.lottery = ml_collections.ConfigDict(dict(sparsities=(0.8, 0.9)))
  config.quantize = ml_collections.ConfigDict(dict(bits=(8, 4, 2),
                                                   per_channel=True))
  config.cluster = ml_collections.ConfigDict(dict(bits=(4, 2),
                                                  num_iterations=30))
  config.early_exit = ml_collections.ConfigDict(dict(
      channels=(32, 64, 64, 128), strides=(1, 2, 1, 2), exits=(1,),
      stem_channels=16, num_steps=600,
      thresholds=(0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.01)))
  # One slimmable student at these width multipliers (each <= 1).
  config.slimmable = ml_collections.ConfigDict(dict(
      widths=(0.25, 0.5, 0.75, 1.0)))
  # FitNets: the teacher's module whose output is the hint, the student's
  # (the guided layer) regressed onto it; the same resolution.
  config.fitnets = ml_collections.ConfigDict(dict(
      hint_layer='ResidualBlock_3', guided_layer='SeparableBlock_1',
      hint_steps=200))
  config.augment.crop_padding = 1
  config.batch_size = 64
  config.num_steps = 600  # the student's
  config.eval_every = 200
  config.checkpoint_every = 0
  config.tour.metric = 'distilled/test_accuracy'
  config.tour.mode = 'max'
  config.tour.target = 0.9
  config.tour.baseline = 'student/test_accuracy'

  if arg == 'quick':
    config.method = 'distill'
    config.teacher.model.update(stage_sizes=(1, 1), width=16)
    config.teacher.num_steps = 150
    config.student_labels = 100  # the students' labels; the teacher's: 1293
    config.num_steps = 150
    config.eval_every = 150
    config.optimizer.learning_rate = 3e-3
    config.augment.crop_padding = 0
    config.plots = False
    config.tour.target = 0.93  # the student alone on its 100 labels: 0.78-0.85
  elif arg == 'cifar10':
    config.data.name = 'cifar10'
    config.data.max_train_examples = 20000
    config.augment.update(crop_padding=4, flip=True)
    config.model.update(channels=(64, 128, 128, 256), strides=(1, 2, 1, 2),
                        stem_channels=32)  # 68k parameters
    config.teacher.model.update(stage_sizes=(2, 2, 2), width=16)  # 175k
    config.teacher.num_steps = 1500
    config.num_steps = 1500
    config.batch_size = 64
    config.eval_every = 500
    config.checkpoint_every = 500
    config.optimizer.update(learning_rate=3e-3, schedule='cosine',
                            warmup_steps=100)
    config.prune.finetune_steps = 150
    config.early_exit.update(channels=(64, 128, 128, 256), num_steps=1500)
    config.tour.target = 0.6
  elif arg == 'mnist':
    config.data.name = 'mnist'
    config.augment.crop_padding = 2
    config.teacher.num_steps = 1000
    config.num_steps = 1000
    config.batch_size = 128
    config.eval_every = 500
    config.checkpoint_every = 500
    config.early_exit.num_steps = 1000
    config.tour.target = 0.98
  elif arg == 'tfds':
    config.data.name = 'tfds'
    config.data.tfds_name = 'cifar10'
    config.augment.update(crop_padding=4, flip=True)
    config.model.update(channels=(64, 128, 128, 256), strides=(1, 2, 1, 2),
                        stem_channels=32)  # 68k parameters
    config.teacher.model.update(stage_sizes=(2, 2, 2, 2), width=64,
                                stem='imagenet')  # ResNet-18, as in HW13
    config.teacher.num_steps = 20000
    config.num_steps = 20000
    config.batch_size = 128
    config.eval_every = 2000
    config.checkpoint_every = 2000
    config.optimizer.update(learning_rate=3e-3, schedule='cosine',
                            warmup_steps=500)
    config.early_exit.update(channels=(64, 128, 128, 256), num_steps=20000)
    config.tour.target = 0.85
  return config


METHODS = ('baseline', 'distill', 'prune', 'lottery', 'quantize', 'cluster',
           'early_exit', 'slimmable', 'binary', 'fitnets', 'all')
SOURCES = ('distilled', 'student')  # what compress_from may name


def _require(ok: bool, message: str):
  if not ok:
    raise ConfigError(message)


def _positive_int(value) -> bool:
  return isinstance(value, int) and value > 0


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field with an unusable value."""
  config_lib.validate(config)
  _require(config.method in METHODS,
           f'config.method={config.method!r}: choose one of {METHODS}')
  _require(config.compress_from in SOURCES, f'config.compress_from='
           f'{config.compress_from!r}: choose one of {SOURCES}')
  _require(_positive_int(config.max_params),
           f'config.max_params={config.max_params!r} must be a positive '
           'integer')
  _require(isinstance(config.model.rank, int) and config.model.rank >= 0,
           f'config.model.rank={config.model.rank!r} must be an integer >= 0 '
           '(0: full-rank pointwise convs)')
  _require(config.model.name == 'separable' or not config.model.rank,
           'config.model.rank > 0 needs config.model.name=\'separable\'')
  _require(_positive_int(config.teacher.num_steps),
           f'config.teacher.num_steps={config.teacher.num_steps!r} must be a '
           'positive integer')
  _require(isinstance(config.student_labels, int)
           and config.student_labels >= 0,
           f'config.student_labels={config.student_labels!r} must be an '
           'integer >= 0 (0: every training label)')
  _require(config.distill.temperature > 0, 'config.distill.temperature='
           f'{config.distill.temperature} must be > 0')
  _require(0.0 <= config.distill.alpha <= 1.0,
           f'config.distill.alpha={config.distill.alpha} must be in [0, 1]')
  prune = config.prune
  for name in ('sparsities', 'structured_fractions'):
    _require(all(0.0 <= s < 1.0 for s in prune[name]),
             f'config.prune.{name}={prune[name]} must each be in [0, 1)')
  _require(all(0.0 <= s < 1.0 for s in config.lottery.sparsities),
           f'config.lottery.sparsities={config.lottery.sparsities} must each '
           'be in [0, 1)')
  _require(prune.scope in ('global', 'layer'), f'config.prune.scope='
           f"{prune.scope!r}: choose 'global' or 'layer'")
  _require(_positive_int(prune.rounds),
           f'config.prune.rounds={prune.rounds!r} must be a positive integer')
  _require(isinstance(prune.finetune_steps, int) and prune.finetune_steps >= 0,
           f'config.prune.finetune_steps={prune.finetune_steps!r} must be an '
           'integer >= 0')
  _require(prune.learning_rate > 0, 'config.prune.learning_rate='
           f'{prune.learning_rate} must be > 0')
  _require(not prune.structured_fractions or config.model.name == 'separable',
           'config.prune.structured_fractions needs the separable student '
           "(config.model.name='separable')")
  for name in ('quantize', 'cluster'):
    _require(all(isinstance(b, int) and 2 <= b <= 8 for b in config[name].bits),
             f'config.{name}.bits={config[name].bits} must each be an integer '
             'in [2, 8]')
  _require(_positive_int(config.cluster.num_iterations),
           'config.cluster.num_iterations must be a positive integer')
  exits = config.early_exit
  _require(len(exits.channels) == len(exits.strides),
           'config.early_exit.channels and config.early_exit.strides must '
           'have the same length')
  _require(all(0 <= e < len(exits.channels) - 1 for e in exits.exits),
           f'config.early_exit.exits={exits.exits} must be block indices in '
           f'[0, {len(exits.channels) - 1})')
  _require(_positive_int(exits.num_steps),
           f'config.early_exit.num_steps={exits.num_steps!r} must be a '
           'positive integer')
  widths = tuple(config.slimmable.widths)
  _require(bool(widths) and all(0.0 < w <= 1.0 for w in widths)
           and list(widths) == sorted(set(widths)),
           f'config.slimmable.widths={widths} must be increasing width '
           'multipliers in (0, 1]')
  if config.method == 'slimmable':
    model = config.model
    _require(model.name == 'separable' and not model.rank
             and model.batch_norm and not model.dropout,
             "config.method='slimmable' needs the separable student with "
             'batch norm (config.model.name=\'separable\', rank=0, '
             'batch_norm=True, dropout=0)')
  settings = config.fitnets
  _require(_positive_int(settings.hint_steps),
           f'config.fitnets.hint_steps={settings.hint_steps!r} must be a '
           'positive integer')
  if config.method == 'fitnets':
    _validate_fitnets_layers(config)


def _validate_fitnets_layers(config: ml_collections.ConfigDict) -> None:
  settings = config.fitnets
  layers = {'teacher': ('hint_layer', config.teacher.model),
            'student': ('guided_layer', config.model)}
  for who, (field, model) in layers.items():
    if model.name == 'resnet':
      names = [f'ResidualBlock_{i}' for i in range(sum(model.stage_sizes))]
    elif model.name == 'separable':
      names = [f'SeparableBlock_{i}' for i in range(len(model.channels))]
    else:
      continue  # other models: checked when the stage runs
    _require(settings[field] in names,
             f'config.fitnets.{field}={settings[field]!r} is not a block of '
             f'the {who}: choose one of {names}')
