r"""The table and plot of accuracy against parameters, FLOPs and bytes of a run.

  python -m projects.compression.report --workdir=/tmp/compression

Writes WORKDIR/results.md and WORKDIR/accuracy_vs_size.png from
WORKDIR/results/*.json (see results.py) and prints the table.
"""

from absl import app
from absl import flags

from lib import cli
from projects.compression import results

_WORKDIR = flags.DEFINE_string('workdir', None, "A compression run's workdir.")
flags.mark_flag_as_required('workdir')


def main(argv):
  del argv
  print(results.write_report(_WORKDIR.value))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
