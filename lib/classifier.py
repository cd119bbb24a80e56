"""Softmax classification: the loss and eval pair that classifier projects share."""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from lib import models
from lib.data import augment as augment_lib


def classifier_fns(model, *, label_smoothing: float = 0.0,
                   augment: Callable | None = None, mixup_alpha: float = 0.0,
                   input_key: str = 'input', label_key: str = 'label'):
  """(loss_fn, eval_fn) in lib.steps' contract, for integer labels.

  Training applies `augment(key, inputs)` (lib.data.augment.make_augment) and
  mixup when `mixup_alpha` > 0, then minimizes cross-entropy against labels
  smoothed by `label_smoothing`; evaluation reports the plain cross-entropy
  and accuracy on unaugmented inputs.
  """

  def loss_fn(params, model_state, batch, key):
    augment_key, mixup_key, dropout_key = jax.random.split(key, 3)
    inputs, labels = batch[input_key], batch[label_key]
    if augment is not None:
      inputs = augment(augment_key, inputs)
    if mixup_alpha:
      inputs, weight, perm = augment_lib.mixup(mixup_key, inputs, mixup_alpha)
    logits, model_state = models.apply_model(
        model, params, model_state, inputs, train=True, key=dropout_key)

    def cross_entropy(labels):
      targets = optax.smooth_labels(
          jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
      return optax.softmax_cross_entropy(logits, targets).mean()

    loss = cross_entropy(labels)
    if mixup_alpha:  # cross-entropy is linear in the target: mix the losses
      loss = weight * loss + (1 - weight) * cross_entropy(labels[perm])
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, ({'accuracy': accuracy}, model_state)

  def eval_fn(params, model_state, batch):
    logits, _ = models.apply_model(model, params, model_state,
                                   batch[input_key], train=False)
    labels = batch[label_key]
    return {'accuracy': (jnp.argmax(logits, -1) == labels).astype(jnp.float32),
            'loss': optax.softmax_cross_entropy_with_integer_labels(
                logits, labels)}

  return loss_fn, eval_fn

