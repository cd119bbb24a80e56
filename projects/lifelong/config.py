"""Configs for HW14: life-long (continual) learning on a sequence of digit tasks.

Variants (`--config=projects/lifelong/config.py:VARIANT`):
  (none)          scikit-learn's 8x8 digits as 5 rotated tasks (0, 20, ..., 80
                  degrees), offline; about a minute on 2 CPU cores.
  quick           3 permuted-digit tasks with EWC, a few seconds (the tour).
  rotated_mnist   the homework (2022): MNIST rotated by 0/20/40/60/80 degrees,
                  784-1024-512-256-10 MLP, from `tasks.mnist_dir`.
  permuted_mnist  the homework (2021): 5 permuted-pixel MNIST tasks.
  split_mnist     5 tasks of 2 classes (0/1, 2/3, ...), each its own two-way
                  head on a shared output layer (task-incremental).

Pick the method with --config.method=NAME (finetune, multitask, ewc, mas, si,
rwalk, scp, agem) and its strength with --config.NAME.strength=...; switch
the data to TFDS with --config.tasks.source=tfds (tasks.tfds_name='mnist').
"""

import ml_collections

from lib import config as config_lib

VARIANTS = ('quick', 'rotated_mnist', 'permuted_mnist', 'split_mnist')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('lifelong', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'lifelong'
  config.method = 'ewc'
  config.tasks = ml_collections.ConfigDict(dict(
      kind='rotated',  # permuted | rotated | split
      source='digits',  # digits | mnist | tfds
      num_tasks=5,
      rotation_step=20.0,  # rotated: task t turns the digits by t * this (degrees)
      train_per_task=0,  # 0: all training images; else a fixed random subset
      test_per_task=0,  # 0: the whole test set
      test_fraction=0.2,  # digits: held out as the test set
      split_seed=0,  # the held-out split, subsets and permutations
      mnist_dir='../shared/data/mnist',
      tfds_name='mnist',
      tfds_data_dir='',  # '' = ~/tensorflow_datasets
  ))
  config.model = ml_collections.ConfigDict(dict(features=(256, 256)))
  config.steps_per_task = 300
  # The trainer-wide step count, kept equal to the whole run's.
  config.num_steps = (config.get_ref('steps_per_task')
                      * config.tasks.get_ref('num_tasks'))
  config.batch_size = 64
  config.log_every = 100
  config.eval_every = 100  # unused: every task is evaluated after each task
  config.checkpoint_every = 0  # 0: at the end of every task only
  # Examples of each task that EWC, MAS and SCP estimate the importance from.
  config.importance_examples = 1024

  # Each method's knobs; `strength` multiplies
  # sum_k importance_k (theta_k - anchor_k)^2.
  # Defaults picked on the rotated digits among 3-4 values each (see README).
  config.ewc = ml_collections.ConfigDict(dict(
      strength=1e4, fisher='true'))  # true: y ~ model, empirical: y = label
  config.mas = ml_collections.ConfigDict(dict(strength=100.0))
  config.si = ml_collections.ConfigDict(dict(strength=100.0, damping=0.1))
  config.rwalk = ml_collections.ConfigDict(dict(
      strength=1000.0, fisher_decay=0.9, epsilon=1e-3))
  config.scp = ml_collections.ConfigDict(dict(strength=1e5,
                                              num_projections=64))
  config.agem = ml_collections.ConfigDict(dict(
      memory_per_task=100, memory_batch_size=64))

  # Adam restarted at every task.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.tour.metric = 'acc'
  config.tour.mode = 'max'
  config.tour.target = 0.7
  config.tour.baseline = 'baseline/random_init_accuracy'

  if arg == 'quick':
    config.tasks.kind = 'permuted'
    config.tasks.num_tasks = 3
    config.steps_per_task = 150
    config.importance_examples = 512
    config.ewc.strength = 100.0  # permuted tasks share little: a milder anchor
  elif arg in ('rotated_mnist', 'permuted_mnist', 'split_mnist'):
    config.tasks.source = 'mnist'
    config.tasks.kind = arg.split('_')[0]
    # The homework's MLP (2021) and optimizer; steps and batches shortened.
    config.model.features = (1024, 512, 256)
    config.optimizer.learning_rate = 1e-4
    config.batch_size = 128
    config.steps_per_task = 1000
    config.log_every = 200
    config.agem.memory_per_task = 256
    config.agem.memory_batch_size = 128
    # Strengths picked on rotated MNIST among 2-3 values each (see README).
    config.ewc.strength = 2000.0
    config.mas.strength = 1.0
    config.si.strength = 1e4
    config.rwalk.strength = 200.0
    config.scp.strength = 3e6
    config.tour.target = 0.8
  return config
