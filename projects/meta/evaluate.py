r"""Reloads a trained meta-learner and meta-tests it on other N-way K-shot episodes.

  python -m projects.meta.evaluate --workdir=/tmp/maml --ways=5 --shots=1 \
      --episodes=600 [--query=15] [--split=test]

Ways, shots and query size default to the run's own; other ways than trained
adapt from a zero head (the transfer baseline always does). Prints the mean
query metric after adaptation with its 95% interval, and after 0 and 1 steps.
"""

import functools
import types

from absl import app
from absl import flags

from launch import cli
from lib import mesh as mesh_lib
from lib.errors import ConfigError
from lib.errors import UserError
from projects.meta import train


def _define_flags():
  """The flags, defined when run as a script: modules imported together
  (by the tests, by launch) define some of the same names."""
  workdir = flags.DEFINE_string('workdir', None, 'A projects/meta run.')
  ways = flags.DEFINE_integer('ways', 0, 'Classes per episode (0: as trained).')
  shots = flags.DEFINE_integer('shots', 0, 'Support examples per class (0: as '
                               'trained).')
  query = flags.DEFINE_integer('query', 0, 'Query examples per class (0: the '
                               "run's task.eval_query).")
  episodes = flags.DEFINE_integer('episodes', 600, 'Episodes to average over.')
  split = flags.DEFINE_enum('split', 'test', ['val', 'test'], 'Held-out split.')
  flags.mark_flag_as_required('workdir')
  return types.SimpleNamespace(
      workdir=workdir, ways=ways, shots=shots, query=query, episodes=episodes,
      split=split)


def evaluate(workdir: str, *, ways: int = 0, shots: int = 0, query: int = 0,
             episodes: int = 600, split: str = 'test') -> dict[str, float]:
  """The meta-test summary of the latest checkpoint in `workdir`."""
  config, problem, params = train.restore(workdir)
  task = config.task
  ways, shots = ways or task.ways, shots or task.shots
  if problem.regression and ways != 1:
    raise ConfigError('--ways must be 1 for sinusoid regression')
  if episodes <= 0:
    raise ConfigError(f'--episodes={episodes} must be positive')
  mesh = mesh_lib.make_mesh(config.num_devices)
  evaluator = train.EpisodeEvaluator(config, problem, mesh, ways=ways,
                                     shots=shots,
                                     query=query or task.eval_query)
  summary = evaluator.summary(params, split, episodes)
  summary.pop('adaptation_curve')
  return summary


def main(argv, args):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    summary = evaluate(args.workdir.value, ways=args.ways.value, shots=args.shots.value,
                       query=args.query.value, episodes=args.episodes.value,
                       split=args.split.value)
  except UserError as e:
    cli.fail(str(e))
  for name, value in sorted(summary.items()):
    print(f'{name:<20} {value:.5g}')


if __name__ == '__main__':
  app.run(functools.partial(main, args=_define_flags()),
          flags_parser=cli.parse_flags)
