"""Whole-split detection metrics and the classical detectors of the lecture notes."""

import numpy as np
from sklearn import ensemble
from sklearn import metrics as sk_metrics
from sklearn import preprocessing
from sklearn import svm

from lib import predict


def detection(scores: np.ndarray, anomalous: np.ndarray) -> dict[str, float]:
  """AUROC and AUPR (anomalies positive) of `scores`, over the whole split."""
  return {'auroc': predict.auroc(scores, anomalous),
          'aupr': float(sk_metrics.average_precision_score(anomalous, scores))}


def classical_scores(train: np.ndarray, test: np.ndarray, seed: int,
                     max_train: int) -> dict[str, np.ndarray]:
  """Anomaly scores (higher: more anomalous) of a one-class SVM (RBF, nu 0.1)
  and an isolation forest, both fitted on standardized normal features."""
  train, test = train.reshape(len(train), -1), test.reshape(len(test), -1)
  if max_train and len(train) > max_train:
    keep = np.random.default_rng(seed).permutation(len(train))[:max_train]
    train = train[np.sort(keep)]
  scaler = preprocessing.StandardScaler().fit(train)
  train, test = scaler.transform(train), scaler.transform(test)
  ocsvm = svm.OneClassSVM(nu=0.1, gamma='scale').fit(train)
  forest = ensemble.IsolationForest(n_estimators=100, random_state=seed,
                                    n_jobs=1).fit(train)
  return {'ocsvm': -ocsvm.decision_function(test),
          'iforest': -forest.score_samples(test)}


def mean_image_distance(train: np.ndarray, test: np.ndarray) -> np.ndarray:
  """The squared distance of each test image to the mean normal image."""
  mean = train.mean(0, keepdims=True)
  return ((test - mean)**2).reshape(len(test), -1).mean(1)
