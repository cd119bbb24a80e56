r"""Reloads a trained meta-learner, tests it on other N-way K-shot episodes.

  python -m projects.meta.evaluate --workdir=/tmp/maml --ways=5 --shots=1 \
      --episodes=600 [--query=15] [--split=test]

Ways, shots and query size default to the run's own; other ways than trained
adapt from a zero head (the transfer baseline always does). Prints the mean
query metric after adaptation with its 95% interval, and after 0 and 1 steps.
The logic is `projects.meta.reload.evaluate`.
"""

from absl import app
from absl import flags

from lib import cli
from lib.errors import UserError
from projects.meta import reload

_WORKDIR = flags.DEFINE_string('workdir', None, 'A projects/meta run.')
_WAYS = flags.DEFINE_integer('ways', 0, 'Classes per episode (0: as trained).')
_SHOTS = flags.DEFINE_integer('shots', 0, 'Support examples per class (0: as '
                              'trained).')
_QUERY = flags.DEFINE_integer('query', 0, 'Query examples per class (0: the '
                              "run's task.eval_query).")
_EPISODES = flags.DEFINE_integer('episodes', 600, 'Episodes to average over.')
_SPLIT = flags.DEFINE_enum('split', 'test', ['val', 'test'], 'Held-out split.')
flags.mark_flag_as_required('workdir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    summary = reload.evaluate(_WORKDIR.value, ways=_WAYS.value,
                              shots=_SHOTS.value, query=_QUERY.value,
                              episodes=_EPISODES.value, split=_SPLIT.value)
  except UserError as e:
    cli.fail(str(e))
  for name, value in sorted(summary.items()):
    print(f'{name:<20} {value:.5g}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
