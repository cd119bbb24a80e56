r"""Runs a saved policy for N episodes and prints its mean return.

  python -m projects.rl.evaluate --workdir=/tmp/rl [--episodes=100] \
      [--policy=greedy|sample] [--seed=0]

Restores the latest checkpoint of a run of projects/rl (its config is saved
beside it) and plays fresh episodes with every seed's policy: gymnax
environments in one jitted call, LunarLander through gymnasium
(`playback.evaluate_workdir`).
"""

from absl import app
from absl import flags

from lib import cli
from lib.errors import UserError
from projects.rl import playback

_WORKDIR = flags.DEFINE_string('workdir', None, 'A run of projects/rl.')
_EPISODES = flags.DEFINE_integer('episodes', 100, 'Episodes per seed.')
_POLICY = flags.DEFINE_enum('policy', None, ['greedy', 'sample'],
                            "Action choice (default: the run's eval.policy).")
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the episodes.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.log_our_progress()
  try:
    returns = playback.evaluate_workdir(_WORKDIR.value, _EPISODES.value,
                                        _POLICY.value, _SEED.value)
  except UserError as e:
    cli.fail(str(e))
  for index, seed_returns in enumerate(returns):
    print(f'seed {index}: mean return {seed_returns.mean():.2f} '
          f'(std {seed_returns.std():.2f}, {seed_returns.size} episodes)')
  print(f'mean return {returns.mean():.2f} over {returns.shape[0]} seed(s) x '
        f'{returns.shape[1]} episodes')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
