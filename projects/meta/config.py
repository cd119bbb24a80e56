"""Configs for HW15: meta learning (MAML, first-order MAML, ANIL, Reptile,
Meta-SGD) and the transfer-learning baseline.

Variants (`--config=projects/meta/config.py:VARIANT`):
  (none)         sinusoid regression as in the MAML paper: MLP 40-40, 10 shots,
                 meta-batch 25, inner lr 0.01, 1 inner step (10 at test).
  quick          the same for a few seconds (the tour).
  omniglot       5-way 1-shot Omniglot from the background-set npz at
                 `data.omniglot_path` (28x28, the course's 4-conv net, inner lr
                 0.4, 1 inner step (3 at test), meta-batch 32); rotations of the
                 meta-train characters make more classes, the last
                 `data.num_test_classes` characters are the meta-test set.
  omniglot_tfds  the same from TFDS `omniglot` (train split: meta-train and
                 validation; test split, the official evaluation set: meta-test).
`method` picks the algorithm: maml | fomaml | anil | reptile | metasgd | transfer.
`--config.task.shots=5` gives 5-shot.
"""

import jax
import ml_collections

from lib import config as config_lib
from lib.config import require
from lib.errors import ConfigError
from projects.meta import algorithms
from projects.meta import models

VARIANTS = ('quick', 'omniglot', 'omniglot_tfds')
METHODS = (*algorithms.METHODS, 'transfer')
DATASETS = ('sinusoid', 'omniglot', 'omniglot_tfds')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('meta', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'meta'
  config.method = 'maml'  # maml | fomaml | anil | reptile | metasgd | transfer
  config.data = ml_collections.ConfigDict(dict(
      name='sinusoid',  # sinusoid | omniglot | omniglot_tfds
      omniglot_path=(
          '../shared/data/omniglot_background/images_background.npz'),
      tfds_data_dir='',
      image_size=28,
      num_val_classes=100,  # characters held out for validation episodes
      num_test_classes=200,  # npz: the last characters, held out for meta-test
      rotations=True,  # meta-train classes x4 (0, 90, 180, 270 degrees)
  ))
  # One task: `ways` classes (1 for regression), `shots` support and `query`
  # query examples per class; `eval_query` query examples per class at test.
  config.task = ml_collections.ConfigDict(dict(
      ways=1, shots=10, query=10, eval_query=100))
  config.inner = ml_collections.ConfigDict(dict(
      lr=0.01, steps=1, eval_steps=10,
      task_map='vmap'))  # vmap | map (lax.map: tasks one after another)
  config.model = ml_collections.ConfigDict(dict(
      hidden=(40, 40),  # the sinusoid MLP
      channels=64, num_blocks=4,  # the conv net
      downsample='max_pool',  # max_pool (the course's) | stride (the paper's)
      conv_impl='im2col'))  # im2col (fast second derivatives on CPU) | xla
  # The transfer baseline: pretrain on all meta-train classes (batch_size
  # examples a step), then fit a new head on each test episode's support set.
  config.transfer = ml_collections.ConfigDict(dict(
      finetune_lr=0.01, finetune_steps=10))
  config.eval = ml_collections.ConfigDict(dict(
      val_episodes=200, test_episodes=600, batch_episodes=40))
  config.batch_size = 25  # tasks per meta-step (the meta-batch)
  config.num_steps = 20000
  config.eval_every = 1000
  config.log_every = 100
  config.checkpoint_every = 2000
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.tour.metric = 'test/mse'
  config.tour.mode = 'min'
  config.tour.target = 1.0
  config.tour.baseline = 'baseline/zero_mse'

  if arg == 'quick':
    config.batch_size = 16
    config.num_steps = 1500
    config.optimizer.learning_rate = 3e-3
    config.eval_every = 500
    config.log_every = 100
    config.checkpoint_every = 0
    config.eval.val_episodes = 80
    config.eval.test_episodes = 200
  elif arg in ('omniglot', 'omniglot_tfds'):
    config.data.name = arg
    config.task.update(ways=5, shots=1, query=1, eval_query=15)
    config.inner.update(lr=0.4, steps=1, eval_steps=3)
    config.transfer.update(finetune_lr=0.1, finetune_steps=50)
    config.batch_size = 32
    config.num_steps = 3000
    config.eval_every = 500
    config.log_every = 50
    config.checkpoint_every = 500
    config.eval.val_episodes = 200
    config.tour.metric = 'test/accuracy'
    config.tour.mode = 'max'
    config.tour.target = 0.9
    config.tour.baseline = 'baseline/chance_accuracy'
  return config


def _check_choice(config, name: str, choices):
  group, field = name.split('.') if '.' in name else (None, name)
  value = config[group][field] if group else config[field]
  require(value in choices, f'config.{name}={value!r}: choose one of {choices}')


def validate(config: ml_collections.ConfigDict):
  """ConfigError naming the first unusable field of the meta config.

  The meta batch and the episode chunks must divide over the devices.
  """
  config_lib.validate(config)
  _check_choice(config, 'method', METHODS)
  _check_choice(config, 'data.name', DATASETS)
  for group, names in (('task', ('ways', 'shots', 'query', 'eval_query')),
                       ('inner', ('steps',)),
                       ('eval', ('val_episodes', 'test_episodes',
                                 'batch_episodes')),
                       ('model', ('channels', 'num_blocks')),
                       ('data', ('image_size',))):
    for name in names:
      value = config[group][name]
      require(isinstance(value, int) and value > 0,
              f'config.{group}.{name}={value!r} must be a positive integer')
  require(config.inner.eval_steps >= 0 and config.transfer.finetune_steps >= 0,
          'config.inner.eval_steps and config.transfer.finetune_steps must be '
          '>= 0')
  for group, field in (('inner', 'lr'), ('transfer', 'finetune_lr')):
    require(config[group][field] > 0, f'config.{group}.{field} must be > 0')
  _check_choice(config, 'inner.task_map', algorithms.TASK_MAPS)
  _check_choice(config, 'model.downsample', models.DOWNSAMPLES)
  _check_choice(config, 'model.conv_impl', models.CONV_IMPLS)
  require(config.data.name != 'sinusoid' or config.task.ways == 1,
          'config.task.ways must be 1 for sinusoid regression')
  require(config.data.name == 'sinusoid' or config.task.ways > 1,
          'config.task.ways must be > 1 for classification')
  num_devices = config.num_devices or jax.device_count()
  for name, value in (('batch_size', config.batch_size),
                      ('eval.batch_episodes', config.eval.batch_episodes)):
    require(value % num_devices == 0, f'config.{name}={value} must be a '
            f'multiple of the number of devices ({num_devices})')
