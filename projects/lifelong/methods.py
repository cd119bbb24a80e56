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
RWalk's already carry the history and are replaced. The others:

  agem     projects each gradient so that it does not increase the loss on
           an episodic memory of every earlier task (one averaged gradient)
  gem      one gradient per earlier task's memory; a conflicting gradient is
           projected by solving GEM's dual quadratic program exactly
  lwf      distils the previous model's softened outputs on the new inputs
           (learning without forgetting; no old data kept)
  packnet  prunes each task's weights by magnitude after training it and
           freezes the kept ones; task t is evaluated on the weights of tasks
           0..t (`owners` records each weight's task)
  pnn, net2net  grow the network (growth.py): a new column per task, or wider
           hidden layers before each task
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

MASKED_LOGIT = -1e9
REGULARIZERS = ('ewc', 'mas', 'si', 'rwalk', 'scp')
WITH_STRENGTH = (*REGULARIZERS, 'lwf')  # a config.<method>.strength field
MEMORY_METHODS = ('agem', 'gem')  # keep an episodic memory of earlier tasks
GROWING = ('pnn', 'net2net')  # change the model's architecture (growth.py)
METHODS = ('finetune', 'multitask', *REGULARIZERS, 'agem', 'gem', 'lwf',
           'packnet', *GROWING)
FREE = jnp.iinfo(jnp.int32).max  # PackNet: the owner of a weight no task holds
MAX_GEM_CONSTRAINTS = 10  # earlier tasks; GEM's exact QP tries 2^10 supports


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


def nonnegative_qp(quadratic, linear, allowed):
  """argmin over w >= 0 (w_k = 0 where not `allowed`) of 1/2 w^T Q w + c^T w.

  Exact for a positive definite [K, K] Q: the minimizer w* solves
  Q_SS w_S = -c_S on its support S, so it is the candidate of least objective
  among the nonnegative solutions over all 2^K supports (one batched solve
  each; K <= MAX_GEM_CONSTRAINTS keeps that small).
  """
  size = linear.shape[0]
  supports = (jnp.arange(2 ** size)[:, None] >> jnp.arange(size)) & 1 > 0

  def candidate(support):
    both = support[:, None] & support[None, :]
    system = jnp.where(both, quadratic, jnp.eye(size))  # w = 0 off the support
    return jnp.linalg.solve(system, jnp.where(support, -linear, 0.0))

  candidates = jax.vmap(candidate)(supports)
  objective = (0.5 * jnp.einsum('nk,kj,nj->n', candidates, quadratic,
                                candidates) + candidates @ linear)
  feasible = jnp.all(candidates >= 0, axis=1) & ~jnp.any(
      supports & ~allowed, axis=1)
  return candidates[jnp.argmin(jnp.where(feasible, objective, jnp.inf))]


def gem_project(grads, task_grads, valid, margin: float = 0.0):
  """GEM: `grads` projected so that no earlier task's memory loss increases.

  `task_grads` stacks one gradient per memory slot along a leading axis of
  size K, `valid` [K] marks the earlier tasks' slots. When some dot product
  <g, g_k> is negative, solves the paper's dual QP (with its code's margin)
     min_v 1/2 v^T G G^T v + g^T G^T v  subject to  v >= margin
  and returns (G^T v + g, True); its dot product with every g_k is then >= 0.
  Otherwise returns (`grads`, False).
  """
  def stacked_dot(a, b):  # [K, ...] x [K, ...] -> [K, K], summed over leaves
    return sum(jnp.tensordot(x, y, axes=(tuple(range(1, x.ndim)),) * 2)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  gram = stacked_dot(task_grads, task_grads)
  dots = sum(jnp.tensordot(x, y, axes=y.ndim) for x, y in zip(
      jax.tree.leaves(task_grads), jax.tree.leaves(grads)))
  both = valid[:, None] & valid[None, :]
  # A relative ridge keeps Q positive definite when gradients coincide.
  ridge = 1e-6 * jnp.max(jnp.where(valid, jnp.diag(gram), 0.0)) + 1e-20
  quadratic = jnp.where(both, gram, 0.0) + ridge * jnp.eye(valid.shape[0])
  floor = margin * valid  # v = w + floor, w >= 0
  excess = nonnegative_qp(quadratic, quadratic @ floor + jnp.where(
      valid, dots, 0.0), valid)
  weights = jnp.where(valid, excess + floor, 0.0)
  projected = jax.tree.map(lambda g, gk: g + jnp.tensordot(weights, gk, 1),
                           grads, task_grads)
  violated = jnp.any(valid & (dots < 0))
  return jax.tree.map(lambda p, g: jnp.where(violated, p, g), projected,
                      grads), violated


def distillation_loss(apply_fn: Callable, params, old_params, inputs,
                      temperature: float):
  """LwF: KL(old || new) of the outputs softened by `temperature`, batch mean.

  The paper's cross-entropy less the old outputs' entropy (a constant): the
  same gradients, and 0 exactly when the model's outputs are the old ones.
  """
  old = jax.nn.log_softmax(
      jax.lax.stop_gradient(apply_fn(old_params, inputs)) / temperature)
  new = jax.nn.log_softmax(apply_fn(params, inputs) / temperature)
  return jnp.mean(jnp.sum(jnp.exp(old) * (old - new), axis=-1))


def packnet_prune(params, owners, task, fraction: float):
  """PackNet: gives task `task` the weights it keeps; returns (params, owners).

  In every kernel (ndim >= 2), the `fraction` of the free weights smallest in
  magnitude are pruned (set to 0, left free for later tasks) and the rest
  are the task's; free biases all go to the task (so to task 0).
  """
  def layer(weight, owner):
    free = owner == FREE
    share = fraction if weight.ndim >= 2 else 0.0
    count = jnp.floor(share * jnp.sum(free)).astype(jnp.int32)
    scores = jnp.where(free, jnp.abs(weight), jnp.inf).ravel()
    rank = jnp.argsort(jnp.argsort(scores)).reshape(weight.shape)
    pruned = free & (rank < count)
    return (jnp.where(pruned, 0.0, weight),
            jnp.where(free & ~pruned, task, owner))

  pairs = jax.tree.map(layer, params, owners)
  is_pair = lambda x: isinstance(x, tuple)
  return (jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair),
          jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair))


def packnet_task_params(params, owners, task):
  """The weights task `task` uses: those of tasks 0..task, and the free ones.

  Free weights are 0 once pruned; before the first pruning they are the
  untrained model's, so the untrained model is evaluated whole.
  """
  later = jax.tree.map(lambda o: (o > task) & (o != FREE), owners)
  return jax.tree.map(lambda w, drop: jnp.where(drop, 0.0, w), params, later)


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
