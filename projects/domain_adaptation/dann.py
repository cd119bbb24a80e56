"""Domain-adversarial training (DANN: Ganin & Lempitsky 2015, JMLR 2016).

A feature extractor feeds a label predictor (trained on labelled source images)
and, through a gradient reversal layer, a domain classifier (source vs
target). The domain classifier learns to tell the domains apart; the reversed
gradient teaches the feature extractor to make them indistinguishable.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lib import conv
from lib import models

SOURCE, TARGET = 0, 1  # domain labels


@jax.custom_vjp
def gradient_reversal(x, scale):
  """Identity forward; the backward pass multiplies cotangents by -scale."""
  return x


def _reversal_forward(x, scale):
  return x, scale


def _reversal_backward(scale, cotangent):
  reversed_cotangent = jax.tree.map(
      lambda g: -jnp.asarray(scale, g.dtype) * g, cotangent)
  return reversed_cotangent, jnp.zeros_like(scale)


gradient_reversal.defvjp(_reversal_forward, _reversal_backward)


def reversal_coefficient(progress, lambda_max: float = 1.0,
                         gamma: float = 10.0):
  """The paper's schedule lambda_p = 2 / (1 + exp(-gamma p)) - 1, p in [0, 1].

  It rises from 0 to (almost) `lambda_max`, so the domain classifier's noisy
  early gradients do not disturb the features while they are still forming.
  """
  return lambda_max * (2.0 / (1.0 + jnp.exp(-gamma * progress)) - 1.0)


def annealed_learning_rate_scale(num_steps: int, alpha: float = 10.0,
                                 beta: float = 0.75) -> optax.Schedule:
  """The paper's annealing mu_p = mu_0 / (1 + alpha p)^beta, divided by mu_0."""
  return lambda count: (1.0 + alpha * count / num_steps) ** -beta


class FeatureExtractor(nn.Module):
  """Conv(5x5) -> [BatchNorm] -> ReLU -> max-pool blocks, flattened.

  Ganin et al.'s digit network, with the batch norm that most re-implementations
  add: source and target batches pass separately, so each is normalized by its
  own statistics in training, which already removes part of the shift.
  """
  channels: Sequence[int] = (32, 48)
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    for width in self.channels:
      x = conv.Conv(width, (5, 5), use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = models.max_pool2x2(nn.relu(x))
    return x.reshape((x.shape[0], -1))


class DANN(nn.Module):
  """Feature extractor, label predictor and domain classifier."""
  channels: Sequence[int] = (32, 48)
  label_hidden: Sequence[int] = (100, 100)
  domain_hidden: Sequence[int] = (100,)
  num_classes: int = 10
  batch_norm: bool = True

  def setup(self):
    self.feature_extractor = FeatureExtractor(self.channels, self.batch_norm)
    self.label_predictor = models.MLP(self.label_hidden, self.num_classes,
                                      batch_norm=self.batch_norm)
    self.domain_classifier = models.MLP(self.domain_hidden, 1,
                                        batch_norm=self.batch_norm)

  def __call__(self, x, *, train: bool = False, reversal=1.0):
    """(class logits [B, classes], domain logits [B]).

    The domain classifier sees the features through a gradient reversal layer
    scaled by `reversal`.
    """
    features = self.feature_extractor(x, train=train)
    return (self.label_predictor(features, train=train),
            self.domain_classifier(gradient_reversal(features, reversal),
                                   train=train)[:, 0])

  def embed(self, x):
    """The features both heads see, [B, D] (batch norm in inference mode)."""
    return self.feature_extractor(x, train=False)


def apply(model: DANN, params, model_state, x, *, train: bool, reversal=1.0):
  """(class logits, domain logits, new model_state)."""
  variables = {'params': params, **model_state}
  if train and model_state:
    (class_logits, domain_logits), new_state = model.apply(
        variables, x, train=True, reversal=reversal, mutable=list(model_state))
    return class_logits, domain_logits, dict(new_state)
  class_logits, domain_logits = model.apply(variables, x, train=train,
                                            reversal=reversal)
  return class_logits, domain_logits, model_state


def domain_loss_and_accuracy(logits, domain):
  labels = jnp.full(logits.shape, domain, jnp.float32)
  loss = optax.sigmoid_binary_cross_entropy(logits, labels)
  correct = (logits > 0) == (domain == TARGET)
  return loss, correct.astype(jnp.float32)


def make_loss_fn(model: DANN, *, num_steps: int, lambda_max: float = 1.0,
                 gamma: float = 10.0, domain_weight: float = 1.0):
  """loss_fn(params, model_state, batch, key, step) for lib.steps.

  `batch` holds labelled 'source_image' and 'source_label' and, for DANN,
  unlabelled 'target_image'; without it the loss is plain cross-entropy
  (source-only, fine-tuning, target-only). The features get the domain
  classifier's gradient reversed and scaled by lambda_p, scheduled over the
  progress p = step / num_steps (build the train step with
  `loss_takes_step=True`).
  """

  def loss_fn(params, model_state, batch, key, step):
    del key  # no dropout
    reversal = reversal_coefficient(step.astype(jnp.float32) / num_steps,
                                    lambda_max, gamma)
    class_logits, source_domain, model_state = apply(
        model, params, model_state, batch['source_image'], train=True,
        reversal=reversal)
    labels = batch['source_label']
    class_loss = optax.softmax_cross_entropy_with_integer_labels(
        class_logits, labels).mean()
    metrics = {'class_loss': class_loss, 'accuracy': jnp.mean(
        jnp.argmax(class_logits, -1) == labels)}
    if 'target_image' not in batch:
      return class_loss, (metrics, model_state)
    # The target batch passes on its own, so batch norm sees one domain.
    _, target_domain, model_state = apply(
        model, params, model_state, batch['target_image'], train=True,
        reversal=reversal)
    source_loss, source_correct = domain_loss_and_accuracy(source_domain,
                                                           SOURCE)
    target_loss, target_correct = domain_loss_and_accuracy(target_domain,
                                                           TARGET)
    domain_loss = 0.5 * (source_loss.mean() + target_loss.mean())
    metrics.update(domain_loss=domain_loss, reversal=reversal,
                   domain_accuracy=0.5 * (source_correct.mean() +
                                          target_correct.mean()))
    return class_loss + domain_weight * domain_loss, (metrics, model_state)

  return loss_fn


def make_eval_fn(model: DANN):
  """eval_fn(params, model_state, batch) -> per-example metrics (lib.steps).

  `batch` holds 'image', 'label' and 'domain' (the domain each example is
  from); 'domain_accuracy' means something only for a network trained by DANN.
  """

  def eval_fn(params, model_state, batch):
    class_logits, domain_logits, _ = apply(model, params, model_state,
                                           batch['image'], train=False)
    labels = batch['label']
    is_target = batch['domain'] == TARGET
    domain_correct = (domain_logits > 0) == is_target
    return {
        'accuracy': (jnp.argmax(class_logits, -1) == labels).astype(
            jnp.float32),
        'loss': optax.softmax_cross_entropy_with_integer_labels(
            class_logits, labels),
        'domain_accuracy': domain_correct.astype(jnp.float32),
    }

  return eval_fn
