"""Configs for HW2: classification with a deep MLP.

Variants (`--config=projects/classification/config.py:VARIANT`):
  (none)     scikit-learn's embedded 8x8 digits, 10 classes (offline).
  quick      the same, trained for a few seconds (the tour).
  mnist      MNIST IDX files from `data.mnist_dir`; validation is the official
             10k test set (MNIST has no separate validation split).
  phonemes   the course's LibriSpeech MFCC frames from `data.phoneme_dir`
             (train_split.txt, train_labels.txt, feat/train/<id>.pt or .npy):
             each frame with `data.context_frames` neighbours, 41 classes.
"""

import ml_collections

from lib import config as config_lib
from lib.errors import ConfigError

VARIANTS = ('quick', 'mnist', 'phonemes')
DATASETS = ('digits', 'mnist', 'phonemes')
ACTIVATIONS = ('relu', 'tanh')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('classification', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'classification'
  config.data = ml_collections.ConfigDict(dict(
      name='digits',  # digits | mnist | phonemes
      val_fraction=0.2,  # digits and phonemes: held out from the train files
      split_seed=0,  # the held-out split stays put when `seed` changes
      mnist_dir='../shared/data/mnist',
      phoneme_dir='',
      context_frames=11,  # odd: the frame and 5 on each side
  ))
  config.model = ml_collections.ConfigDict(dict(
      features=(256, 256, 256), batch_norm=True, dropout=0.1,
      activation='relu'))  # relu | tanh
  config.batch_size = 64
  config.num_steps = 2000
  config.eval_every = 200
  config.log_every = 50
  # AdamW with PyTorch's default decay, as the course's sample code uses.
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.01
  config.tour.metric = 'val/accuracy'
  config.tour.mode = 'max'
  config.tour.target = 0.9
  config.tour.baseline = 'baseline/majority_class_accuracy'

  if arg == 'quick':
    config.model.features = (128, 128)
    config.num_steps = 300
    config.eval_every = 100
    config.checkpoint_every = 0
  elif arg == 'mnist':
    config.data.name = 'mnist'
    config.model.features = (1024, 512, 256)
    config.model.dropout = 0.2
    config.batch_size = 256
    config.num_steps = 4700  # about 20 epochs of 60k
    config.eval_every = 470
    config.checkpoint_every = 1000
    config.optimizer.schedule = 'cosine'
    config.optimizer.warmup_steps = 200
    config.tour.target = 0.98
  elif arg == 'phonemes':
    config.data.name = 'phonemes'
    config.model.features = (1024, 1024, 1024, 1024)
    config.model.dropout = 0.25
    config.batch_size = 512
    config.num_steps = 40000
    config.eval_every = 2000
    config.checkpoint_every = 2000
    config.optimizer.schedule = 'cosine'
    config.optimizer.warmup_steps = 1000
    config.tour.target = 0.7  # the course's medium level (2022)
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first unusable field this project adds.

  The phoneme loader checks its own fields (context_frames, val_fraction).
  """
  if config.data.name not in DATASETS:
    raise ConfigError(f'data.name={config.data.name!r}: choose one of '
                      f'{DATASETS}')
  if config.model.activation not in ACTIVATIONS:
    raise ConfigError(f'model.activation={config.model.activation!r}: choose '
                      f'one of {ACTIVATIONS}')
