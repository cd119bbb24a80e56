"""HW2: a deep MLP classifier trained with softmax cross-entropy.

`build(config)` loads the data that `config.data.name` picks (digits, MNIST or
the course's phoneme frames), flattens it to {'input': [N, D], 'label': [N]}
and returns the `Experiment` that `lib.trainer` runs.
"""

import flax.linen as nn
import ml_collections
import numpy as np

from lib import classifier
from lib import models
from lib import trainer
from lib.data import embedded
from lib.data import mnist_files
from lib.data import splits
from projects.classification import config as config_lib
from projects.classification import phonemes

ACTIVATIONS = {'relu': nn.relu, 'tanh': nn.tanh}


def _flat(images: np.ndarray, labels: np.ndarray, scale: float) -> dict:
  inputs = images.reshape(len(images), -1).astype(np.float32) / scale
  return {'input': inputs, 'label': labels.astype(np.int32)}


def load_data(config: ml_collections.ConfigDict) -> tuple[dict, dict, int]:
  """(train, val, number of classes) as dicts of numpy arrays.

  Expects a config that passed `config.validate`.
  """
  data = config.data
  if data.name == 'digits':
    digits = embedded.load_digits()
    train, val = splits.split_fraction(
        _flat(digits['image'], digits['label'], 1.0), data.val_fraction,
        data.split_seed)
    return train, val, 10
  if data.name == 'mnist':
    mnist = mnist_files.load_mnist(data.mnist_dir)
    # MNIST has no validation split: the official 10k test set serves as one.
    return (_flat(mnist['train']['image'], mnist['train']['label'], 255.0),
            _flat(mnist['test']['image'], mnist['test']['label'], 255.0), 10)
  train, val = phonemes.load_phonemes(data.phoneme_dir, data.context_frames,
                                      data.val_fraction, data.split_seed)
  return train, val, phonemes.NUM_CLASSES


def majority_class_accuracy(train: dict, val: dict) -> float:
  """Val accuracy of always predicting the most frequent training label."""
  majority = np.bincount(train['label']).argmax()
  return float(np.mean(val['label'] == majority))


def make_model(config: ml_collections.ConfigDict, num_classes: int):
  return models.MLP(tuple(config.model.features), num_outputs=num_classes,
                    batch_norm=config.model.batch_norm,
                    dropout=config.model.dropout,
                    activation=ACTIVATIONS[config.model.activation])


def build(config: ml_collections.ConfigDict) -> trainer.Experiment:
  config_lib.validate(config)
  train, val, num_classes = load_data(config)
  model = make_model(config, num_classes)
  loss_fn, eval_fn = classifier.classifier_fns(model)
  baseline = majority_class_accuracy(train, val)
  return trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=eval_fn,
      train_data=splits.shard_for_process(train),
      eval_data={'val': splits.shard_for_process(val)},
      sample_input=train['input'][:1],
      baselines={'baseline/majority_class_accuracy': baseline})
