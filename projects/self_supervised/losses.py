"""The five methods' losses, the EMA target update and MoCo's queue.

Every loss is written on the global batch: under jit with the batch sharded
over the mesh, SimCLR's similarity matrix and VICReg's batch statistics are
those of the whole batch, as on one device.
"""

import jax
import jax.numpy as jnp


def normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
  """SimCLR's loss: each of the 2N views against its partner, among the 2N-1
  others, cosine similarities over `temperature`; mean over the 2N."""
  z = normalize(jnp.concatenate([z1, z2]))
  n = z1.shape[0]
  logits = z @ z.T / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  partner = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(log_probs[jnp.arange(2 * n), partner])


def info_nce_with_queue(queries: jax.Array, keys: jax.Array, queue: jax.Array,
                        temperature: float) -> jax.Array:
  """MoCo's loss: each query's own key against the queue's negatives."""
  queries, keys = normalize(queries), normalize(keys)
  positive = jnp.sum(queries * keys, axis=-1, keepdims=True)
  negatives = queries @ queue.T
  logits = jnp.concatenate([positive, negatives], axis=-1) / temperature
  return -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[:, 0])


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.sum(normalize(a) * normalize(b), axis=-1)


def byol_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """2 - 2 cos(prediction, target): the normalized squared error."""
  return jnp.mean(2 - 2 * cosine_similarity(prediction,
                                             jax.lax.stop_gradient(target)))


def simsiam_loss(prediction: jax.Array, projection: jax.Array) -> jax.Array:
  """Negative cosine against the stop-gradient projection of the other view."""
  return -jnp.mean(cosine_similarity(prediction,
                                     jax.lax.stop_gradient(projection)))


def vicreg_terms(z1: jax.Array, z2: jax.Array, epsilon: float = 1e-4):
  """(invariance, variance, covariance) of Bardes et al. (2022).

  invariance: mean squared distance of the two views; variance: mean hinge
  max(0, 1 - std) per dimension, both views; covariance: the squared
  off-diagonal covariances over d, both views.
  """
  invariance = jnp.mean((z1 - z2) ** 2)

  def variance(z):
    std = jnp.sqrt(z.var(axis=0) + epsilon)
    return jnp.mean(jax.nn.relu(1.0 - std))

  def covariance(z):
    n, d = z.shape
    z = z - z.mean(axis=0)
    cov = z.T @ z / (n - 1)
    off_diagonal = cov - jnp.diag(jnp.diag(cov))
    return jnp.sum(off_diagonal ** 2) / d

  return (invariance, variance(z1) + variance(z2),
          covariance(z1) + covariance(z2))


def ema_update(target, online, momentum):
  """target <- momentum * target + (1 - momentum) * online, leaf by leaf."""
  return jax.tree.map(lambda t, o: momentum * t + (1 - momentum) * o,
                      target, jax.lax.stop_gradient(online))


def ema_momentum(base: float, step, num_steps: int, schedule: str):
  """BYOL's cosine increase from `base` to 1 over the run, or `base` throughout."""
  if schedule == 'constant':
    return jnp.float32(base)
  progress = jnp.minimum(step / max(num_steps, 1), 1.0)
  return 1 - (1 - base) * (jnp.cos(jnp.pi * progress) + 1) / 2


def enqueue(queue: jax.Array, index: jax.Array, keys: jax.Array):
  """Writes `keys` over the oldest entries (a FIFO of fixed size); returns
  (queue, index of the next oldest). The size must be a multiple of len(keys)."""
  queue = jax.lax.dynamic_update_slice(
      queue, jax.lax.stop_gradient(keys).astype(queue.dtype), (index, 0))
  return queue, (index + keys.shape[0]) % queue.shape[0]
