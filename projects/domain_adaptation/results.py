"""The methods side by side: WORKDIR/results.md and target_accuracy.png."""

import os

from etils import epath

from lib import loop
from lib import metric_log
from lib import plots
from lib import report

COLUMNS = {'method': 'method', 'target/accuracy': 'target accuracy',
           'source/accuracy': 'source accuracy',
           'domain_accuracy': 'domain classifier accuracy',
           'train_seconds': 'train time (s)'}


def results_table(metrics: dict, methods) -> str:
  """One row per method of `metrics` ('<method>/<name>'); '-' where absent."""
  rows = [{'method': m, 'target/accuracy': metrics[f'{m}/target/accuracy'],
           'source/accuracy': metrics[f'{m}/source/accuracy'],
           'domain_accuracy': metrics.get(f'{m}/domain_accuracy'),
           'train_seconds': f"{metrics[f'{m}/wall_seconds']:.1f}"}
          for m in methods]
  return report.markdown_table(rows, COLUMNS)


def write_results(workdir: str, metrics: dict, methods, *, plot: bool,
                  title: str):
  """The table and every method's target test accuracy against the step.

  Writes on the chief only.
  """
  if not loop.is_chief():
    return
  path = epath.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  (path / 'results.md').write_text(results_table(metrics, methods))
  if plot:
    curves = {m: [(r['step'], r['accuracy']) for r in metric_log.read_metrics(
        os.path.join(workdir, m)) if r['split'] == 'target'] for m in methods}
    plots.plot_curves(curves, os.path.join(workdir, 'target_accuracy.png'),
                      ylabel='target test accuracy', title=title)
