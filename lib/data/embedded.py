"""Small real data sets bundled with scikit-learn (offline)."""

import numpy as np
from sklearn import datasets

DIABETES_FEATURE_NAMES = ('age', 'sex', 'bmi', 'bp', 's1', 's2', 's3', 's4',
                          's5', 's6')


def load_digits() -> dict[str, np.ndarray]:
  """1797 8x8 digits: 'image' float32 [N, 8, 8, 1] in [0, 1], 'label' int32."""
  digits = datasets.load_digits()
  return {
      'image': (digits.images / 16.0).astype(np.float32)[..., None],
      'label': digits.target.astype(np.int32),
  }


def load_diabetes() -> dict[str, np.ndarray]:
  """442 patients: raw 'features' float32 [N, 10], raw 'target' float32 [N].

  Columns are `DIABETES_FEATURE_NAMES`; standardize them before training
  (see `lib.data.tabular.standardize`).
  """
  diabetes = datasets.load_diabetes(scaled=False)
  return {
      'features': diabetes.data.astype(np.float32),
      'target': diabetes.target.astype(np.float32),
  }
