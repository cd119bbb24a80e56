r"""Runs every project's quick config on its embedded data and tabulates the results.

  python -m launch.tour                       # all projects, a temporary workdir
  python -m launch.tour --projects=regression --workdir=/tmp/tour --out=tour.md
"""

import importlib
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

from launch import cli
from lib import report
from lib.errors import UserError

_PROJECTS = flags.DEFINE_list(
    'projects', None, 'Projects to run (default: all of them).')
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Where each project writes its run (default: a fresh '
    'temporary directory).')
_OUT = flags.DEFINE_string('out', None, 'Markdown file for the results table '
                           '(default: tour.md in the workdir).')


def tour_row(name: str, workdir: str) -> dict:
  """Trains `name`'s quick config; returns its row of the table."""
  config = importlib.import_module(f'projects.{name}.config').get_config(
      'quick')
  started = time.perf_counter()
  result = cli.run(config, os.path.join(workdir, name))
  wall = time.perf_counter() - started
  tour = config.tour
  value = result.metrics[tour.metric]
  met = value <= tour.target if tour.mode == 'min' else value >= tour.target
  return {'project': name, 'metric': tour.metric, 'value': value,
          'target': f"{'<=' if tour.mode == 'min' else '>='} {tour.target:g}",
          'baseline': result.metrics.get(tour.baseline, float('nan')),
          'baseline_name': tour.baseline, 'met': met, 'seconds': wall}


def markdown_table(rows: list[dict]) -> str:
  return report.markdown_table(
      [{**r, 'baseline': f"{r['baseline']:.4g} ({r['baseline_name']})",
        'met': 'yes' if r['met'] else 'NO', 'seconds': f"{r['seconds']:.1f}"}
       for r in rows],
      {'project': 'project', 'metric': 'metric', 'value': 'value',
       'target': 'target', 'baseline': 'trivial baseline', 'met': 'met',
       'seconds': 'wall time (s)'})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  names = _PROJECTS.value or cli.available_projects()
  unknown = sorted(set(names) - set(cli.available_projects()))
  if unknown:
    cli.fail(f'unknown projects {unknown}; choose from '
             f'{cli.available_projects()}')
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='tour-')
  rows = []
  for name in names:
    print(f'running {name} ...', flush=True)
    try:
      rows.append(tour_row(name, workdir))
    except UserError as e:
      cli.fail(f'{name}: {e}')
  table = markdown_table(rows)
  out = _OUT.value or os.path.join(workdir, 'tour.md')
  with open(out, 'w') as f:
    f.write(table)
  print(table)
  print(f'table written to {out}; runs in {workdir}')
  if not all(r['met'] for r in rows):
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
