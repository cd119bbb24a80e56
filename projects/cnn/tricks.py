"""The ablation: one recipe trained with and without each trick it uses.

Rows: the config as given ('all tricks'), the config without each trick it
uses (crop + flip, colour jitter, mixup, label smoothing, warm-up + cosine),
and with none of them; every row also reports test accuracy with the
config's test-time augmentation. Then an ensemble of `ensemble_members`
all-tricks models (seeds seed, seed+1, ...; the first is the 'all tricks'
row) and, with `with_pseudo_label`, the labelled part of the training split
alone against labelled + pseudo-labelled images (config.pseudo_label).
Every variant is a `train.train_and_evaluate` run in its own sub-folder of
the workdir, so a rerun resumes it and reuses finished ones.
"""

import copy
import os
import time

import matplotlib.pyplot as plt

from lib import loop
from lib import plots
from lib import report
from projects.cnn import train

# Each trick as the config fields that turn it off.
TRICKS = {
    'crop + flip': {'augment.crop_padding': 0, 'augment.flip': False},
    'colour jitter': {'augment.brightness': 0.0, 'augment.contrast': 0.0,
                      'augment.saturation': 0.0},
    'mixup': {'augment.mixup_alpha': 0.0},
    'label smoothing': {'label_smoothing': 0.0},
    'warm-up + cosine': {'optimizer.schedule': 'constant',
                         'optimizer.warmup_steps': 0},
}
COLUMNS = {'variant': 'variant', 'change': 'change', 'val': 'val accuracy',
           'test': 'test accuracy', 'test_tta': 'test accuracy with TTA',
           'seconds': 'wall time (s)'}


def tricks_in(config) -> list[str]:
  """The tricks `config` turns on (some field differs from its 'off' value)."""
  return [name for name, off in TRICKS.items()
          if any(config[path] != value for path, value in off.items())]


def without(config, tricks):
  """A copy of `config` with `tricks` turned off, trained as one model."""
  config = copy.deepcopy(config)
  config.mode = 'supervised'
  for trick in tricks:
    config.update_from_flattened_dict(TRICKS[trick])
  return config


def _slug(name: str) -> str:
  return ''.join(c if c.isalnum() else '_' for c in name).strip('_')


def run_ablation(config, workdir: str, ensemble_members: int,
                 with_pseudo_label: bool) -> list[dict]:
  """Trains every variant; returns the table's rows."""
  used = tricks_in(config)
  rows = []

  def run(variant_config, folder):
    print(f'training {os.path.join(workdir, folder)} ...', flush=True)
    started = time.perf_counter()
    result = train.train_and_evaluate(variant_config,
                                      os.path.join(workdir, folder))
    return result.metrics, round(time.perf_counter() - started)

  def add_row(name, change, metrics, seconds, prefix=''):
    rows.append({'variant': name, 'change': change,
                 'val': metrics.get(f'{prefix}val/accuracy'),
                 'test': metrics.get(f'{prefix}test/accuracy'),
                 'test_tta': metrics.get(f'{prefix}test/tta_accuracy'),
                 'seconds': seconds})

  all_config = without(config, [])
  if ensemble_members > 1:  # its first member is the all-tricks model
    all_config.mode = 'ensemble'
    all_config.ensemble.num_members = ensemble_members
  metrics, seconds = run(all_config, 'all_tricks')
  if ensemble_members > 1:
    add_row('all tricks', ', '.join(used), metrics,
            round(seconds / ensemble_members), prefix='member_0/')
    add_row(f'ensemble of {ensemble_members}',
            f'seeds {config.seed}..{config.seed + ensemble_members - 1}, '
            'softmax averaged', metrics, seconds)
  else:
    add_row('all tricks', ', '.join(used), metrics, seconds)
  for trick in used:
    metrics, seconds = run(without(config, [trick]),
                           f'without_{_slug(trick)}')
    add_row(f'without {trick}', '', metrics, seconds)
  if len(used) > 1:
    metrics, seconds = run(without(config, used), 'no_tricks')
    add_row('no tricks', '', metrics, seconds)

  if with_pseudo_label:
    semi = without(config, [])
    semi.mode = 'pseudo_label'
    settings = semi.pseudo_label
    metrics, seconds = run(semi, 'pseudo_label')
    add_row('labelled only', f'{metrics["labelled_examples"]:.0f} labelled '
            f'images ({settings.labelled_fraction:g} of the training split)',
            metrics, None, prefix='round_0/')
    last = settings.rounds
    if last:
      add_row(
          f'+ pseudo-labels, {last} round{"s" * (last != 1)}',
          f'confidence > {settings.threshold:g}: '
          f'{metrics[f"round_{last}/pseudo_labels"]:.0f} of '
          f'{metrics["unlabelled_examples"]:.0f} unlabeled images, '
          f'{metrics[f"round_{last}/pseudo_label_accuracy"]:.1%} right',
          metrics, seconds)
  return rows


def plot_rows(rows: list[dict], path: str, title: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2), dpi=120)
  names = [r['variant'] for r in rows][::-1]
  ax.barh(names, [r['test'] for r in rows][::-1], label='plain')
  if any(r['test_tta'] is not None for r in rows):
    ax.scatter([r['test_tta'] or float('nan') for r in rows][::-1], names,
               color='black', marker='|', s=200, label='with TTA', zorder=3)
  ax.set_xlabel('test accuracy')
  low = min(r['test'] for r in rows)
  ax.set_xlim(max(0.0, low - 0.1), 1.0)
  ax.set_title(title)
  ax.legend(loc='lower right')
  fig.tight_layout()
  plots.save_figure(fig, path)


def write_results(rows: list[dict], workdir: str, title: str) -> str:
  """WORKDIR/ablation.md and ablation.png (on the chief); returns the table."""
  table = report.markdown_table(rows, COLUMNS)
  if loop.is_chief():
    with open(os.path.join(workdir, 'ablation.md'), 'w') as f:
      f.write(table)
    plot_rows(rows, os.path.join(workdir, 'ablation.png'), title)
  return table
