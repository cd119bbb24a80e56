"""What a user sees: reconstructions, decoder samples, the latent plane, ROC curves."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from sklearn import decomposition  # pylint: disable=wrong-import-position
from sklearn import metrics as sk_metrics  # pylint: disable=wrong-import-position

from lib import plots  # pylint: disable=wrong-import-position


def reconstructions(images: np.ndarray, reconstructed: np.ndarray, path: str,
                    title: str):
  """Inputs on the first row, their reconstructions on the second."""
  columns = len(images)
  plots.image_grid(np.concatenate([images, reconstructed]), path,
                   columns=columns, title=title)


def latent_plane(features: np.ndarray, labels: np.ndarray, path: str,
                 title: str):
  """The codes of the test split in 2-D (PCA beyond two), coloured by class."""
  features = features.reshape(len(features), -1)
  if features.shape[1] > 2:
    features = decomposition.PCA(2, random_state=0).fit_transform(features)
  fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
  points = ax.scatter(features[:, 0], features[:, 1], c=labels, cmap='tab10',
                      s=4, alpha=0.7)
  fig.colorbar(points, ax=ax, label='class')
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  plots.save_figure(fig, path)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str,
               title: str):
  """One ROC curve per named (scores, anomalous) pair."""
  fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
  for name, (scores, anomalous) in curves.items():
    fpr, tpr, _ = sk_metrics.roc_curve(anomalous, scores)
    auc = sk_metrics.auc(fpr, tpr)
    ax.plot(fpr, tpr, label=f'{name} ({auc:.3f})', linewidth=1)
  ax.plot([0, 1], [0, 1], 'k:', linewidth=0.8)
  ax.set_xlabel('false positive rate')
  ax.set_ylabel('true positive rate')
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=6)
  fig.tight_layout()
  plots.save_figure(fig, path)
