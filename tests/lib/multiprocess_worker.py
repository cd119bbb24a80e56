"""Trains the toy experiment as process ID of N on localhost (used by test_multiprocess).

  python -m tests.lib.multiprocess_worker WORKDIR PORT NUM_PROCESSES PROCESS_ID

Each process holds its share of the data (every N-th example), as a real
multi-host job does, and 4 / N CPU devices, so the global mesh always has 4.
Process 0 writes WORKDIR/final.json with the parameters and the summary.
"""

import json
import os
import sys

_, WORKDIR, PORT, NUM_PROCESSES, PROCESS_ID = sys.argv
os.environ['JAX_PLATFORMS'] = 'cpu'
_DEVICES_FLAG = '--xla_force_host_platform_device_count'
os.environ['XLA_FLAGS'] = ' '.join(
    [flag for flag in os.environ.get('XLA_FLAGS', '').split()
     if not flag.startswith(_DEVICES_FLAG)] +
    [f'{_DEVICES_FLAG}={4 // int(NUM_PROCESSES)}'])

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from lib import trainer  # pylint: disable=wrong-import-position
from lib.data import splits  # pylint: disable=wrong-import-position
from tests import toy  # pylint: disable=wrong-import-position


def main():
  if int(NUM_PROCESSES) > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(f'localhost:{PORT}', int(NUM_PROCESSES),
                               int(PROCESS_ID))
  # Full-batch steps (64 training examples, batch 64) without dropout: every
  # step sees the same examples whatever the number of processes.
  experiment = toy.toy_experiment(dropout=0.0, data=toy.toy_data(n=96))
  experiment.train_data = splits.shard_for_process(
      {k: v[:64] for k, v in experiment.train_data.items()})
  experiment.eval_data = {'val': splits.shard_for_process(
      {k: v[64:] for k, v in toy.toy_data(n=96).items()})}
  config = toy.toy_config(batch_size=64, num_steps=30, eval_every=15,
                          checkpoint_every=15, log_every=5)
  result = trainer.train_and_evaluate(config, WORKDIR, experiment)
  if jax.process_index() == 0:
    with open(os.path.join(WORKDIR, 'final.json'), 'w') as f:
      json.dump({'params': jax.tree.map(lambda x: x.tolist(), jax.device_get(
          result.state.params)), 'metrics': result.metrics}, f)


if __name__ == '__main__':
  main()
