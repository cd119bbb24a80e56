"""Pooling over frames and the classifier heads: HW4's mean pooling, the boss's
self-attention pooling and additive-margin softmax.

Frames are [B, T, D] with a validity mask [B, T] (False on padding); every
pooling ignores padded frames exactly, so a batch padded to any length gives
each utterance the embedding it has alone.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


def masked_mean(frames: jax.Array, valid: jax.Array) -> jax.Array:
  """The mean of the valid frames: [B, T, D], [B, T] -> [B, D]."""
  weights = valid.astype(frames.dtype)[..., None]
  return (frames * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


class AttentionPooling(nn.Module):
  """Self-attention pooling (Cai et al. 2018's SAP): sum_t w_t h_t.

  w = softmax over valid frames of v^T tanh(W h_t + b); the weights are sown
  as 'intermediates'/'pooling_weights' [B, T] for plots.
  """
  hidden: int

  @nn.compact
  def __call__(self, frames: jax.Array, valid: jax.Array) -> jax.Array:
    scores = nn.Dense(1, use_bias=False, name='score')(
        jnp.tanh(nn.Dense(self.hidden, name='project')(frames)))[..., 0]
    # A finite floor: an all-padding row gets zero weights, not NaNs.
    scores = jnp.where(valid, scores.astype(jnp.float32), -1e30)
    weights = jnp.where(valid, jax.nn.softmax(scores, axis=-1), 0.0)
    self.sow('intermediates', 'pooling_weights', weights)
    return jnp.einsum('bt,btd->bd', weights.astype(frames.dtype), frames)


class CosineClassifier(nn.Module):
  """Cosines between the L2-normalized embedding and each class's weight.

  The logits of additive-margin softmax (`am_softmax_loss`); their argmax is
  the nearest class on the unit sphere.
  """
  num_classes: int

  @nn.compact
  def __call__(self, embedding: jax.Array) -> jax.Array:
    weights = self.param('class_weights', nn.initializers.lecun_normal(),
                         (embedding.shape[-1], self.num_classes))
    unit = embedding / jnp.linalg.norm(embedding, axis=-1, keepdims=True
                                       ).clip(1e-6)
    return unit @ (weights / jnp.linalg.norm(weights, axis=0).clip(1e-6))


def am_softmax_loss(cosines: jax.Array, labels: jax.Array, *, margin: float,
                    scale: float) -> jax.Array:
  """Additive-margin softmax (Wang et al. 2018), per example.

  -log(e^{s (cos_y - m)} / (e^{s (cos_y - m)} + sum_{j != y} e^{s cos_j})):
  cross-entropy of the scaled cosines with the margin taken off the true
  class, which must then win by m. margin=0 is a softmax on scaled cosines.
  """
  logits = scale * (cosines - margin * jax.nn.one_hot(labels,
                                                      cosines.shape[-1]))
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
