"""Two processes on localhost (jax.distributed, CPU collectives) train as one does."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from lib import metric_log

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _train(workdir, num_processes: int) -> dict:
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'tests.lib.multiprocess_worker', str(workdir),
       str(port), str(num_processes), str(i)], cwd=REPO,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i in range(num_processes)]
  for proc in procs:
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output[-3000:]
  with open(os.path.join(workdir, 'final.json')) as f:
    return json.load(f)


def test_two_processes_match_one(tmp_path):
  one = _train(tmp_path / 'one', 1)
  two = _train(tmp_path / 'two', 2)
  flat = [np.concatenate([np.ravel(x) for x in _leaves(r['params'])])
          for r in (one, two)]
  np.testing.assert_allclose(flat[1], flat[0], rtol=1e-5, atol=1e-6)
  for name in ('val/accuracy', 'val/loss', 'train/loss'):
    np.testing.assert_allclose(one['metrics'][name], two['metrics'][name],
                               rtol=1e-5)
  assert one['metrics']['val/accuracy'] > 0.6  # it learned (chance is 1/3)
  # Only the chief wrote: each record once, as in the one-process run.
  records = [(r['step'], r['split'])
             for r in metric_log.read_metrics(tmp_path / 'two')]
  assert records == [(r['step'], r['split'])
                     for r in metric_log.read_metrics(tmp_path / 'one')]
  assert sorted(os.listdir(tmp_path / 'two' / 'checkpoints')) == ['15', '30']


def _leaves(tree):
  if isinstance(tree, dict):
    for key in sorted(tree):
      yield from _leaves(tree[key])
  else:
    yield np.asarray(tree)
