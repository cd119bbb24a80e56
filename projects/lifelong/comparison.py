"""Every continual-learning method on the same task sequence, side by side.

Each method trains in WORKDIR/<method> (a rerun resumes or reuses it);
WORKDIR gets results.md (ACC, BWT, FWT and wall time per method),
results.json, seen_accuracy.png (mean accuracy over the tasks seen so far
against tasks trained, one line per method) and accuracy_matrices.png.
"""

import os
import time

import jax
import numpy as np

from lib import loop
from lib import plots
from lib import report
from lib.errors import ConfigError
from projects.lifelong import methods
from projects.lifelong import train

COLUMNS = {'method': 'method', 'strength': 'strength', 'acc': 'ACC',
           'bwt': 'BWT', 'fwt': 'FWT', 'final': 'final accuracy per task',
           'seconds': 'wall time (s)'}


def compare(config, workdir: str, names) -> list[dict]:
  """One row per method: its metrics, accuracy matrix and wall time."""
  unknown = [n for n in names if n not in methods.METHODS]
  if unknown:
    raise ConfigError(f'--methods: unknown {unknown}; choose from '
                      f'{methods.METHODS}')
  rows = []
  for name in names:
    method_config = config.copy_and_resolve_references()
    method_config.unlock()
    method_config.method = name
    print(f'running {name} ...', flush=True)
    started = time.perf_counter()
    result = train.train_and_evaluate(method_config, os.path.join(workdir, name))
    matrix = np.asarray(jax.device_get(result.state.matrix)).tolist()
    rows.append({
        'method': name,
        'strength': (method_config[name].strength
                     if name in methods.WITH_STRENGTH else None),
        **{k: result.metrics[k] for k in ('acc', 'bwt', 'fwt')},
        'final': ' / '.join(f'{a:.3f}' for a in matrix[-1]),
        'matrix': matrix, 'seconds': round(time.perf_counter() - started)})
  return rows


def plot_comparison(rows: list[dict], workdir: str, title: str):
  curves = {r['method']: [(i + 1, float(np.mean(row[:i + 1])))
                          for i, row in enumerate(r['matrix'])] for r in rows}
  plots.plot_curves(curves, os.path.join(workdir, 'seen_accuracy.png'),
                    xlabel='tasks trained', ylabel='mean accuracy on seen tasks',
                    title=title)
  fig, axes = plots.plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 2.9),
                                 dpi=120, squeeze=False)
  for ax, r in zip(axes[0], rows):
    ax.imshow(np.asarray(r['matrix']), vmin=0.0, vmax=1.0, cmap='viridis')
    ax.set_title(f"{r['method']}\nACC {r['acc']:.3f}", fontsize=9)
    ax.set_xlabel('eval task', fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0][0].set_ylabel('after task', fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  plots.save_figure(fig, os.path.join(workdir, 'accuracy_matrices.png'))


def run(config, workdir: str, names) -> str:
  """Runs `names` in WORKDIR/<method>, writes the results; returns the table."""
  rows = compare(config, workdir, names)
  tasks = config.tasks
  title = (f'{tasks.kind} {tasks.source}, {tasks.num_tasks} tasks, '
           f'{config.steps_per_task} steps each')
  table = report.markdown_table(rows, COLUMNS)
  loop.write_json(workdir, 'results.json', rows)
  if loop.is_chief():
    with open(os.path.join(workdir, 'results.md'), 'w') as f:
      f.write(f'{title}\n\n{table}')
    plot_comparison(rows, workdir, title)
  return table
