"""Bagging, random forests, AdaBoost (SAMME), gradient boosting and stacking.

Written once over any learner with scikit-learn's interface: a factory
`make_learner(seed)` returns a fresh, unfitted learner with
`fit(x, y, sample_weight=None)` and `predict_proba(x)` (classifiers; classes
0..K-1) or `predict(x)` (regressors, for gradient boosting). scikit-learn's
decision trees and `weak_learners.NetworkClassifier` / `NetworkRegressor`
both fit.
"""

from typing import Callable, Sequence

import numpy as np
from sklearn import model_selection

Factory = Callable[[int], object]


def bootstrap_indices(rng: np.random.Generator, num_examples: int,
                      num_estimators: int, max_samples: float = 1.0):
  """[E, round(max_samples * N)] indices drawn with replacement, one row per estimator."""
  size = max(1, int(round(max_samples * num_examples)))
  return rng.integers(0, num_examples, (num_estimators, size))


def out_of_bag_masks(indices: np.ndarray, num_examples: int) -> np.ndarray:
  """[E, N] bool: True where example n is in no draw of estimator e."""
  masks = np.ones((len(indices), num_examples), bool)
  masks[np.arange(len(indices))[:, None], indices] = False
  return masks


def _full_proba(learner, x, num_classes: int) -> np.ndarray:
  """predict_proba with a column for every class, also those a resample missed."""
  proba = learner.predict_proba(x)
  out = np.zeros((len(x), num_classes))
  out[:, np.asarray(learner.classes_, int)] = proba
  return out


class Bagging:
  """Bootstrap aggregating: each learner fits a resample; probabilities averaged.

  After `fit`, `oob_score_` is the accuracy of each training example's
  average over the learners that never saw it (examples every learner saw
  are left out), `oob_fraction_` the share of examples it covers.
  """

  def __init__(self, make_learner: Factory, num_estimators: int = 10,
               max_samples: float = 1.0, seed: int = 0):
    self.make_learner, self.num_estimators = make_learner, num_estimators
    self.max_samples, self.seed = max_samples, seed

  def fit(self, x, y):
    rng = np.random.default_rng(self.seed)
    self.num_classes_ = int(y.max()) + 1
    self.indices_ = bootstrap_indices(rng, len(x), self.num_estimators,
                                      self.max_samples)
    self.oob_masks_ = out_of_bag_masks(self.indices_, len(x))
    self.learners_ = []
    votes = np.zeros((len(x), self.num_classes_))
    for index, rows in zip(range(self.num_estimators), self.indices_):
      learner = self.make_learner(int(rng.integers(2**31)))
      learner.fit(x[rows], y[rows])
      self.learners_.append(learner)
      oob = self.oob_masks_[index]
      votes[oob] += _full_proba(learner, x[oob], self.num_classes_)
    covered = self.oob_masks_.any(0)
    self.oob_fraction_ = float(covered.mean())
    self.oob_score_ = float(np.mean(
        votes[covered].argmax(-1) == y[covered])) if covered.any() else np.nan
    return self

  def predict_proba(self, x):
    return np.mean([_full_proba(l, x, self.num_classes_)
                    for l in self.learners_], axis=0)

  def predict(self, x):
    return self.predict_proba(x).argmax(-1)


def samme_update(weights: np.ndarray, miss: np.ndarray, num_classes: int,
                 learning_rate: float = 1.0):
  """One SAMME round: (new normalized weights, learner weight alpha, error).

  error = sum w [miss] / sum w; alpha = lr (log((1 - error) / error) +
  log(K - 1)); misclassified examples' weights grow by exp(alpha). A learner
  no better than chance (error >= 1 - 1/K) gets alpha 0 and changes nothing.
  """
  weights = np.asarray(weights, np.float64)
  error = float(np.sum(weights * miss) / np.sum(weights))
  if error >= 1.0 - 1.0 / num_classes:
    return weights / weights.sum(), 0.0, error
  error = max(error, 1e-10)
  alpha = learning_rate * (np.log((1 - error) / error) +
                           np.log(num_classes - 1))
  weights = weights * np.exp(alpha * miss)
  return weights / weights.sum(), float(alpha), error


class AdaBoost:
  """AdaBoost's multi-class SAMME (Zhu et al. 2009), as sklearn's algorithm='SAMME'.

  Stops early when a learner fits the weighted data perfectly (it then
  decides alone, as sklearn does) or is no better than chance.
  """

  def __init__(self, make_learner: Factory, num_estimators: int = 50,
               learning_rate: float = 1.0, seed: int = 0):
    self.make_learner, self.num_estimators = make_learner, num_estimators
    self.learning_rate, self.seed = learning_rate, seed

  def fit(self, x, y):
    rng = np.random.default_rng(self.seed)
    self.num_classes_ = int(y.max()) + 1
    weights = np.full(len(x), 1.0 / len(x))
    self.learners_, self.alphas_, self.errors_ = [], [], []
    for _ in range(self.num_estimators):
      learner = self.make_learner(int(rng.integers(2**31)))
      learner.fit(x, y, sample_weight=weights * len(x))
      miss = _full_proba(learner, x, self.num_classes_).argmax(-1) != y
      weights, alpha, error = samme_update(weights, miss, self.num_classes_,
                                           self.learning_rate)
      if error <= 0 or not miss.any():
        self.learners_, self.alphas_ = [learner], [1.0]
        self.errors_.append(0.0)
        break
      if alpha == 0.0:
        if not self.learners_:
          raise ValueError('the first weak learner is no better than chance')
        break
      self.learners_.append(learner)
      self.alphas_.append(alpha)
      self.errors_.append(error)
    return self

  def decision_function(self, x):
    """sum_t alpha_t [h_t(x) = k] / sum_t alpha_t, [N, K]."""
    votes = np.zeros((len(x), self.num_classes_))
    for learner, alpha in zip(self.learners_, self.alphas_):
      votes[np.arange(len(x)),
            _full_proba(learner, x, self.num_classes_).argmax(-1)] += alpha
    return votes / np.sum(self.alphas_)

  def predict_proba(self, x):
    return self.decision_function(x)

  def predict(self, x):
    return self.decision_function(x).argmax(-1)


