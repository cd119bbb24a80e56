"""Trains the toy experiment in WORKDIR for N steps; writes final.json (used by test_checkpoint)."""

import json
import os
import sys

os.environ['JAX_PLATFORMS'] = 'cpu'

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from lib import trainer  # pylint: disable=wrong-import-position
from tests import toy  # pylint: disable=wrong-import-position


def main(workdir: str, num_steps: int):
  config = toy.toy_config(num_steps=num_steps, checkpoint_every=10,
                          log_every=10, eval_every=40, keep_checkpoints=3,
                          num_devices=2)
  result = trainer.train_and_evaluate(config, workdir, toy.toy_experiment())
  params = jax.tree.map(lambda x: x.tolist(), jax.device_get(
      {'params': result.state.params, 'model_state': result.state.model_state,
       'step': result.state.step}))
  with open(os.path.join(workdir, 'final.json'), 'w') as f:
    json.dump(params, f)


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]))
