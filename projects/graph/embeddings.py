"""Pictures of learned node embeddings: PCA (and t-SNE) coloured by class."""

import numpy as np

from lib import plots


def pca(points: np.ndarray, dims: int = 2) -> np.ndarray:
  """The projection of centred `points` on their top principal axes."""
  centred = points - points.mean(0)
  _, _, axes = np.linalg.svd(centred, full_matrices=False)
  return centred @ axes[:dims].T


def plot_embeddings(points: np.ndarray, labels: np.ndarray, path: str, *,
                    title: str = '', tsne: bool = False, seed: int = 0):
  """A scatter of the nodes in 2-D, one colour per class, saved as a PNG."""
  panels = {'PCA': pca(points)}
  if tsne:
    from sklearn.manifold import TSNE  # pylint: disable=g-import-not-at-top
    panels['t-SNE'] = TSNE(init='pca', random_state=seed).fit_transform(points)
  fig, axes = plots.plt.subplots(1, len(panels), dpi=120, squeeze=False,
                                 figsize=(5 * len(panels), 4.5))
  for ax, (name, xy) in zip(axes[0], panels.items()):
    ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap='tab10', s=4,
               vmin=0, vmax=9)
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  plots.save_figure(fig, path)
