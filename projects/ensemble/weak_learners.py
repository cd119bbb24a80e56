"""Our JAX networks as weak learners, with scikit-learn's fit/predict interface.

A small MLP (lib.models.MLP) trained full-batch with Adam for a fixed number
of steps, the whole fit one jitted `lax.scan`, compiled once per data shape
(every bootstrap resample of a set has the same shape, so a bagged or boosted
ensemble compiles once). `sample_weight` weights each example's loss, which
is what AdaBoost needs from its learners.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lib import models


@functools.lru_cache(maxsize=None)
def _fitter(hidden: tuple, num_outputs: int, steps: int, learning_rate: float,
            regression: bool):
  model = models.MLP(hidden, num_outputs=num_outputs)
  tx = optax.adam(learning_rate)

  def loss(params, x, targets, weights):
    outputs = model.apply({'params': params}, x)
    if regression:
      per_example = jnp.square(outputs[:, 0] - targets)
    else:
      per_example = optax.softmax_cross_entropy_with_integer_labels(
          outputs, targets)
    return jnp.sum(weights * per_example) / jnp.sum(weights)

  @jax.jit
  def fit(key, x, targets, weights):
    params = model.init(key, x[:1])['params']

    def step(carry, _):
      params, opt_state = carry
      grads = jax.grad(loss)(params, x, targets, weights)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None,
                                  length=steps)
    return params

  predict = jax.jit(lambda params, x: model.apply({'params': params}, x))
  return fit, predict


class _Network:

  def __init__(self, seed: int = 0, hidden=(32,), steps: int = 200,
               learning_rate: float = 1e-2, num_classes: int = 0):
    self.seed, self.hidden, self.num_classes = seed, tuple(hidden), num_classes
    self.steps, self.learning_rate = steps, learning_rate

  def _fit(self, x, targets, sample_weight, num_outputs, regression):
    weights = (np.ones(len(x)) if sample_weight is None
               else np.asarray(sample_weight))
    self._fit_fn, self._predict_fn = _fitter(
        self.hidden, num_outputs, self.steps, self.learning_rate, regression)
    self.params_ = self._fit_fn(jax.random.key(self.seed),
                                jnp.asarray(x, jnp.float32),
                                jnp.asarray(targets),
                                jnp.asarray(weights, jnp.float32))
    return self

  def _outputs(self, x):
    return np.asarray(self._predict_fn(self.params_,
                                       jnp.asarray(x, jnp.float32)))


class NetworkClassifier(_Network):
  """Softmax MLP; `classes_` are the labels seen in fit (a resample may miss some).

  `num_classes` (0: the largest label + 1) fixes the outputs, so that every
  fit on one data set shares a compilation.
  """

  def fit(self, x, y, sample_weight=None):
    self.classes_ = np.unique(y)
    return self._fit(x, np.asarray(y, np.int32), sample_weight,
                     self.num_classes or int(y.max()) + 1, regression=False)

  def predict_proba(self, x):
    return np.asarray(jax.nn.softmax(self._outputs(x)))[:, self.classes_]

  def predict(self, x):
    return self.classes_[self.predict_proba(x).argmax(-1)]


class NetworkRegressor(_Network):
  """MLP with one output, squared error."""

  def fit(self, x, y, sample_weight=None):
    return self._fit(x, np.asarray(y, np.float32), sample_weight, 1,
                     regression=True)

  def predict(self, x):
    return self._outputs(x)[:, 0]
