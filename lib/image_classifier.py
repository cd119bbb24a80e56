"""An image classifier built from config fields: what every vision project starts from.

`config()` adds the fields `data` (lib.data.images), `model` (lib.models'
image classifiers), `augment` (lib.data.augment) and `label_smoothing` to the
base config; `build` turns them into an Experiment for lib.trainer, and `load`
restores a trained classifier as a function from images to logits.
"""

from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from lib import classifier
from lib import config as config_lib
from lib import models
from lib import trainer
from lib.data import augment as augment_lib
from lib.data import images
from lib.data import splits
from lib.errors import ConfigError


def config(data_name: str = 'digits',
           model_name: str = 'small_cnn') -> ml_collections.ConfigDict:
  fields = config_lib.base_config()
  fields.data = images.config(data_name)
  fields.model = config_lib.image_model_config(model_name)
  fields.augment = augment_lib.config()
  fields.label_smoothing = 0.0
  return fields


def build(config: ml_collections.ConfigDict,
          data: images.ImageData | None = None) -> trainer.Experiment:
  """The Experiment that trains `config.model` on `data` (default: load config.data).

  Evaluates on 'val' and 'test'; the baseline is the majority-class accuracy.
  """
  if not 0.0 <= config.label_smoothing < 1.0:
    raise ConfigError(f'config.label_smoothing={config.label_smoothing} must '
                      'be in [0, 1)')
  data = images.load_images(config.data) if data is None else data
  model = models.make_image_classifier(config.model, data.num_classes)
  loss_fn, eval_fn = classifier.classifier_fns(
      model, label_smoothing=config.label_smoothing,
      augment=augment_lib.make_augment(config.augment),
      mixup_alpha=config.augment.mixup_alpha, input_key='image')
  majority = np.bincount(data.train['label']).argmax()
  return trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=eval_fn,
      train_data=splits.shard_for_process(data.train),
      eval_data={'val': splits.shard_for_process(data.val),
                 'test': splits.shard_for_process(data.test)},
      sample_input=data.train['image'][:1],
      baselines={'baseline/majority_class_accuracy':
                 float(np.mean(data.test['label'] == majority))})


class Classifier(NamedTuple):
  """A trained classifier: `logits(params, images)` is pure and jittable."""
  model: object
  params: object
  model_state: dict

  def logits(self, params, images: jax.Array) -> jax.Array:
    outputs, _ = models.apply_model(self.model, params, self.model_state,
                                    images, train=False)
    return outputs


def load(config: ml_collections.ConfigDict, workdir: str,
         experiment: trainer.Experiment | None = None) -> Classifier:
  """The classifier trained in `workdir` (the best state if early stopping kept one)."""
  experiment = build(config) if experiment is None else experiment
  state = trainer.restore_best(config, workdir, experiment)
  return Classifier(experiment.model, state.params, state.model_state)
