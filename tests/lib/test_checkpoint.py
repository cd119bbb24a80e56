"""The orbax wrapper: round trip, metadata, retention; kill-and-resume equality."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import optax

from lib import checkpoint
from lib import mesh as mesh_lib
from lib import train_state
from tests import toy
from tests.lib import resume_worker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _state(seed=0):
  experiment = toy.toy_experiment()
  return train_state.create_train_state(
      experiment.model, optax.adam(1e-3), experiment.sample_input,
      jax.random.key(seed), mesh_lib.make_mesh())


def test_round_trip_keeps_values_keys_and_metadata(tmp_path):
  saved = _state(0)
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=10, keep=2)
  ckpt.save(10, saved, {'config': {'lr': 0.1}})
  restored, metadata = ckpt.restore(_state(1))
  chex.assert_trees_all_equal(jax.device_get(restored.params),
                              jax.device_get(saved.params))
  chex.assert_trees_all_equal(jax.device_get(restored.opt_state),
                              jax.device_get(saved.opt_state))
  np.testing.assert_array_equal(jax.random.key_data(restored.key),
                                jax.random.key_data(saved.key))
  assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
  assert metadata['step'] == 10 and metadata['config'] == {'lr': 0.1}
  assert 'jax' in metadata['versions']
  assert restored.params['Dense_0']['kernel'].sharding.is_fully_replicated


def test_keeps_the_newest(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=5, keep=2)
  state = _state()
  assert ckpt.latest_step() is None
  for step in (5, 10, 15):
    ckpt.save(step, state, {})
  assert ckpt.latest_step() == 15
  assert sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit()) == [10, 15]
  assert ckpt.should_save(20) and not ckpt.should_save(21)


def _run_worker(workdir, num_steps):
  return subprocess.Popen(
      [sys.executable, '-m', 'tests.lib.resume_worker', workdir,
       str(num_steps)], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT)


def _saved_steps(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  return [d for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(
      folder) else []


def _final_params(workdir):
  with open(os.path.join(workdir, 'final.json')) as f:
    return json.load(f)


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
  num_steps = 300
  reference = str(tmp_path / 'reference')
  resume_worker.main(reference, num_steps)  # uninterrupted, in this process

  resumed = str(tmp_path / 'resumed')
  kills = 0
  rng = np.random.default_rng(0)
  for _ in range(2):  # kill at a random moment after the first checkpoint
    proc = _run_worker(resumed, num_steps)
    deadline = time.time() + 120
    while not _saved_steps(resumed):
      assert proc.poll() is None, proc.stdout.read().decode()
      assert time.time() < deadline
      time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      kills += 1
  proc = _run_worker(resumed, num_steps)
  assert proc.wait(timeout=300) == 0, proc.stdout.read().decode()
  assert kills >= 1, 'the run finished before it could be killed'
  chex.assert_trees_all_equal(_final_params(resumed), _final_params(reference))
