r"""Trains one recipe with and without each trick; writes a Markdown table.

  python -m projects.cnn.ablation \
      --config=projects/cnn/config.py:cifar10_small --workdir=/tmp/ablation \
      [--config.num_steps=...] [--ensemble_members=3] [--pseudo_label=false]

The rows and runs are described in projects/cnn/tricks.py. Each run lives in
its own sub-folder of --workdir, so a rerun resumes and reuses finished runs.
The table goes to WORKDIR/ablation.md, a bar chart to WORKDIR/ablation.png.
"""

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lib import cli
from lib import mesh as mesh_lib
from lib.errors import UserError
from projects.cnn import tricks

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'projects/cnn/config.py', 'The recipe with every trick on, '
    'e.g. projects/cnn/config.py:cifar10_small.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs go.')
_ENSEMBLE_MEMBERS = flags.DEFINE_integer(
    'ensemble_members', 3, 'Members of the all-tricks ensemble (1: none).')
_PSEUDO_LABEL = flags.DEFINE_bool(
    'pseudo_label', True, 'Also compare labelled-only and pseudo-label '
    'training (config.pseudo_label).')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  mesh_lib.initialize_distributed()
  config = cli.load_config(_CONFIG)
  workdir = os.path.abspath(_WORKDIR.value)
  try:
    rows = tricks.run_ablation(config, workdir, _ENSEMBLE_MEMBERS.value,
                               _PSEUDO_LABEL.value)
  except UserError as e:
    cli.fail(str(e))
  table = tricks.write_results(
      rows, workdir, f'{config.project}: {config.data.name}, '
      f'{config.model.name}')
  print(table)
  print(f'table written to {workdir}/ablation.md')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
