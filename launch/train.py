r"""Trains one project from its config file.

  python -m launch.train --config=projects/regression/config.py --workdir=/tmp/reg
  python -m launch.train --config=projects/classification/config.py:quick \
      --workdir=/tmp/cls --config.optimizer.learning_rate=3e-4

Re-running with the same --workdir resumes from its latest checkpoint.
"""

import os

from absl import app
from absl import flags
from ml_collections import config_flags

from launch import cli
from lib.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Project config file, e.g. projects/regression/config.py '
    '(append :quick for the quick config).', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, metrics and plots; an '
    'existing one is resumed.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.log_our_progress()
  config = cli.load_config(_CONFIG)
  try:
    workdir = _WORKDIR.value
    if '://' not in workdir:  # URLs such as gs://bucket/run pass unchanged
      workdir = os.path.abspath(workdir)
    result = cli.run(config, workdir)
  except UserError as e:
    cli.fail(str(e))
  width = max(map(len, result.metrics))
  for name, value in sorted(result.metrics.items()):
    print(f'{name:<{width}}  {value:.5g}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
