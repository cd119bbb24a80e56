"""Ours against scikit-learn's ensemble estimators on the same split of a tabular set.

Every method runs three ways: ours with scikit-learn's trees as the learner,
scikit-learn's own estimator (same learner settings), and ours with our JAX
networks as the learner. Features are standardized on the training part.
"""

import inspect
import time

import numpy as np
from sklearn import datasets
from sklearn import ensemble as sk_ensemble
from sklearn import linear_model
from sklearn import model_selection
from sklearn import neighbors
from sklearn import tree

from lib import report
from projects.ensemble import classic
from projects.ensemble import weak_learners

TABULAR = {'breast_cancer': datasets.load_breast_cancer,
           'wine': datasets.load_wine, 'digits': datasets.load_digits}
METHODS = ('single_tree', 'bagging', 'random_forest', 'adaboost',
           'gradient_boosting', 'stacking')


def load_split(name: str, test_fraction: float, seed: int):
  """(x_train, y_train, x_test, y_test): a stratified split, standardized."""
  data = TABULAR[name]()
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
      data.data.astype(np.float64), data.target.astype(np.int64),
      test_size=test_fraction, random_state=seed, stratify=data.target)
  mean, std = x_train.mean(0), x_train.std(0) + 1e-8
  return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def _adaboost_reference(learner, num_estimators, seed):
  kwargs = dict(n_estimators=num_estimators, random_state=seed)
  # scikit-learn < 1.6 defaulted to SAMME.R; later versions have only SAMME.
  parameters = inspect.signature(sk_ensemble.AdaBoostClassifier).parameters
  if 'algorithm' in parameters:
    kwargs['algorithm'] = 'SAMME'
  return sk_ensemble.AdaBoostClassifier(learner, **kwargs)


def _stacking_bases(seed):
  return [tree.DecisionTreeClassifier(max_depth=8, random_state=seed),
          neighbors.KNeighborsClassifier(5),
          linear_model.LogisticRegression(max_iter=2000)]


def make_methods(config, num_classes: int, seed: int) -> dict:
  """{method: (ours with trees, scikit-learn's, ours with networks or None)}."""
  t = config.trees
  n = t.num_estimators

  def net(s):
    return weak_learners.NetworkClassifier(
        s, hidden=tuple(t.network_hidden), steps=t.network_steps,
        num_classes=num_classes)

  def net_regressor(s):
    return weak_learners.NetworkRegressor(s, hidden=tuple(t.network_hidden),
                                          steps=t.network_steps)

  def full_tree(s):
    return tree.DecisionTreeClassifier(random_state=s)

  def forest_tree(s):
    return tree.DecisionTreeClassifier(max_features='sqrt', random_state=s)

  def boost_tree(s):
    return tree.DecisionTreeClassifier(max_depth=t.adaboost_depth,
                                       random_state=s)

  def boost_regressor(s):
    return tree.DecisionTreeRegressor(max_depth=t.boosting_depth,
                                      random_state=s)

  def base(i):
    return lambda s: _stacking_bases(s)[i]

  final = lambda s: linear_model.LogisticRegression(max_iter=2000)
  ours_bases = [base(0), base(1), base(2)]
  return {
      'single_tree': (full_tree(seed), tree.DecisionTreeClassifier(
          random_state=seed), net(seed)),
      'bagging': (classic.Bagging(full_tree, n, seed=seed),
                  sk_ensemble.BaggingClassifier(
                      tree.DecisionTreeClassifier(), n_estimators=n,
                      oob_score=True, random_state=seed),
                  classic.Bagging(net, t.network_estimators, seed=seed)),
      'random_forest': (classic.Bagging(forest_tree, n, seed=seed),
                        sk_ensemble.RandomForestClassifier(
                            n, oob_score=True, random_state=seed), None),
      'adaboost': (classic.AdaBoost(boost_tree, n, seed=seed),
                   _adaboost_reference(tree.DecisionTreeClassifier(
                       max_depth=t.adaboost_depth), n, seed),
                   classic.AdaBoost(net, t.network_estimators, seed=seed)),
      'gradient_boosting': (
          classic.GradientBoosting(boost_regressor, t.boosting_estimators,
                                   t.boosting_learning_rate, seed=seed),
          sk_ensemble.GradientBoostingClassifier(
              n_estimators=t.boosting_estimators,
              learning_rate=t.boosting_learning_rate,
              max_depth=t.boosting_depth, random_state=seed),
          classic.GradientBoosting(net_regressor, t.network_estimators,
                                   t.network_boosting_learning_rate,
                                   seed=seed)),
      'stacking': (classic.Stacking(ours_bases, final, seed=seed),
                   sk_ensemble.StackingClassifier(
                       list(zip(('tree', 'knn', 'logistic'),
                                _stacking_bases(seed))),
                       linear_model.LogisticRegression(max_iter=2000), cv=5),
                   classic.Stacking([base(0), base(1), net], final,
                                    seed=seed)),
  }


def _accuracy(model, x, y) -> float:
  return float(np.mean(np.asarray(model.predict(x)) == y))


def compare(config) -> list[dict]:
  """One row per data set and method: test accuracies (and OOB ones), seconds."""
  t = config.trees
  rows = []
  for name in t.datasets:
    x_train, y_train, x_test, y_test = load_split(name, t.test_fraction,
                                                  config.seed)
    num_classes = int(y_train.max()) + 1
    for method, models in make_methods(config, num_classes,
                                       config.seed).items():
      if method not in t.methods:
        continue
      row = {'data': name, 'method': method}
      for column, model in zip(('ours', 'sklearn', 'ours_network'), models):
        if model is None or (column == 'ours_network' and not t.networks):
          continue
        started = time.perf_counter()
        model.fit(x_train, y_train)
        row[f'{column}_seconds'] = time.perf_counter() - started
        row[column] = _accuracy(model, x_test, y_test)
        oob = getattr(model, 'oob_score_', None)
        if oob is not None:
          row[f'{column}_oob'] = float(oob)
      rows.append(row)
  return rows


def summary_entries(rows) -> dict:
  return {f'trees/{r["data"]}/{r["method"]}/{column}': r[column]
          for r in rows for column in ('ours', 'sklearn', 'ours_network')
          if column in r}


def markdown(rows) -> str:
  return report.markdown_table(rows, {
      'data': 'data', 'method': 'method',
      'ours': 'ours (sklearn trees) test acc', 'sklearn': 'sklearn test acc',
      'ours_network': 'ours (JAX networks) test acc',
      'ours_oob': 'ours OOB acc', 'sklearn_oob': 'sklearn OOB acc',
      'ours_seconds': 'ours s', 'sklearn_seconds': 'sklearn s',
      'ours_network_seconds': 'networks s'}, digits=4)
