"""The shared classifier loss/eval pair: known answers on a fixed linear model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import classifier


class _Identity(nn.Module):
  """Logits are the inputs themselves: the answer is known in closed form."""

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    return x


LOGITS = jnp.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 4.0]])
LABELS = jnp.array([0, 1, 0])
BATCH = {'input': LOGITS, 'label': LABELS}


@pytest.mark.parametrize('smoothing', [0.0, 0.1])
def test_loss_is_cross_entropy_against_smoothed_labels(smoothing):
  loss_fn, _ = classifier.classifier_fns(_Identity(), label_smoothing=smoothing)
  loss, (metrics, state) = loss_fn({}, {}, BATCH, jax.random.key(0))
  targets = np.eye(3)[np.asarray(LABELS)] * (1 - smoothing) + smoothing / 3
  log_probs = jax.nn.log_softmax(LOGITS)
  np.testing.assert_allclose(loss, -np.mean(np.sum(targets * log_probs, -1)),
                             rtol=1e-6)
  np.testing.assert_allclose(metrics['accuracy'], 2 / 3, rtol=1e-6)
  assert state == {}


def test_eval_reports_per_example_accuracy_and_plain_loss():
  _, eval_fn = classifier.classifier_fns(_Identity(), label_smoothing=0.3)
  values = eval_fn({}, {}, BATCH)
  np.testing.assert_array_equal(values['accuracy'], [1.0, 1.0, 0.0])
  np.testing.assert_allclose(
      values['loss'],
      optax.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS),
      rtol=1e-6)
