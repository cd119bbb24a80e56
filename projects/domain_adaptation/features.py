"""The features of both domains' test images in 2-D (PCA or t-SNE), per method.

Adaptation should mix the domains while keeping the classes apart.
"""

import jax
import numpy as np

from lib import loop
from lib import plots
from lib import predict
from lib.data import splits
from projects.domain_adaptation import dann


def make_embedder(model: dann.DANN, mesh) -> predict.Predictor:
  """A predictor of {'features', 'label'} from a (params, model_state) pair."""

  def embed(variables, batch, key):
    del key
    params, model_state = variables
    features = model.apply({'params': params, **model_state}, batch['image'],
                           method=dann.DANN.embed)
    return {'features': features, 'label': batch['label']}

  return predict.Predictor(embed, mesh)


def embed_test_sets(embedder: predict.Predictor, state, test_sets: dict,
                    examples: int, batch_size: int) -> dict:
  """{domain: {'features', 'label'}} of about `examples` images per domain.

  `test_sets` are whole; every process embeds the first images of its part
  and gets everyone's (a sharded computation: all processes must call this).
  """
  parts = {domain: splits.shard_for_process(data)
           for domain, data in test_sets.items()}
  count = min(-(-examples // jax.process_count()),
              *(len(data['label']) for data in parts.values()))
  return {domain: embedder(
      (state.params, state.model_state),
      {'image': data['image'][:count], 'label': data['label'][:count]},
      batch_size, all_processes=True) for domain, data in parts.items()}


def _reduce(features: np.ndarray, method: str) -> np.ndarray:
  from sklearn import decomposition  # pylint: disable=g-import-not-at-top
  from sklearn import manifold  # pylint: disable=g-import-not-at-top
  if method == 'pca':
    return decomposition.PCA(2).fit_transform(features)
  return manifold.TSNE(2, init='pca', random_state=0).fit_transform(features)


def plot_features(embedded: dict, method: str, path: str):
  """One column per network of `embedded` ({name: embed_test_sets(...)}).

  Top row coloured by domain, bottom row by class (circles source, crosses
  target). Draws on the chief only.
  """
  if not loop.is_chief():
    return
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  columns = len(embedded)
  fig, axes = plt.subplots(2, columns, figsize=(4.5 * columns, 8.5), dpi=110,
                           squeeze=False)
  for column, (name, by_domain) in enumerate(embedded.items()):
    points = _reduce(np.concatenate(
        [out['features'] for out in by_domain.values()]), method)
    ends = np.cumsum([len(out['label']) for out in by_domain.values()])
    top, bottom = axes[0, column], axes[1, column]
    for (domain, out), xy, colour, marker in zip(
        by_domain.items(), np.split(points, ends[:-1]), ('C0', 'C3'),
        ('o', 'x')):
      top.scatter(xy[:, 0], xy[:, 1], s=5, alpha=0.5, c=colour, label=domain)
      bottom.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, marker=marker,
                     c=out['label'], cmap='tab10', vmin=0, vmax=9)
    top.set_title(f'{name}: by domain')
    bottom.set_title(f'{name}: by class (o source, x target)')
    top.legend(markerscale=3)
  fig.suptitle(f'{method.upper()} of the features')
  fig.tight_layout()
  plots.save_figure(fig, path)
