"""MAML, first-order MAML, ANIL, Reptile and Meta-SGD as pure functions.

A task is a dict of arrays {'support_input', 'support_label', 'query_input',
'query_label'}; a task batch has a leading task axis on each. The meta
parameters are {'net': {'body': ..., 'head': ...}}, plus, for Meta-SGD, the
learned per-parameter inner learning rates {'inner_lr': same tree as 'net'}.

The inner loop is a `lax.scan` of plain gradient descent; the meta-gradient of
MAML and Meta-SGD differentiates through it (second order), first-order MAML
stops the inner gradients, ANIL adapts only the head on features computed once,
and Reptile's meta-"gradient" is the step from the meta parameters to the
adapted ones. Tasks are batched with `jax.vmap` (or `lax.map`).
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from projects.meta import models

METHODS = ('maml', 'fomaml', 'anil', 'reptile', 'metasgd')
LOSSES = ('mse', 'cross_entropy')
TASK_MAPS = ('vmap', 'map')


def task_loss(kind: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean loss over one set: MSE of [n, d] outputs or cross-entropy of logits."""
  if kind == 'mse':
    return jnp.mean(jnp.square(outputs - labels))
  return optax.softmax_cross_entropy_with_integer_labels(outputs, labels).mean()


def task_metrics(kind: str, outputs, labels) -> dict[str, jax.Array]:
  loss = task_loss(kind, outputs, labels)
  if kind == 'mse':
    return {'mse': loss}
  return {'loss': loss,
          'accuracy': jnp.mean(jnp.argmax(outputs, -1) == labels)}


def gradient_descent(loss_of, params, inner_lr, num_steps: int, *,
                     first_order: bool = False, observe: Callable | None = None):
  """`num_steps` steps of gradient descent on `loss_of` from `params`.

  `inner_lr` is a scalar or a tree like `params` (Meta-SGD). With
  `first_order` the inner gradients are constants to the outer derivative.
  Returns the adapted parameters and, if `observe` is given, observe(params)
  before every step and after the last, stacked ([num_steps + 1, ...]).
  """
  lrs = (inner_lr if isinstance(inner_lr, dict)
         else jax.tree.map(lambda _: inner_lr, params))

  def step(current, _):
    grads = jax.grad(loss_of)(current)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    seen = observe(current) if observe else None
    return jax.tree.map(lambda p, g, lr: p - lr * g, current, grads, lrs), seen

  adapted, seen = jax.lax.scan(step, params, None, length=num_steps)
  if observe is None:
    return adapted, None
  last = jax.tree.map(lambda x: x[None], observe(adapted))
  if num_steps == 0:
    return adapted, last
  return adapted, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), seen,
                               last)


@dataclasses.dataclass(frozen=True)
class MetaLearner:
  """One meta-learning method on one network, as pure functions."""
  learner: models.Learner
  method: str
  loss: str  # 'mse' | 'cross_entropy'
  inner_lr: float
  inner_steps: int
  task_map: str = 'vmap'

  def init(self, key, sample_input) -> dict:
    net = self.learner.init(key, sample_input)
    meta_params = {'net': net}
    if self.method == 'metasgd':
      meta_params['inner_lr'] = jax.tree.map(
          lambda p: jnp.full_like(p, self.inner_lr), net)
    return meta_params

  def _map_tasks(self, fn, tasks):
    if self.task_map == 'map':
      return jax.lax.map(lambda task: fn(task), tasks)
    return jax.vmap(fn)(tasks)

  def adapt_and_predict(self, meta_params, task, num_steps: int, *,
                        head_only: bool = False, trajectory: bool = False):
    """Adapts on the support set; the query outputs after `num_steps` steps.

    With `trajectory`, the query outputs before each step and after the last
    ([num_steps + 1, *outputs]). `head_only` adapts the head alone on the
    body's features computed once (ANIL, and the transfer baseline).
    """
    learner, net = self.learner, meta_params['net']
    lr = meta_params.get('inner_lr', self.inner_lr)
    support_x, support_y = task['support_input'], task['support_label']
    query_x = task['query_input']
    first_order = self.method == 'fomaml'
    if head_only or self.method == 'anil':
      support_f = learner.features(net['body'], support_x)
      query_f = learner.features(net['body'], query_x)
      head_lr = lr['head'] if isinstance(lr, dict) else lr
      predict = lambda head: learner.logits(head, query_f)
      head, seen = gradient_descent(
          lambda head: task_loss(self.loss, learner.logits(head, support_f),
                                 support_y),
          net['head'], head_lr, num_steps, first_order=first_order,
          observe=predict if trajectory else None)
      return seen if trajectory else predict(head)
    predict = lambda params: learner.apply(params, query_x)
    adapted, seen = gradient_descent(
        lambda params: task_loss(self.loss, learner.apply(params, support_x),
                                 support_y),
        net, lr, num_steps, first_order=first_order,
        observe=predict if trajectory else None)
    return seen if trajectory else predict(adapted)

  def meta_loss(self, meta_params, tasks):
    """Mean post-adaptation query loss over the task batch, and metrics."""

    def one_task(task):
      outputs = self.adapt_and_predict(meta_params, task, self.inner_steps)
      return task_metrics(self.loss, outputs, task['query_label'])

    metrics = jax.tree.map(jnp.mean, self._map_tasks(one_task, tasks))
    return metrics['mse' if self.loss == 'mse' else 'loss'], metrics

  def reptile_direction(self, meta_params, tasks):
    """Reptile's meta-gradient: net minus the mean of the adapted nets."""
    net = meta_params['net']

    def one_task(task):
      x = jnp.concatenate([task['support_input'], task['query_input']])
      y = jnp.concatenate([task['support_label'], task['query_label']])
      loss_of = lambda p: task_loss(self.loss, self.learner.apply(p, x), y)
      adapted, _ = gradient_descent(loss_of, net, self.inner_lr,
                                    self.inner_steps)
      return adapted, task_metrics(self.loss, self.learner.apply(adapted, x),
                                   y)

    adapted, metrics = self._map_tasks(one_task, tasks)
    direction = jax.tree.map(lambda p, a: p - a.mean(0), net, adapted)
    return {'net': direction}, jax.tree.map(jnp.mean, metrics)

  def meta_gradient(self, meta_params, tasks):
    """(metrics, gradient) of the meta-objective over a task batch."""
    if self.method == 'reptile':
      direction, metrics = self.reptile_direction(meta_params, tasks)
      return metrics, direction
    (_, metrics), grads = jax.value_and_grad(self.meta_loss, has_aux=True)(
        meta_params, tasks)
    return metrics, grads

  def evaluate(self, meta_params, tasks, num_steps: int, *,
               head_only: bool = False):
    """Per-task query metrics after 0..num_steps inner steps: {name: [T, S+1]}."""

    def one_task(task):
      outputs = self.adapt_and_predict(meta_params, task, num_steps,
                                       head_only=head_only, trajectory=True)
      return jax.vmap(lambda out: task_metrics(self.loss, out,
                                               task['query_label']))(outputs)

    return self._map_tasks(one_task, tasks)
