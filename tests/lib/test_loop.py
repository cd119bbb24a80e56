"""The one loop on a task of its own: two models in one state, resume, stages, hooks."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import errors
from lib import loop
from lib import mesh as mesh_lib
from lib import metric_log

_TARGET = np.array([1.0, -2.0, 3.0], np.float32)


def _cadence(**overrides):
  return loop.Cadence(**{**dict(log_every=5, eval_every=10, checkpoint_every=10,
                                keep_checkpoints=2, plots=False), **overrides})


def _two_player_task(num_steps: int, calls: list | None = None,
                     poison_at: int = 0) -> loop.Task:
  """Two parameter vectors with their own optimizers pull towards a noisy target.

  The state holds both (as a GAN's generator and discriminator would), and the
  step's noise is a pure function of the step, so a resumed run is exact.
  """
  mesh = mesh_lib.make_mesh()
  fast, slow = optax.adam(0.1), optax.sgd(0.05)

  def init():
    params = {'a': jnp.zeros(3), 'b': jnp.zeros(3)}
    state = {'params': params, 'fast': fast.init(params['a']),
             'slow': slow.init(params['b'])}
    return jax.device_put(state, mesh_lib.replicated(mesh))

  @jax.jit
  def update(state, noise, poison):
    def loss(p, target):
      return jnp.sum((p - target) ** 2)
    target = _TARGET + noise
    la, ga = jax.value_and_grad(loss)(state['params']['a'], target)
    lb, gb = jax.value_and_grad(loss)(state['params']['b'],
                                      state['params']['a'])
    ua, fast_state = fast.update(ga, state['fast'])
    ub, slow_state = slow.update(gb, state['slow'])
    params = {'a': state['params']['a'] + ua, 'b': state['params']['b'] + ub}
    total = (la + lb) * jnp.where(poison, jnp.nan, 1.0)
    return {'params': params, 'fast': fast_state, 'slow': slow_state}, {
        'loss': total, 'loss_b': lb}

  def step(state, step):
    if calls is not None:
      calls.append(step)
    noise = np.random.default_rng(step).normal(size=3).astype(np.float32) * 0.1
    return update(state, noise, step == poison_at)

  def evaluate(state, step):
    del step
    b = np.asarray(state['params']['b'])
    return {'val': {'distance': float(np.linalg.norm(b - _TARGET))}}

  def report(state, summary):
    return {'final/b0': float(state['params']['b'][0]),
            'seen_distance': summary['val/distance']}

  return loop.Task(init=init, step=step, num_steps=num_steps,
                   evaluate=evaluate, report=report,
                   baselines={'baseline/zero_distance': float(
                       np.linalg.norm(_TARGET))}, name='two_player')


def test_learns_and_writes_outputs(tmp_path):
  hooked = []
  result = loop.run(_two_player_task(60), str(tmp_path), _cadence(),
                    metadata={'config': {'x': 1}},
                    hooks=[lambda step, state, means: hooked.append(step)])
  m = result.metrics
  assert m['val/distance'] < 0.2 * m['baseline/zero_distance']
  assert m['step'] == 60 and m['seen_distance'] == m['val/distance']
  np.testing.assert_allclose(m['final/b0'], result.state['params']['b'][0])
  assert hooked == list(range(5, 61, 5))
  with open(tmp_path / 'summary.json') as f:
    assert json.load(f)['step'] == 60
  with open(tmp_path / 'config.json') as f:
    assert json.load(f) == {'x': 1}
  records = metric_log.read_metrics(str(tmp_path))
  assert [r['step'] for r in records if r['split'] == 'val'] == [10, 20, 30,
                                                                 40, 50, 60]
  train = [r for r in records if r['split'] == 'train']
  assert train[-1]['loss'] < 0.1 * train[0]['loss']
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['50', '60']


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
  whole = loop.run(_two_player_task(40), str(tmp_path / 'whole'), _cadence())
  loop.run(_two_player_task(23), str(tmp_path / 'parts'), _cadence())
  calls = []
  parts = loop.run(_two_player_task(40, calls), str(tmp_path / 'parts'),
                   _cadence())
  assert calls == list(range(24, 41))  # resumed after the last save, step 23
  chex.assert_trees_all_equal(jax.device_get(parts.state),
                              jax.device_get(whole.state))
  assert parts.metrics['val/distance'] == whole.metrics['val/distance']


def test_a_finished_stage_is_not_trained_again(tmp_path):
  """A run made of stages, each a loop run in its own folder, resumes by stage."""
  def stages(calls):
    first = loop.run(_two_player_task(20, calls), str(tmp_path / 'first'),
                     _cadence())
    second = loop.run(_two_player_task(30, calls), str(tmp_path / 'second'),
                      _cadence())
    return first, second

  calls = []
  first, second = stages(calls)
  assert len(calls) == 50
  calls = []
  again = stages(calls)
  assert calls == []
  chex.assert_trees_all_equal(jax.device_get(again[1].state),
                              jax.device_get(second.state))
  assert again[0].metrics['val/distance'] == first.metrics['val/distance']


def test_nan_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
  with pytest.raises(errors.NonFiniteLossError, match='at step 17'):
    loop.run(_two_player_task(40, poison_at=17), str(tmp_path), _cadence())
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['10']


def test_early_stopping_keeps_the_best_with_orbax_policies(tmp_path):
  # 'max' of a falling distance: the first evaluation stays the best.
  cadence = _cadence(eval_every=5, checkpoint_every=5, keep_checkpoints=1,
                     stopping_metric='val/distance', stopping_mode='max',
                     patience=2)
  task = _two_player_task(100)
  result = loop.run(task, str(tmp_path), cadence)
  assert result.metrics['step'] == 15 and result.metrics['best_step'] == 5
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['15', '5']
  best = loop.restore_best(task, str(tmp_path), cadence)
  first = loop.run(_two_player_task(5), str(tmp_path / 'five'), _cadence())
  chex.assert_trees_all_equal(jax.device_get(best), jax.device_get(first.state))
