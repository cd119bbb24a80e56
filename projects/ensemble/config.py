"""Configs for the ensemble lecture: deep ensembles, bagging, boosting, stacking.

Variants (`--config=projects/ensemble/config.py:VARIANT`):
  (none)      scikit-learn's 8x8 digits, offline: a 5-member deep ensemble of
              MLPs (calibration, OOD on pixel-shuffled digits), then the tree
              and boosting methods, ours against scikit-learn's, on breast
              cancer, wine and digits (WORKDIR/comparison.md).
  quick       the deep ensemble on digits for a few seconds (the tour): OOD
              AUROC of the members' disagreement against one member's.
  mnist       uncertainty-baselines' setting: 10 LeNet-5 members on MNIST
              from `data.mnist_dir`; OOD inputs are CIFAR-10 in grey
              (`data.cifar10_npz`).
  mnist_tfds  the same from TFDS 'mnist' (`data.tfds_data_dir`).
  cifar10     5 LeNet-5 members on the 4,000 exact CIFAR-10 images of
              `data.cifar10_npz` (the last 20% for test); OOD: uniform noise.
  trees       only the tree and boosting comparison (a one-step deep run).

Fields: `ensemble.num_members` (M), `model.name` (mlp | lenet5), `data.ood`
(shuffled_pixels | noise | cifar10), `trees.enabled` and `trees.*` (the
number of estimators, depths, which data sets and methods, and the JAX
network learners' size and steps).
"""

import ml_collections

from lib import config as config_lib
from projects.ensemble import comparison
from projects.ensemble import data as data_lib
from projects.ensemble import networks

VARIANTS = ('quick', 'mnist', 'mnist_tfds', 'cifar10', 'trees')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('ensemble', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'ensemble'
  config.data = ml_collections.ConfigDict(dict(
      source='digits',
      test_fraction=0.2,  # digits, cifar10
      val_fraction=0.1,  # digits: of what the test split leaves
      val_size=5000,  # mnist, tfds, cifar10: the training split's tail
      train_examples=0,  # 0: every training example; else a random subset
      split_seed=0,
      mnist_dir='../shared/data/mnist',
      tfds_name='mnist',
      tfds_data_dir='',  # '' = ~/tensorflow_datasets
      cifar10_npz='../shared/data/cifar10/cifar10_convnetjs_lossless_4000.npz',
      ood='shuffled_pixels',
      ood_examples=2000,
  ))
  config.model = ml_collections.ConfigDict(dict(
      name='mlp', features=(256,), channels=(6, 16, 120), hidden=84))
  config.ensemble = ml_collections.ConfigDict(dict(
      num_members=5, ece_bins=15, eval_batch_size=512))
  config.batch_size = 64
  config.num_steps = 2000
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 1000
  config.optimizer.learning_rate = 1e-3
  config.trees = ml_collections.ConfigDict(dict(
      enabled=True,
      datasets=('breast_cancer', 'wine', 'digits'),
      methods=comparison.METHODS,
      test_fraction=0.25,
      num_estimators=50,  # bagging, random forest, AdaBoost
      adaboost_depth=3,
      boosting_estimators=100,
      boosting_depth=3,
      boosting_learning_rate=0.1,
      networks=True,  # also run our methods over JAX network learners
      network_hidden=(32,),
      network_steps=200,
      network_estimators=10,
      network_boosting_learning_rate=0.5,
  ))
  # Disagreement tells shuffled-pixel digits from real ones: the members'
  # mutual information's AUROC against one member's predictive entropy's.
  # Identical members have no disagreement (AUROC 0.5).
  config.tour.metric = 'ood/auroc_mutual_information'
  config.tour.mode = 'max'
  config.tour.target = 0.92
  config.tour.baseline = 'ood/member/auroc_entropy'

  if arg == 'quick':
    config.num_steps = 400
    config.eval_every = 400
    config.checkpoint_every = 0
    config.trees.enabled = False
    config.optimizer.learning_rate = 3e-3
  elif arg in ('mnist', 'mnist_tfds', 'cifar10'):
    config.data.source = 'tfds' if arg == 'mnist_tfds' else arg.split('_')[0]
    config.data.ood = 'noise' if arg == 'cifar10' else 'cifar10'
    config.data.val_size = 400 if arg == 'cifar10' else 5000
    config.model.name = 'lenet5'
    config.ensemble.num_members = 5 if arg == 'cifar10' else 10
    config.batch_size = 128
    config.num_steps = 1000 if arg == 'cifar10' else 4000
    config.trees.enabled = False
  elif arg == 'trees':
    config.num_steps = 1
    config.eval_every = 1
    config.plots = False
  return config


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first field with an unusable value."""
  config_lib.validate(config)
  d, e, t = config.data, config.ensemble, config.trees
  config_lib.require_choice(d.source, 'data.source', data_lib.SOURCES)
  config_lib.require_choice(d.ood, 'data.ood', data_lib.OOD_KINDS)
  config_lib.require_choice(config.model.name, 'model.name', networks.NAMES)
  for name in ('test_fraction', 'val_fraction'):
    config_lib.require(0 < d[name] < 1,
                       f'config.data.{name}={d[name]} must lie in (0, 1)')
  for name, value in (('data.val_size', d.val_size),
                      ('data.ood_examples', d.ood_examples),
                      ('ensemble.num_members', e.num_members),
                      ('ensemble.ece_bins', e.ece_bins),
                      ('ensemble.eval_batch_size', e.eval_batch_size)):
    config_lib.require(isinstance(value, int) and value > 0,
                       f'config.{name}={value!r} must be a positive integer')
  config_lib.require(d.train_examples >= 0, 'config.data.train_examples='
                     f'{d.train_examples} must be >= 0 (0: all)')
  config_lib.require(all(w > 0 for w in config.model.features) and
                     all(w > 0 for w in config.model.channels),
                     'config.model.features and model.channels must be '
                     'positive widths')
  if t.enabled:
    config_lib.require_distinct_choices(t.datasets, 'trees.datasets',
                                        comparison.TABULAR)
    config_lib.require_distinct_choices(t.methods, 'trees.methods',
                                        comparison.METHODS)
    config_lib.require(0 < t.test_fraction < 1, 'config.trees.test_fraction='
                       f'{t.test_fraction} must lie in (0, 1)')
    for name in ('num_estimators', 'adaboost_depth', 'boosting_estimators',
                 'boosting_depth', 'network_steps', 'network_estimators'):
      config_lib.require(isinstance(t[name], int) and t[name] > 0,
                         f'config.trees.{name}={t[name]!r} must be a positive '
                         'integer')
    for name in ('boosting_learning_rate', 'network_boosting_learning_rate'):
      config_lib.require(t[name] > 0,
                         f'config.trees.{name}={t[name]} must be > 0')
