"""The methods side by side: results.md, k-NN curves and a PCA of features."""

import os

from etils import epath
import numpy as np

from lib import loop
from lib import metric_log
from lib import plots
from lib import report

COLUMNS = {'method': 'method', 'probe': 'linear probe', 'knn': 'k-NN',
           'std': 'feature std (>= threshold)', 'threshold': 'threshold',
           'finetune': 'fine-tune (fractions)', 'seconds': 'train time (s)'}


def results_table(metrics: dict, methods, fractions) -> str:
  rows = []
  for name in ('random', *methods):
    tuned = [metrics.get(f'{name}/finetune_{f:g}/accuracy') for f in fractions]
    rows.append({
        'method': name, 'probe': metrics[f'{name}/probe/accuracy'],
        'knn': metrics[f'{name}/knn/accuracy'],
        'std': metrics[f'{name}/feature_std'],
        'threshold': metrics[f'{name}/collapse_threshold'],
        'finetune': ' / '.join(f'{x:.3f}' for x in tuned if x is not None),
        'seconds': metrics.get(f'{name}/wall_seconds')})
  scratch = [metrics.get(f'scratch/finetune_{f:g}/accuracy') for f in fractions]
  if fractions:
    rows.append({'method': 'scratch (supervised only)',
                 'finetune': ' / '.join(f'{x:.3f}' for x in scratch)})
  return report.markdown_table(rows, COLUMNS)


def plot_pca(features: dict, labels: np.ndarray, path: str, title: str):
  """One panel per backbone: the 2-D PCA of its test features by class."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sklearn import decomposition  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(features), figsize=(3.6 * len(features), 3.6),
                           dpi=110, squeeze=False)
  for ax, (name, x) in zip(axes[0], features.items()):
    xy = decomposition.PCA(2).fit_transform(x)
    ax.scatter(xy[:, 0], xy[:, 1], s=4, c=labels, cmap='tab10', vmin=0,
               vmax=9, alpha=0.7)
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title)
  fig.tight_layout()
  plots.save_figure(fig, path)


def write_results(workdir: str, metrics: dict, config, data, embedder,
                  backbones: dict, examples: int = 1000):
  """results.md, and with config.plots knn_curves.png and features_pca.png.

  Embeds the test images on every process (a sharded computation); writes
  on the chief only.
  """
  fractions = tuple(config.finetune.fractions)
  table = results_table(metrics, config.methods, fractions)
  features = {}
  if config.plots:
    images = {'image': data.test['image'][:examples]}
    features = {name: np.asarray(embedder(variables, images, config.batch_size,
                                          all_processes=True)['features'])
                for name, variables in backbones.items()}
  if not loop.is_chief():
    return
  path = epath.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  (path / 'results.md').write_text(table)
  if not config.plots:
    return
  curves = {m: [(r['step'], r['knn_accuracy']) for r in
                metric_log.read_metrics(os.path.join(workdir, m))
                if r['split'] == 'val'] for m in config.methods}
  plots.plot_curves(curves, os.path.join(workdir, 'knn_curves.png'),
                    ylabel='val k-NN accuracy', title=config.project)
  plot_pca(features, data.test['label'][:examples],
           os.path.join(workdir, 'features_pca.png'),
           'PCA of frozen test features, by class')
