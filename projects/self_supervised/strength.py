"""How strong must augmentation be: one pre-training run per value of each
strength knob (the crop's smallest area fraction, the jitter strength), the
other knobs as configured, then a plot of probe and k-NN accuracy."""

import copy
import os

from lib import loop
from lib import plots
from lib import report
from projects.self_supervised import train

KNOBS = {'crop_min_scale': 'crop_min_scales',
         'jitter_strength': 'jitter_strengths'}


def _with_value(config, knob: str, value: float):
  config = copy.deepcopy(config)
  config.methods = (config.sweep.method,)
  config.finetune.fractions = ()
  config.plots = False
  if knob == 'crop_min_scale':
    config.augment.crop_scale = (value, 1.0)
  else:
    config.augment.jitter_strength = value
  return config


def sweep(config, workdir: str) -> list[dict]:
  """Rows {knob, value, probe, knn, feature_std}; runs in WORKDIR/<knob>_<v>
  (a rerun restores finished ones). Writes sweep.md and strength.png."""
  method = config.sweep.method
  rows = []
  for knob, values in KNOBS.items():
    for value in config.sweep[values]:
      result = train.train_and_evaluate(
          _with_value(config, knob, value),
          os.path.join(workdir, f'{knob}_{value:g}'))
      rows.append({'knob': knob, 'value': value,
                   'probe': result.metrics[f'{method}/probe/accuracy'],
                   'knn': result.metrics[f'{method}/knn/accuracy'],
                   'random_probe': result.metrics['random/probe/accuracy'],
                   'feature_std': result.metrics[f'{method}/feature_std']})
  if loop.is_chief():
    loop.write_text(workdir, 'sweep.md', report.markdown_table(
        rows, ('knob', 'value', 'probe', 'knn', 'random_probe',
               'feature_std')))
    plot_strength(rows, os.path.join(workdir, 'strength.png'), method)
  return rows


def plot_strength(rows: list[dict], path: str, method: str):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(KNOBS), figsize=(9, 3.6), dpi=110)
  for ax, knob in zip(axes, KNOBS):
    points = [r for r in rows if r['knob'] == knob]
    xs = [r['value'] for r in points]
    for name in ('probe', 'knn'):
      ax.plot(xs, [r[name] for r in points], marker='o', label=name)
    ax.plot(xs, [r['random_probe'] for r in points], ls='--', c='gray',
            label='random backbone probe')
    ax.set_xlabel(knob.replace('_', ' '))
    ax.set_ylabel('test accuracy')
    ax.grid(alpha=0.3)
    ax.legend()
  fig.suptitle(f'{method}: accuracy against augmentation strength')
  fig.tight_layout()
  plots.save_figure(fig, path)
