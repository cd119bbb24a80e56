"""Plays the saved policies of a run of projects/rl (what evaluate.py prints)."""

import json
import os

from etils import epath
import jax
import ml_collections
import numpy as np

from lib import checkpoint as checkpoint_lib
from lib.errors import ConfigError
from projects.rl import agent as agent_lib
from projects.rl import lunar
from projects.rl import train

CONFIG_FILE = 'config.json'  # the run's config, as lib.loop writes it


def evaluate_workdir(workdir: str, episodes: int, policy: str | None = None,
                     seed: int = 0) -> np.ndarray:
  """Returns [seeds, episodes] of the latest checkpoint's policies.

  policy: 'greedy' or 'sample'; default: the run's config.eval.policy.
  """
  config_file = epath.Path(workdir) / CONFIG_FILE
  directory = os.path.join(workdir, 'checkpoints')
  if not config_file.exists() or not os.path.isdir(directory):
    raise ConfigError(f'{workdir} holds no run of projects/rl (no '
                      f'{CONFIG_FILE} or checkpoints/)')
  config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
  checkpoints = checkpoint_lib.Checkpointer(directory, every=0, keep=1)
  if checkpoints.latest_step() is None:
    raise ConfigError(f'no checkpoint in {directory}')
  policy = policy or config.eval.policy
  if config.env.backend == 'gymnasium':
    lander = lunar.Lander(config)
    state, _ = checkpoints.restore(lander.init())
    checkpoints.close()
    return lander.play(state['params'], episodes, policy, seed)[None]
  algorithm = agent_lib.Algorithm(config)
  runners, _ = checkpoints.restore(train.initial_runners(algorithm, config))
  checkpoints.close()
  play = train.make_play(algorithm, episodes)
  return np.asarray(play(runners.params['agent'], jax.random.key(seed),
                         agent_lib.POLICY_MODES[policy])[0])
