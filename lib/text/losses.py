"""Token-level losses and accuracy over padded sequences.

Means are over valid tokens (mask true), not over sequences: under `jax.jit`
on a sharded global batch they are exact means over the global batch's
tokens. Logits at padded positions never reach a result.
"""

import jax
import jax.numpy as jnp
import optax


def token_cross_entropy(logits: jax.Array, targets: jax.Array,
                        label_smoothing: float = 0.0) -> jax.Array:
  """Per-token cross-entropy [...] of logits [..., V] against int targets [...].

  With `label_smoothing` a, the target distribution is (1 - a) on the label
  plus a / V on every token (optax.smooth_labels).
  """
  labels = optax.smooth_labels(
      jax.nn.one_hot(targets, logits.shape[-1], dtype=logits.dtype),
      label_smoothing)
  return optax.softmax_cross_entropy(logits, labels)


def masked_cross_entropy(logits: jax.Array, targets: jax.Array,
                         mask: jax.Array, label_smoothing: float = 0.0
                         ) -> tuple[jax.Array, jax.Array]:
  """(mean cross-entropy over valid tokens, number of valid tokens).

  A batch without a valid token has loss 0.
  """
  valid = mask.astype(bool)
  # where, not a product: even an Inf logit at a padded position stays out.
  losses = jnp.where(valid, token_cross_entropy(
      logits, targets, label_smoothing), 0.0)
  count = jnp.sum(valid, dtype=jnp.float32)
  return jnp.sum(losses) / jnp.maximum(count, 1.0), count


def token_accuracy(logits: jax.Array, targets: jax.Array,
                   mask: jax.Array) -> jax.Array:
  """The fraction of valid tokens whose argmax logit is the target."""
  valid = mask.astype(bool)
  correct = jnp.sum((jnp.argmax(logits, -1) == targets) & valid,
                    dtype=jnp.float32)
  return correct / jnp.maximum(jnp.sum(valid, dtype=jnp.float32), 1.0)
