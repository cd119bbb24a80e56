"""The toy runs' config (no project), also the launcher error tests' config file.

It imports no JAX, so that those tests' launches fail as fast as a user's.
"""

import ml_collections

from lib import config as config_lib


def toy_config(**overrides) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  config.project = 'toy'
  config.batch_size = 32
  config.num_steps = 40
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 10
  config.plots = False
  config.optimizer.learning_rate = 1e-2
  config.update(overrides)
  return config


def get_config():
  return toy_config()
