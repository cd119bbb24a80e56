"""The small networks trained here: the budgeted student, the early-exit and
slimmable nets.

`make_student` builds config.model (lib's SeparableCNN, or with `rank` > 0
models.low_rank_separable_cnn); `check_budget` counts its parameters from an
abstract `init` before anything trains. `early_exit_fns` trains every head of
an EarlyExitCNN and reports each one's accuracy.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lib import models as lib_models
from lib.errors import ConfigError
from projects.compression import models
from projects.compression import slimmable


def make_student(config: ml_collections.ConfigDict, num_classes: int):
  model = config.model
  if model.rank:
    return models.low_rank_separable_cnn(
        model.rank, channels=tuple(model.channels),
        strides=tuple(model.strides), stem_channels=model.stem_channels,
        num_outputs=num_classes, batch_norm=model.batch_norm,
        dropout=model.dropout)
  return lib_models.make_image_classifier(model, num_classes)


def check_budget(model, sample_input, max_params: int) -> int:
  """The model's parameter count; ConfigError above `max_params`."""
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                          sample_input)
  count = optax.tree_utils.tree_size(shapes['params'])
  if count > max_params:
    raise ConfigError(f'the student has {count:,} parameters, over '
                      f'config.max_params={max_params:,}: shrink '
                      'config.model.channels or set config.model.rank')
  return count


def make_early_exit(config: ml_collections.ConfigDict,
                    num_classes: int) -> models.EarlyExitCNN:
  settings = config.early_exit
  return models.EarlyExitCNN(
      tuple(settings.channels), tuple(settings.strides), tuple(settings.exits),
      settings.stem_channels, num_classes, config.model.batch_norm)


def make_slimmable(config: ml_collections.ConfigDict,
                   num_classes: int) -> slimmable.SlimmableSeparableCNN:
  model = config.model
  return slimmable.SlimmableSeparableCNN(
      tuple(model.channels), tuple(model.strides), model.stem_channels,
      num_classes, tuple(config.slimmable.widths))


def train_forward(model, params, model_state, batch, key, augment=None):
  """(outputs, new model_state, images): `model` in training mode on the
  batch's images, augmented by `augment(key, images)` when given."""
  augment_key, dropout_key = jax.random.split(key)
  images = batch['image']
  if augment is not None:
    images = augment(augment_key, images)
  outputs, model_state = lib_models.apply_model(
      model, params, model_state, images, train=True, key=dropout_key)
  return outputs, model_state, images


def early_exit_fns(model, augment=None):
  """(loss_fn, eval_fn) in lib.steps' contract.

  The loss is the mean cross-entropy over all heads, so every exit learns to
  classify; eval reports the final head's and each exit's accuracy. A
  slimmable net's heads are its widths (the paper sums their losses: the mean
  is that sum / the number of widths, the same steps under Adam).
  """

  def loss_fn(params, model_state, batch, key):
    heads, model_state, _ = train_forward(model, params, model_state, batch,
                                          key, augment)
    losses = [optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean() for logits in heads]
    accuracy = jnp.mean(jnp.argmax(heads[-1], -1) == batch['label'])
    return sum(losses) / len(losses), ({'accuracy': accuracy}, model_state)

  def eval_fn(params, model_state, batch):
    heads, _ = lib_models.apply_model(model, params, model_state,
                                      batch['image'], train=False)
    correct = [(jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
               for logits in heads]
    return {'accuracy': correct[-1],
            **{f'head_{i}_accuracy': c for i, c in enumerate(correct[:-1])}}

  return loss_fn, eval_fn
