r"""Runs every continual-learning method on the same task sequence, side by side.

  python -m projects.lifelong.compare --config=projects/lifelong/config.py \
      --workdir=/tmp/lifelong_compare [--methods=finetune,ewc,agem] \
      [--config.steps_per_task=200]

Each method trains in WORKDIR/<method> (re-running resumes or reuses it);
WORKDIR gets results.md (ACC, BWT, FWT and wall time per method),
results.json, seen_accuracy.png (mean accuracy over the tasks seen so far
against tasks trained, one line per method) and accuracy_matrices.png.
"""

import functools
import json
import os
import time
import types

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

from launch import cli
from lib import mesh as mesh_lib
from lib import plots
from lib.errors import ConfigError
from lib.errors import UserError
from projects.lifelong import methods
from projects.lifelong import train


def _define_flags():
  """The flags, defined when run as a script: modules imported together
  (by the tests, by launch) define some of the same names."""
  config = config_flags.DEFINE_config_file(
      'config', 'projects/lifelong/config.py', 'The lifelong config file (its '
      'method field is replaced by each of --methods).', lock_config=True)
  workdir = flags.DEFINE_string('workdir', None, 'One subfolder per method.')
  chosen = flags.DEFINE_list('methods', list(methods.METHODS),
                             'Methods to run, in this order.')
  flags.mark_flags_as_required(['workdir'])
  return types.SimpleNamespace(config=config, workdir=workdir, methods=chosen)


def markdown_table(rows: list[dict]) -> str:
  lines = ['| method | strength | ACC | BWT | FWT | final accuracy per task | '
           'wall time (s) |', '|---|---|---|---|---|---|---|']
  for r in rows:
    per_task = ' / '.join(f'{a:.3f}' for a in r['final'])
    lines.append(f"| {r['method']} | {r['strength']} | {r['acc']:.4f} | "
                 f"{r['bwt']:+.4f} | {r['fwt']:+.4f} | {per_task} | "
                 f"{r['seconds']:.0f} |")
  return '\n'.join(lines) + '\n'


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


def compare(config, workdir: str, names) -> list[dict]:
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
    with open(os.path.join(workdir, name, 'accuracy_matrix.json')) as f:
      matrix = json.load(f)['matrix']
    strength = (method_config[name].strength
                if name in methods.REGULARIZERS else '')
    rows.append({'method': name, 'strength': strength,
                 'acc': result.metrics['acc'], 'bwt': result.metrics['bwt'],
                 'fwt': result.metrics['fwt'], 'final': matrix[-1],
                 'matrix': matrix, 'seconds': time.perf_counter() - started})
  return rows


def main(argv, args):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  mesh_lib.initialize_distributed()
  config = cli.load_config(args.config)
  workdir = os.path.abspath(args.workdir.value)
  try:
    rows = compare(config, workdir, args.methods.value)
  except UserError as e:
    cli.fail(str(e))
  tasks = config.tasks
  title = (f'{tasks.kind} {tasks.source}, {tasks.num_tasks} tasks, '
           f'{config.steps_per_task} steps each')
  table = markdown_table(rows)
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(f'{title}\n\n{table}')
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(rows, f, indent=1)
  plot_comparison(rows, workdir, title)
  print(table)
  print(f'written to {workdir}/results.md, seen_accuracy.png, '
        'accuracy_matrices.png')


if __name__ == '__main__':
  app.run(functools.partial(main, args=_define_flags()),
          flags_parser=cli.parse_flags)
