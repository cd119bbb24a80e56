"""Feature selection and the closed-form linear baseline, in plain numpy."""

from typing import Sequence

import numpy as np

from lib.errors import ConfigError


def pearson_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Pearson correlation of each column of `x` [N, D] with `y` [N]; 0 for constant columns."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  xc = x - x.mean(axis=0)
  yc = y - y.mean()
  scale = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
  covariance = xc.T @ yc
  return np.divide(covariance, scale, out=np.zeros_like(covariance),
                   where=scale > 0)


def top_k_by_correlation(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
  """Indices of the `k` columns with the largest |Pearson r|, strongest first."""
  if not 1 <= k <= x.shape[1]:
    raise ConfigError(f'config.data.num_features={k} must lie in '
                      f'[1, {x.shape[1]}] (the number of feature columns)')
  # A stable sort keeps ties in column order, so the choice is deterministic.
  return np.argsort(-np.abs(pearson_r(x, y)), kind='stable')[:k]


def indices_of(names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
  """Positions of the `wanted` column names in `names`, or a ConfigError naming the unknown ones."""
  position = {name: i for i, name in enumerate(names)}
  unknown = [name for name in wanted if name not in position]
  if unknown:
    raise ConfigError(f'config.data.feature_selection names unknown columns '
                      f'{unknown}; the feature columns are {list(names)}')
  return np.array([position[name] for name in wanted], np.int64)


def select_features(train_x: np.ndarray, train_y: np.ndarray,
                    names: Sequence[str], selection: str,
                    num_features: int) -> np.ndarray:
  """Column indices to keep, decided from the training split only.

  Args:
    train_x: [N, D] training features.
    train_y: [N] training targets.
    names: the D column names.
    selection: 'all', 'correlation' (the `num_features` columns with the
      largest |Pearson r| with the target) or comma-separated column names.
    num_features: k for 'correlation'.
  """
  if selection == 'all':
    return np.arange(train_x.shape[1])
  if selection == 'correlation':
    return top_k_by_correlation(train_x, train_y, num_features)
  wanted = [name.strip() for name in selection.split(',') if name.strip()]
  if not wanted:
    raise ConfigError("config.data.feature_selection is empty; use 'all', "
                      "'correlation' or comma-separated column names")
  return indices_of(names, wanted)


def least_squares_mse(train_x: np.ndarray, train_y: np.ndarray,
                      val_x: np.ndarray, val_y: np.ndarray) -> float:
  """Validation MSE of the least-squares linear fit (with bias) to the training split."""

  def with_bias(x):
    x = np.asarray(x, np.float64)
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)

  # lstsq returns the minimum-norm solution when columns are collinear
  # (e.g. one-hot states plus the bias).
  weights, *_ = np.linalg.lstsq(with_bias(train_x),
                                np.asarray(train_y, np.float64), rcond=None)
  residual = with_bias(val_x) @ weights - np.asarray(val_y, np.float64)
  return float(np.mean(residual**2))
