r"""Accuracy against augmentation strength (crop scale, jitter strength).

  python -m projects.self_supervised.sweep \
      --config=projects/self_supervised/config.py --workdir=/tmp/ssl_sweep
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from lib import cli
from lib.errors import UserError
from projects.self_supervised import strength

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs go.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not _WORKDIR.value:
    cli.fail('--workdir is required')
  try:
    rows = strength.sweep(cli.load_config(_CONFIG), _WORKDIR.value)
  except UserError as e:
    cli.fail(str(e))
  for row in rows:
    print(row)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
