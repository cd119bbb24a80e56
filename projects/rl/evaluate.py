r"""Runs a saved policy for N episodes and prints its mean return.

  python -m projects.rl.evaluate --workdir=/tmp/rl [--episodes=100] \
      [--policy=greedy|sample] [--seed=0]

Restores the latest checkpoint of a run of projects/rl (its config is saved
with it) and plays fresh episodes with every seed's policy: gymnax
environments in one jitted call, LunarLander through gymnasium.
"""

import functools
import json
import os
import types

from absl import app
from absl import flags
from etils import epath
import jax
import ml_collections
import numpy as np

from launch import cli
from lib import checkpoint as checkpoint_lib
from lib.errors import ConfigError
from lib.errors import UserError
from projects.rl import agent as agent_lib
from projects.rl import train


def _define_flags():
  """The flags, defined when run as a script: modules imported together
  (by the tests, by launch) define some of the same names."""
  workdir = flags.DEFINE_string('workdir', None, 'A run of projects/rl.')
  episodes = flags.DEFINE_integer('episodes', 100, 'Episodes per seed.')
  policy = flags.DEFINE_enum('policy', None, ['greedy', 'sample'],
                             "Action choice (default: the run's eval.policy).")
  seed = flags.DEFINE_integer('seed', 0, 'Seed of the episodes.')
  flags.mark_flags_as_required(['workdir'])
  return types.SimpleNamespace(
      workdir=workdir, episodes=episodes, policy=policy, seed=seed)


def evaluate_workdir(workdir: str, episodes: int, policy: str | None = None,
                     seed: int = 0) -> np.ndarray:
  """Returns [seeds, episodes] of the latest checkpoint's policies."""
  config_file = epath.Path(workdir) / train.CONFIG_FILE
  directory = os.path.join(workdir, 'checkpoints')
  if not config_file.exists() or not os.path.isdir(directory):
    raise ConfigError(f'{workdir} holds no run of projects/rl (no '
                      f'{train.CONFIG_FILE} or checkpoints/)')
  config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
  checkpoints = checkpoint_lib.Checkpointer(directory, every=0, keep=1)
  if checkpoints.latest_step() is None:
    raise ConfigError(f'no checkpoint in {directory}')
  policy = policy or config.eval.policy
  if config.env.backend == 'gymnasium':
    from projects.rl import lunar  # pylint: disable=g-import-not-at-top
    params, _ = checkpoints.restore(lunar.initial_state(config))
    checkpoints.close()
    return lunar.evaluate(config, params['params'], episodes, policy,
                          seed)[None]
  algorithm = agent_lib.Algorithm(config)
  runners, _ = checkpoints.restore(train.initial_runners(algorithm, config))
  checkpoints.close()
  play = train.make_play(algorithm, episodes)
  return np.asarray(play(runners.params['agent'], jax.random.key(seed),
                         agent_lib.POLICY_MODES[policy])[0])


def main(argv, args):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    returns = evaluate_workdir(args.workdir.value, args.episodes.value, args.policy.value,
                               args.seed.value)
  except UserError as e:
    cli.fail(str(e))
  for index, seed_returns in enumerate(returns):
    print(f'seed {index}: mean return {seed_returns.mean():.2f} '
          f'(std {seed_returns.std():.2f}, {seed_returns.size} episodes)')
  print(f'mean return {returns.mean():.2f} over {returns.shape[0]} seed(s) x '
        f'{returns.shape[1]} episodes')


if __name__ == '__main__':
  app.run(functools.partial(main, args=_define_flags()),
          flags_parser=cli.parse_flags)
