"""Continual-learning methods: importance-weighted quadratic penalties, and A-GEM.

Every regularization method adds strength * sum_k importance_k (theta_k -
anchor_k)^2 to the task loss, anchored at the parameters after the previous
task. They differ in how the importance is estimated after each task:

  ewc    diagonal Fisher: mean over examples of the squared per-example
         gradient of log p(y|x) (jax.vmap of jax.grad), y sampled from the
         model (`true` Fisher) or the data label (`empirical` Fisher)
  mas    mean over examples of |d ||f(x)||^2 / d theta| (memory aware synapses)
  si     the path integral of -grad * step along training, over the squared
         distance travelled plus a damping (synaptic intelligence)
  rwalk  an EMA of squared gradients (online Fisher) plus a path score like SI's
         but divided by the Fisher's estimate of the loss change; each part
         scaled to a maximum of 1, scores averaged over tasks (Riemannian walk)
  scp    the squared gradient of random 1-D projections of the mean output
         distribution (sliced Cramer preservation)

Importances add up over tasks (the latest anchor only, as in online EWC);
RWalk's already carry the history and are replaced. A-GEM instead projects
each gradient so that it does not increase the loss on an episodic memory.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

MASKED_LOGIT = -1e9
REGULARIZERS = ('ewc', 'mas', 'si', 'rwalk', 'scp')
METHODS = ('finetune', 'multitask', *REGULARIZERS, 'agem')


def masked_logits(apply_fn: Callable, params, batch):
  """Logits with the classes outside each example's task pushed to -1e9."""
  logits = apply_fn(params, batch['input'])
  return jnp.where(batch['class_mask'] > 0, logits, MASKED_LOGIT)


def quadratic_penalty(params, anchor, importance):
  """sum_k importance_k (params_k - anchor_k)^2: 0 at the anchor, quadratic near it."""
  return otu.tree_vdot(importance, jax.tree.map(jnp.square,
                                                otu.tree_sub(params, anchor)))


def agem_project(grads, memory_grads):
  """A-GEM: drops the part of `grads` against `memory_grads` when they conflict.

  The result has a non-negative dot product with `memory_grads`, and equals
  `grads` when that dot product already was.
  """
  dot = otu.tree_vdot(grads, memory_grads)
  scale = jnp.where(dot < 0, dot / (otu.tree_vdot(memory_grads, memory_grads)
                                    + 1e-12), 0.0)
  return otu.tree_add_scale(grads, -scale, memory_grads)


def _masked_sum(per_example, mask):
  """sum_i mask_i per_example_i, leaf by leaf ([B, ...] -> [...])."""
  return jax.tree.map(lambda x: jnp.tensordot(mask, x, axes=1), per_example)


def fisher_diagonal(apply_fn: Callable, params, batch, key=None,
                    chunk_size: int = 16):
  """Sum over the batch of squared per-example gradients of log p(y|x).

  With `key`, y is sampled from the model's own prediction (the Fisher); with
  key=None it is the data label (the empirical Fisher). Padding examples
  (batch['mask'] == 0) count for nothing. Divide by the example count.
  Per-example gradients are taken `chunk_size` at a time (vmap inside a
  scan), so that they stay in cache instead of filling memory.
  """
  def log_likelihood(params, example, label):
    one = jax.tree.map(lambda x: x[None], example)
    logits = masked_logits(apply_fn, params, one)[0]
    return jax.nn.log_softmax(logits)[label]

  labels = batch['label']
  if key is not None:
    labels = jax.random.categorical(
        key, jax.lax.stop_gradient(masked_logits(apply_fn, params, batch)))
  size = labels.shape[0]
  chunk = min(chunk_size, size)
  padding = -size % chunk
  chunks = jax.tree.map(
      lambda x: jnp.pad(x, [(0, padding)] + [(0, 0)] * (x.ndim - 1)).reshape(
          (-1, chunk) + x.shape[1:]),
      {'input': batch['input'], 'class_mask': batch['class_mask'],
       'label': labels, 'mask': batch['mask']})
  per_example_grads = jax.vmap(jax.grad(log_likelihood), in_axes=(None, 0, 0))

  def add_chunk(total, part):
    grads = per_example_grads(
        params, {'input': part['input'], 'class_mask': part['class_mask']},
        part['label'])
    squares = _masked_sum(jax.tree.map(jnp.square, grads), part['mask'])
    return otu.tree_add(total, squares), None

  total, _ = jax.lax.scan(add_chunk, otu.tree_zeros_like(params), chunks)
  return total


def mas_importance(apply_fn: Callable, params, batch):
  """Sum over the batch of |d ||f(x)||^2 / d theta|, per example as in the MAS paper."""
  def squared_norm(params, x):
    return jnp.sum(apply_fn(params, x[None]) ** 2)

  grads = jax.vmap(jax.grad(squared_norm), in_axes=(None, 0))(
      params, batch['input'])
  return _masked_sum(jax.tree.map(jnp.abs, grads), batch['mask'])


def scp_importance(apply_fn: Callable, params, batch, key,
                   num_projections: int):
  """Batch size x mean over projections xi of (d <xi, mean softmax> / d theta)^2.

  The mean output distribution is over the batch's real examples; the
  directions xi are uniform on the unit sphere (the sliced Cramer distance's
  slices). The Jacobian of the mean output is taken once (one backward pass
  per class) and every slice's gradient read off it, so many slices cost
  little. Summing over batches and dividing by the example count gives a
  batch-size-weighted average, as for the other estimators.
  """
  mask = batch['mask']
  count = jnp.maximum(jnp.sum(mask), 1.0)

  def mean_output(params):
    probs = jax.nn.softmax(masked_logits(apply_fn, params, batch))
    return mask @ probs / count

  jacobian = jax.jacrev(mean_output)(params)  # leaves [classes, *shape]
  directions = jax.random.normal(key, (num_projections,
                                       batch['class_mask'].shape[-1]))
  directions /= jnp.linalg.norm(directions, axis=-1, keepdims=True)
  return jax.tree.map(
      lambda j: count * jnp.mean(
          jnp.tensordot(directions, j, axes=1) ** 2, axis=0), jacobian)


def si_importance(path, start, end, damping: float):
  """SI's Omega for one task: max(path, 0) / ((end - start)^2 + damping)."""
  return jax.tree.map(lambda w, a, b: jax.nn.relu(w) / ((b - a) ** 2 + damping),
                      path, start, end)


def scale_to_unit_max(tree):
  """Divides by the largest entry over the whole tree (RWalk's normalization)."""
  top = jnp.maximum(otu.tree_max(tree), 1e-12)
  return jax.tree.map(lambda x: x / top, tree)


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
