"""The results of a run: WORKDIR/results/<method>.json, the table and the plot.

Each method's rows are saved as it finishes; `write_report` reads them all
and writes WORKDIR/results.md (a Markdown table) and
WORKDIR/accuracy_vs_size.png (test accuracy against model bytes and against
FLOPs per image).
"""

import json
import os

from etils import epath
import matplotlib.pyplot as plt

from lib import loop
from lib import plots  # selects matplotlib's Agg backend
from lib import report

# Table order: the methods as train.py runs them.
ORDER = ('distill', 'baseline', 'prune', 'quantize', 'cluster', 'early_exit')
COLUMNS = {'name': 'model', 'test_accuracy': 'test accuracy',
           'params': 'parameters', 'nonzero_params': 'nonzero',
           'flops': 'FLOPs / image', 'bytes': 'bytes', 'note': 'note'}


def save_rows(workdir: str, method: str, rows: list[dict]):
  """WORKDIR/results/<method>.json, on the chief."""
  loop.write_json(os.path.join(workdir, 'results'), f'{method}.json', rows)


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
  cells = [{**r, 'test_accuracy': f"{r['test_accuracy']:.4f}",
            'params': f"{r['params']:,}",
            'nonzero_params': f"{r['nonzero_params']:,}",
            'flops': f"{r['flops'] / 1e6:.3g}M",
            'bytes': f"{r['bytes'] / 1024:.1f} KiB"} for r in rows]
  return report.markdown_table(cells, COLUMNS)


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
