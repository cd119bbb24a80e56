"""A global explanation: a small decision tree that mimics the network.

The lecture's "explain the network with a tree that stays small": fit
scikit-learn's `DecisionTreeClassifier` to the network's *predicted* classes
on training images (the pixels are the features), then measure on the test
images its fidelity (agreement with the network) and its accuracy (against
the labels), one tree per maximum depth. A shallow tree is readable but
unfaithful; a deep one mimics the network better and is no longer small.
"""

import dataclasses

import numpy as np
from sklearn import tree


@dataclasses.dataclass
class Surrogates:
  depths: list[int]
  fidelity: list[float]  # test agreement with the network, per depth
  accuracy: list[float]  # test accuracy against the labels, per depth
  leaves: list[int]
  importances: np.ndarray  # the deepest tree's pixel importances [H, W]
  chance_fidelity: float  # a tree that always answers the network's mode

  @property
  def metrics(self) -> dict[str, float]:
    metrics = {'surrogate/chance_fidelity': self.chance_fidelity}
    for depth, fidelity, accuracy, leaves in zip(
        self.depths, self.fidelity, self.accuracy, self.leaves):
      metrics[f'surrogate/depth_{depth}/fidelity'] = fidelity
      metrics[f'surrogate/depth_{depth}/accuracy'] = accuracy
      metrics[f'surrogate/depth_{depth}/leaves'] = float(leaves)
    return metrics


def fit_trees(train_images: np.ndarray, train_predicted: np.ndarray,
              test_images: np.ndarray, test_predicted: np.ndarray,
              test_labels: np.ndarray, depths, seed: int) -> Surrogates:
  """One tree per depth in `depths`, fitted to the network's predictions."""
  features = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)
  x_train, x_test = features(train_images), features(test_images)
  fidelity, accuracy, leaves = [], [], []
  for depth in depths:
    fitted = tree.DecisionTreeClassifier(max_depth=depth, random_state=seed)
    fitted.fit(x_train, train_predicted)
    predicted = fitted.predict(x_test)
    fidelity.append(float(np.mean(predicted == test_predicted)))
    accuracy.append(float(np.mean(predicted == test_labels)))
    leaves.append(int(fitted.get_n_leaves()))
  importances = fitted.feature_importances_.reshape(
      test_images.shape[1:]).sum(axis=-1)
  chance = float(np.bincount(test_predicted).max() / len(test_predicted))
  return Surrogates(list(depths), fidelity, accuracy, leaves, importances,
                    chance)
