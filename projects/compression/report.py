r"""The table and plot of accuracy against parameters, FLOPs and bytes of a run.

  python -m projects.compression.report --workdir=/tmp/compression

Reads WORKDIR/results/*.json (written by train.py's methods) and writes
WORKDIR/results.md (a Markdown table) and WORKDIR/accuracy_vs_size.png
(test accuracy against model bytes and against FLOPs per image).
"""

import json
import os

from absl import app
from absl import flags
from etils import epath
import matplotlib.pyplot as plt

from lib import plots  # selects matplotlib's Agg backend

# Table order: the methods as train.py runs them.
ORDER = ('distill', 'baseline', 'prune', 'quantize', 'cluster', 'early_exit')


def read_rows(workdir: str) -> list[dict]:
  """Every method's rows, each name once (a later method's row wins)."""
  folder = epath.Path(workdir) / 'results'
  if not folder.is_dir():
    return []
  names = sorted((p.stem for p in folder.glob('*.json')),
                 key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER))
  rows = {}
  for method in names:
    for row in json.loads((folder / f'{method}.json').read_text()):
      rows.setdefault(row['name'], row)
  return list(rows.values())


def markdown_table(rows: list[dict]) -> str:
  lines = ['| model | test accuracy | parameters | nonzero | FLOPs / image | '
           'bytes | note |', '|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(
        f"| {r['name']} | {r['test_accuracy']:.4f} | {r['params']:,} | "
        f"{r['nonzero_params']:,} | {r['flops'] / 1e6:.3g}M | "
        f"{r['bytes'] / 1024:.1f} KiB | {r['note']} |")
  return '\n'.join(lines) + '\n'


def plot(rows: list[dict], path: str):
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for ax, key, label in ((axes[0], 'bytes', 'model size (KiB)'),
                         (axes[1], 'flops', 'FLOPs per image (millions)')):
    scale = 1024 if key == 'bytes' else 1e6
    for r in rows:
      ax.scatter(r[key] / scale, r['test_accuracy'], s=18)
      ax.annotate(r['name'], (r[key] / scale, r['test_accuracy']),
                  fontsize=7, xytext=(3, 2), textcoords='offset points')
    ax.set_xscale('log')
    ax.set_xlabel(label)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel('test accuracy')
  fig.suptitle('accuracy against size and compute')
  fig.tight_layout()
  plots.save_figure(fig, path)


def write_report(workdir: str) -> str:
  """Writes results.md and accuracy_vs_size.png; returns the table."""
  rows = read_rows(workdir)
  table = markdown_table(rows)
  (epath.Path(workdir) / 'results.md').write_text(table)
  if rows:
    plot(rows, os.path.join(workdir, 'accuracy_vs_size.png'))
  return table


def main(argv):
  del argv
  print(write_report(flags.FLAGS.workdir))


if __name__ == '__main__':
  # Defined here, not at import: launch.train imports this module and has
  # its own --workdir.
  flags.DEFINE_string('workdir', None, "A compression run's workdir.")
  flags.mark_flag_as_required('workdir')
  app.run(main)
