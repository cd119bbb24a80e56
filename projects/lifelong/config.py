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
rwalk, scp, agem, gem, lwf, packnet, pnn, net2net) and its strength with
--config.NAME.strength=... (the regularizers and lwf); switch
the data to TFDS with --config.tasks.source=tfds (tasks.tfds_name='mnist'),
and the curriculum with --config.tasks.order='(4, 3, 2, 1, 0)'.
"""

import ml_collections

from lib import config as config_lib
from lib.errors import ConfigError
from projects.lifelong import methods
from projects.lifelong import tasks as tasks_lib

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
      order=(),  # the curriculum: a permutation of 0..num_tasks-1; () in order
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
  config.checkpoint_every = 0  # 0: at the end of every task
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
  # GEM: one gradient per earlier task on all of its memory; margin is the
  # dual variables' floor (v >= margin), 0.5 as in the paper's code.
  config.gem = ml_collections.ConfigDict(dict(memory_per_task=100,
                                              margin=0.5))
  # LwF: strength x KL of the previous model's outputs at temperature T.
  config.lwf = ml_collections.ConfigDict(dict(strength=3.0, temperature=2.0))
  # PackNet: after each task, prune this fraction of the free weights of every
  # layer, then retrain the kept ones for the task's last retrain_steps steps.
  config.packnet = ml_collections.ConfigDict(dict(prune_fraction=0.5,
                                                  retrain_steps=50))
  # Net2Net: widen_by units more in every hidden layer before each new task,
  # copies of existing ones with noise x their layer's weight std added.
  config.net2net = ml_collections.ConfigDict(dict(widen_by=32, noise=0.01))

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
    config.gem.memory_per_task = 256
    config.packnet.retrain_steps = 100
    config.net2net.widen_by = 128
    # Strengths picked on rotated MNIST among 2-3 values each (see README).
    config.ewc.strength = 2000.0
    config.mas.strength = 1.0
    config.si.strength = 1e4
    config.rwalk.strength = 200.0
    config.scp.strength = 3e6
    config.tour.target = 0.8
  return config


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first field with an unusable value."""
  for name in ('steps_per_task', 'importance_examples'):
    if not isinstance(config[name], int) or config[name] <= 0:
      raise ConfigError(f'config.{name}={config[name]!r} must be a positive '
                        'integer')
  config_lib.validate(config)
  tasks = config.tasks
  if tasks.kind not in tasks_lib.KINDS:
    raise ConfigError(f'tasks.kind={tasks.kind!r}: choose one of '
                      f'{tasks_lib.KINDS}')
  if tasks.source not in tasks_lib.SOURCES:
    raise ConfigError(f'tasks.source={tasks.source!r}: choose one of '
                      f'{tasks_lib.SOURCES}')
  if not isinstance(tasks.num_tasks, int) or tasks.num_tasks < 2:
    raise ConfigError(f'tasks.num_tasks={tasks.num_tasks!r} must be an '
                      'integer >= 2')
  if tasks.kind == 'split' and tasks_lib.NUM_CLASSES % tasks.num_tasks:
    raise ConfigError(f'tasks.num_tasks={tasks.num_tasks}: split tasks need a '
                      f'divisor of {tasks_lib.NUM_CLASSES} (2 or 5)')
  if tasks.order and sorted(tasks.order) != list(range(tasks.num_tasks)):
    raise ConfigError(f'tasks.order={tasks.order!r} must be a permutation of '
                      f'0..{tasks.num_tasks - 1} (or () for that order)')
  for name in ('train_per_task', 'test_per_task'):
    if tasks[name] < 0:
      raise ConfigError(f'tasks.{name}={tasks[name]} must be >= 0 (0: all)')
  if config.method not in methods.METHODS:
    raise ConfigError(f'config.method={config.method!r}: choose one of '
                      f'{methods.METHODS}')
  if config.method in methods.WITH_STRENGTH:
    strength = config[config.method].strength
    if not strength >= 0:
      raise ConfigError(f'config.{config.method}.strength={strength} must be '
                        '>= 0')
  if config.ewc.fisher not in ('true', 'empirical'):
    raise ConfigError(f"config.ewc.fisher={config.ewc.fisher!r}: choose 'true' "
                      "or 'empirical'")
  if config.si.damping <= 0:
    raise ConfigError(f'config.si.damping={config.si.damping} must be > 0')
  if not 0 <= config.rwalk.fisher_decay < 1:
    raise ConfigError(f'config.rwalk.fisher_decay={config.rwalk.fisher_decay} '
                      'must lie in [0, 1)')
  if config.scp.num_projections <= 0:
    raise ConfigError(f'config.scp.num_projections='
                      f'{config.scp.num_projections} must be > 0')
  if config.method == 'agem' and (config.agem.memory_per_task <= 0 or
                                  config.agem.memory_batch_size <= 0):
    raise ConfigError('config.agem.memory_per_task and memory_batch_size must '
                      'be > 0')
  gem = config.gem
  if not isinstance(gem.memory_per_task, int) or gem.memory_per_task <= 0:
    raise ConfigError(f'config.gem.memory_per_task={gem.memory_per_task!r} '
                      'must be a positive integer')
  if not gem.margin >= 0:
    raise ConfigError(f'config.gem.margin={gem.margin} must be >= 0')
  if (config.method == 'gem'
      and tasks.num_tasks - 1 > methods.MAX_GEM_CONSTRAINTS):
    raise ConfigError(f'tasks.num_tasks={tasks.num_tasks}: GEM solves its QP '
                      f'exactly for at most {methods.MAX_GEM_CONSTRAINTS + 1} '
                      'tasks')
  if not config.lwf.temperature > 0:
    raise ConfigError(f'config.lwf.temperature={config.lwf.temperature} must '
                      'be > 0')
  packnet = config.packnet
  if not 0 < packnet.prune_fraction < 1:
    raise ConfigError(f'config.packnet.prune_fraction={packnet.prune_fraction}'
                      ' must lie in (0, 1)')
  if (not isinstance(packnet.retrain_steps, int)
      or not 0 < packnet.retrain_steps < config.steps_per_task):
    raise ConfigError(f'config.packnet.retrain_steps={packnet.retrain_steps!r}'
                      ' must be an integer in [1, steps_per_task='
                      f'{config.steps_per_task})')
  net2net = config.net2net
  if not isinstance(net2net.widen_by, int) or net2net.widen_by < 0:
    raise ConfigError(f'config.net2net.widen_by={net2net.widen_by!r} must be '
                      'an integer >= 0')
  if not net2net.noise >= 0:
    raise ConfigError(f'config.net2net.noise={net2net.noise} must be >= 0')
  if config.method == 'net2net' and not config.model.features:
    raise ConfigError('config.model.features=(): Net2Net widens hidden layers;'
                      ' give it at least one')
