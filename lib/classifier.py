"""Softmax classification: the loss and eval pair that classifier projects share."""

import jax
import jax.numpy as jnp
import optax

from lib import models


def classifier_fns(model, *, label_smoothing: float = 0.0,
                   input_key: str = 'input', label_key: str = 'label'):
  """(loss_fn, eval_fn) in lib.steps' contract, for integer labels.

  Training minimizes cross-entropy against labels smoothed by
  `label_smoothing`; evaluation reports the plain cross-entropy and accuracy.
  """

  def loss_fn(params, model_state, batch, key):
    logits, model_state = models.apply_model(
        model, params, model_state, batch[input_key], train=True, key=key)
    labels = batch[label_key]
    targets = optax.smooth_labels(
        jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
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

