r"""Runs every continual-learning method on the same task sequence, side by side.

  python -m projects.lifelong.compare --config=projects/lifelong/config.py \
      --workdir=/tmp/lifelong_compare [--methods=finetune,ewc,agem] \
      [--config.steps_per_task=200]

See comparison.py for what WORKDIR gets.
"""

import os

from absl import app
from absl import flags
from ml_collections import config_flags

from lib import cli
from lib import mesh as mesh_lib
from lib.errors import UserError
from projects.lifelong import comparison
from projects.lifelong import methods

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'projects/lifelong/config.py', 'The lifelong config file (its '
    'method field is replaced by each of --methods).', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'One subfolder per method.')
_METHODS = flags.DEFINE_list('methods', list(methods.METHODS),
                             'Methods to run, in this order.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  mesh_lib.initialize_distributed()
  config = cli.load_config(_CONFIG)
  workdir = os.path.abspath(_WORKDIR.value)
  try:
    table = comparison.run(config, workdir, _METHODS.value)
  except UserError as e:
    cli.fail(str(e))
  print(table)
  print(f'written to {workdir}/results.md, seen_accuracy.png, '
        'accuracy_matrices.png')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
