r"""The lectures' training toolkit as small experiments on the embedded digits.

  python -m projects.classification.toolkit --experiment=optimizers \
      --workdir=/tmp/tk
  python -m projects.classification.toolkit --experiment=batch_norm \
      --workdir=/tmp/tk --config=projects/classification/config.py:mnist

Experiments: optimizers, batch_size, batch_norm, critical_point (see
projects/classification/experiments.py). Each writes
WORKDIR/<experiment>/results.md (a Markdown table, also printed) and PNGs
comparing the variants; each variant's run is in its own folder.
"""

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lib import cli
from lib import mesh as mesh_lib
from lib.errors import UserError
from projects.classification import experiments

_EXPERIMENT = flags.DEFINE_string(
    'experiment', None, f'One of {", ".join(experiments.EXPERIMENTS)}.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.')
_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), 'config.py'),
    'Base config the variants modify (default: the digits config).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  if not _EXPERIMENT.value or not _WORKDIR.value:
    cli.fail('--experiment and --workdir are required; experiments: '
             f'{", ".join(experiments.EXPERIMENTS)}')
  mesh_lib.initialize_distributed()
  config = cli.load_config(_CONFIG)
  try:
    table = experiments.run_experiment(_EXPERIMENT.value, config,
                                       os.path.abspath(_WORKDIR.value))
  except UserError as e:
    cli.fail(str(e))
  print(table)
  print(f'written to {os.path.join(_WORKDIR.value, _EXPERIMENT.value)}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
