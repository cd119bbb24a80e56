"""The run's files in WORKDIR, PNG figures and results.md (on the chief only).

  attribution_figures   attributions.png, deletion_curves.png,
                        insertion_curves.png
  filter_figures        filters.png, activations.png
  activation_maximization_figure   activation_maximization.png
  sanity_figures        sanity_check.png, sanity_maps.png
  surrogate_figure      surrogate.png
  write_results         results.md: a table of every method's metrics
"""

import os

from etils import epath
import ml_collections
import numpy as np

from lib import plots
from lib import report
from projects.explainable import explainer as explainer_lib
from projects.explainable import overlays
from projects.explainable import runner
from projects.explainable import surrogate

_SIGNED = set(explainer_lib.SIGNED_METHODS)


def attribution_figures(workdir: str, config: ml_collections.ConfigDict,
                        images: np.ndarray, row_labels: list[str],
                        attributions: runner.Attributions):
  """The maps of the first `config.num_images` images, and the mean curves."""
  shown = config.num_images
  overlays.attribution_grid(
      images[:shown], row_labels[:shown],
      {name: maps[:shown] for name, maps in attributions.maps.items()
       if name != 'random'}, _SIGNED,
      os.path.join(workdir, 'attributions.png'),
      title=f'{config.data.name}: target = {config.target}')
  fractions = np.linspace(0.0, 1.0, config.deletion.steps + 1)
  for mode, curves in attributions.curves.items():
    verb = 'deleted' if mode == 'deletion' else 'inserted'
    plots.plot_curves(
        {name: list(zip(fractions, curve)) for name, curve in curves.items()},
        os.path.join(workdir, f'{mode}_curves.png'),
        xlabel=f'fraction of pixels {verb}',
        ylabel='p(target)',
        title=f'{mode} (mean over {len(images)} test images)')


def filter_figures(workdir: str, filters: np.ndarray, activations: np.ndarray,
                   layer: str, class_name: str):
  plots.image_grid(filters, os.path.join(workdir, 'filters.png'),
                      title='first-layer kernels',
                      cmap='viridis' if filters.shape[-1] == 1 else 'gray')
  plots.image_grid(
      activations, os.path.join(workdir, 'activations.png'),
      titles=[f'ch {c}' for c in range(len(activations))], cmap='viridis',
      title=f'{layer or "last feature map"} on a {class_name}')


def activation_maximization_figure(workdir: str,
                                   config: ml_collections.ConfigDict,
                                   images: np.ndarray, channels: int,
                                   class_names: list[str]):
  am = config.activation_maximization
  titles = ([f'class {n}' for n in class_names] +
            [f'channel {c}' for c in range(channels)])
  plots.image_grid(
      images, os.path.join(workdir, 'activation_maximization.png'),
      titles=titles, columns=max(len(class_names), 8),
      title=f'activation maximization (l2 {am.l2}, tv {am.tv}, jitter '
      f'{am.jitter}), from grey')


def sanity_figures(workdir: str, image: np.ndarray, result: runner.Sanity):
  """The correlation curves, and the first image's maps at every stage."""
  plots.plot_curves(
      {name: list(enumerate(values))
       for name, values in result.correlations.items()},
      os.path.join(workdir, 'sanity_check.png'),
      xlabel='layers re-initialized (output first): ' +
      ', '.join(result.layers), ylabel='Spearman rank correlation',
      title='model-randomization sanity check')
  overlays.sanity_maps(
      image, ['trained'] + ['+' + n for n in result.layers],
      {name: [maps[0] for maps in stages]
       for name, stages in result.maps.items()}, _SIGNED,
      os.path.join(workdir, 'sanity_maps.png'))


def surrogate_figure(workdir: str, config: ml_collections.ConfigDict,
                     trees: surrogate.Surrogates):
  overlays.surrogate_panels(
      trees.depths, trees.fidelity, trees.accuracy, trees.importances,
      os.path.join(workdir, 'surrogate.png'),
      title=f'{config.data.name}: a decision tree mimicking the network')


def results_markdown(config: ml_collections.ConfigDict,
                     metrics: dict[str, float]) -> str:
  """The classifier's accuracy, then one row per ranking (methods, random)."""
  names = [n for n in (*explainer_lib.ATTRIBUTION_METHODS, 'random')
           if f'deletion_auc/{n}' in metrics]
  rows = [{'method': name,
           'deletion': metrics[f'deletion_auc/{name}'],
           'insertion': metrics[f'insertion_auc/{name}'],
           'top': metrics.get(f'sanity/{name}/rank_correlation_top_layer'),
           'all': metrics.get(f'sanity/{name}/rank_correlation_all_layers')}
          for name in names]
  accuracy = metrics['classifier/test/accuracy']
  majority = metrics['baseline/majority_class_accuracy']
  lines = [f'# explainable: {config.data.name}, target = {config.target}', '',
           f'Classifier test accuracy {accuracy:.4g} (majority class '
           f'{majority:.4g}).']
  ig = config.integrated_gradients
  gap = metrics.get('integrated_gradients/completeness_relative_error')
  if gap is not None:
    lines.append(f'Integrated gradients completeness relative error '
                 f'{gap:.4g} ({ig.steps} {ig.rule} steps, {ig.baseline} '
                 'baseline).')
  gain = metrics.get('activation_maximization/class_logit_gain')
  if gain is not None:
    lines.append(f'Activation maximization raises the class logits by '
                 f'{gain:.4g} on average.')
  table = report.markdown_table(rows, {
      'method': 'ranking',
      'deletion': 'deletion AUC (lower: more faithful)',
      'insertion': 'insertion AUC (higher: more faithful)',
      'top': 'sanity: rank corr., output layer re-initialized',
      'all': 'all layers re-initialized'}, digits=3)
  text = '\n'.join(lines) + '\n\n' + table
  depths = [d for d in config.surrogate.depths
            if f'surrogate/depth_{d}/fidelity' in metrics]
  if depths:
    rows = [{'depth': d,
             'leaves': int(metrics[f'surrogate/depth_{d}/leaves']),
             'fidelity': metrics[f'surrogate/depth_{d}/fidelity'],
             'accuracy': metrics[f'surrogate/depth_{d}/accuracy']}
            for d in depths]
    chance = metrics['surrogate/chance_fidelity']
    text += ('\n\nGlobal surrogate: decision trees fitted to the network\'s '
             'predicted classes on training images (fidelity = test '
             'agreement with the network; a constant tree reaches '
             f'{chance:.3g}).'
             '\n\n' + report.markdown_table(rows, {
                 'depth': 'max depth', 'leaves': 'leaves',
                 'fidelity': 'fidelity', 'accuracy': 'test accuracy'},
                 digits=3))
  return text + '\n'


def write_results(workdir: str, config: ml_collections.ConfigDict,
                  metrics: dict[str, float]):
  (epath.Path(workdir) / 'results.md').write_text(
      results_markdown(config, metrics))
