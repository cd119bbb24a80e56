r"""Trains one recipe with and without each trick; writes a Markdown table.

  python -m projects.cnn.ablation \
      --config=projects/cnn/config.py:cifar10_small --workdir=/tmp/ablation \
      [--config.num_steps=...] [--ensemble_members=3] [--pseudo_label=false]

Rows: the config as given ('all tricks'), the config without each trick it
uses (crop + flip, colour jitter, mixup, label smoothing, warm-up + cosine),
and with none of them; every row also reports test accuracy with the
config's test-time augmentation. Then an ensemble of `--ensemble_members`
all-tricks models (seeds seed, seed+1, ...; the first is the 'all tricks'
row) and, with `--pseudo_label`, the labelled part of the training split
alone against labelled + pseudo-labelled images (config.pseudo_label).
Each run lives in its own sub-folder of --workdir, so a re-run resumes and
reuses finished runs. The table goes to WORKDIR/ablation.md, a bar chart to
WORKDIR/ablation.png.
"""

import copy
import functools
import os
import time
import types

from absl import app
from absl import flags
from absl import logging
import matplotlib.pyplot as plt
from ml_collections import config_flags

from launch import cli
from lib import plots
from lib.errors import UserError
from projects.cnn import train


def _define_flags():
  """The flags, defined when run as a script: modules imported together
  (by the tests, by launch) define some of the same names."""
  config = config_flags.DEFINE_config_file(
      'config', 'projects/cnn/config.py', 'The recipe with every trick on, '
      'e.g. projects/cnn/config.py:cifar10_small.', lock_config=True)
  workdir = flags.DEFINE_string('workdir', None, 'Where the runs go.')
  ensemble = flags.DEFINE_integer(
      'ensemble_members', 3, 'Members of the all-tricks ensemble (1: none).')
  pseudo = flags.DEFINE_bool(
      'pseudo_label', True, 'Also compare labelled-only and pseudo-label '
      'training (config.pseudo_label).')
  flags.mark_flags_as_required(['workdir'])
  return types.SimpleNamespace(
      config=config, workdir=workdir, ensemble=ensemble, pseudo=pseudo)

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


def get_field(config, path: str):
  for name in path.split('.'):
    config = config[name]
  return config


def set_field(config, path: str, value) -> None:
  *parents, name = path.split('.')
  for parent in parents:
    config = config[parent]
  config[name] = value


def tricks_in(config) -> list[str]:
  """The tricks `config` turns on (some field differs from its 'off' value)."""
  return [name for name, off in TRICKS.items()
          if any(get_field(config, path) != value
                 for path, value in off.items())]


def without(config, tricks):
  """A copy of `config` with `tricks` turned off, trained as one model."""
  config = copy.deepcopy(config)
  config.mode = 'supervised'
  for trick in tricks:
    for path, value in TRICKS[trick].items():
      set_field(config, path, value)
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
    return result.metrics, time.perf_counter() - started

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
            seconds / ensemble_members, prefix='member_0/')
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


def markdown_table(rows: list[dict]) -> str:
  def fmt(value, spec):
    return '' if value is None else format(value, spec)

  lines = ['| variant | change | val accuracy | test accuracy | test accuracy '
           'with TTA | wall time (s) |', '|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['variant']} | {r['change']} | {fmt(r['val'], '.4f')} "
                 f"| {fmt(r['test'], '.4f')} | {fmt(r['test_tta'], '.4f')} | "
                 f"{fmt(r['seconds'], '.0f')} |")
  return '\n'.join(lines) + '\n'


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


def main(argv, args):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  config = cli.load_config(args.config)
  workdir = os.path.abspath(args.workdir.value)
  try:
    rows = run_ablation(config, workdir, args.ensemble.value, args.pseudo.value)
  except UserError as e:
    cli.fail(str(e))
  table = markdown_table(rows)
  with open(os.path.join(workdir, 'ablation.md'), 'w') as f:
    f.write(table)
  plot_rows(rows, os.path.join(workdir, 'ablation.png'),
            f'{config.project}: {config.data.name}, {config.model.name}')
  print(table)
  print(f'table written to {workdir}/ablation.md')


if __name__ == '__main__':
  app.run(functools.partial(main, args=_define_flags()),
          flags_parser=cli.parse_flags)