def _softmax(scores):
  scores = scores - scores.max(-1, keepdims=True)
  e = np.exp(scores)
  return e / e.sum(-1, keepdims=True)


class GradientBoosting:
  """Gradient boosting of the softmax cross-entropy with regression learners.

  Starts from the log class priors; stage t fits one regressor per class
  (K = 2: one on the logit, as sklearn) and adds `learning_rate` times its
  prediction. Each regressor takes a Newton step: it fits the working
  response z = r / h (r = y_k - p_k the negative gradient, h = p_k (1 - p_k)
  the Hessian's diagonal, |z| clipped at `max_response`) with sample weights
  h, scaled by (K - 1) / K for K > 2. For a tree that makes each leaf
  sum r / sum h, Friedman's leaf value that sklearn computes. `make_learner`
  builds regressors here.
  """

  def __init__(self, make_learner: Factory, num_estimators: int = 100,
               learning_rate: float = 0.1, max_response: float = 4.0,
               seed: int = 0):
    self.make_learner, self.num_estimators = make_learner, num_estimators
    self.learning_rate, self.seed = learning_rate, seed
    self.max_response = max_response

  def _scores(self, outputs):
    if self.num_classes_ == 2:  # one logit: class 1 against class 0
      return np.stack([np.zeros_like(outputs[:, 0]), outputs[:, 0]], -1)
    return outputs

  def fit(self, x, y):
    rng = np.random.default_rng(self.seed)
    self.num_classes_ = int(y.max()) + 1
    heads = 1 if self.num_classes_ == 2 else self.num_classes_
    prior = np.bincount(y, minlength=self.num_classes_) / len(y)
    log_prior = np.log(np.maximum(prior, 1e-12))
    self.initial_ = (log_prior[1:] - log_prior[:1] if heads == 1
                     else log_prior)
    outputs = np.tile(self.initial_, (len(x), 1))
    onehot = np.eye(self.num_classes_)[y]
    self.stages_ = []
    scale = 1.0 if heads == 1 else (heads - 1) / heads
    for _ in range(self.num_estimators):
      probs = _softmax(self._scores(outputs))
      residual = onehot - probs
      if heads == 1:
        residual, probs = residual[:, 1:], probs[:, 1:]
      hessian = np.maximum(probs * (1 - probs), 1e-12)
      response = np.clip(residual / hessian, -self.max_response,
                         self.max_response)
      stage = []
      for k in range(heads):
        learner = self.make_learner(int(rng.integers(2**31)))
        learner.fit(x, scale * response[:, k], sample_weight=hessian[:, k])
        outputs[:, k] += self.learning_rate * learner.predict(x)
        stage.append(learner)
      self.stages_.append(stage)
    return self

  def predict_proba(self, x):
    outputs = np.tile(self.initial_, (len(x), 1))
    for stage in self.stages_:
      for k, learner in enumerate(stage):
        outputs[:, k] += self.learning_rate * learner.predict(x)
    return _softmax(self._scores(outputs))

  def predict(self, x):
    return self.predict_proba(x).argmax(-1)


class Stacking:
  """Stacked generalization: a final learner on the base learners' out-of-fold probabilities.

  The base learners are refit on all the data for prediction, as sklearn's
  StackingClassifier does; folds are stratified.
  """

  def __init__(self, base_factories: Sequence[Factory], make_final: Factory,
               folds: int = 5, seed: int = 0):
    self.base_factories, self.make_final = list(base_factories), make_final
    self.folds, self.seed = folds, seed

  def _features(self, learners, x):
    return np.concatenate([_full_proba(l, x, self.num_classes_)
                           for l in learners], axis=-1)

  def fit(self, x, y):
    self.num_classes_ = int(y.max()) + 1
    folds = model_selection.StratifiedKFold(self.folds, shuffle=True,
                                            random_state=self.seed)
    meta = np.zeros((len(x), len(self.base_factories) * self.num_classes_))
    for train, held_out in folds.split(x, y):
      learners = [make(self.seed).fit(x[train], y[train])
                  for make in self.base_factories]
      meta[held_out] = self._features(learners, x[held_out])
    self.base_ = [make(self.seed).fit(x, y) for make in self.base_factories]
    self.final_ = self.make_final(self.seed).fit(meta, y)
    return self

  def predict_proba(self, x):
    return _full_proba(self.final_, self._features(self.base_, x),
                       self.num_classes_)

  def predict(self, x):
    return self.predict_proba(x).argmax(-1)
