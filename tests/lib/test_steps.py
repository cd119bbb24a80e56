"""The sharded step builder: same answer on 8 devices as on 1, compiled once."""

import chex
import jax
import numpy as np
import optax
import pytest

from lib import mesh as mesh_lib
from lib import steps
from lib import train_state
from lib.data import batches as batches_lib
from tests import toy


def _run(num_devices, num_steps=6, batch_norm=True, dropout=0.1,
         log_grad_norm=False):
  mesh = mesh_lib.make_mesh(num_devices)
  experiment = toy.toy_experiment(batch_norm=batch_norm, dropout=dropout)
  tx = optax.adam(1e-2)
  state = train_state.create_train_state(
      experiment.model, tx, experiment.sample_input, jax.random.key(0), mesh)
  chex.clear_trace_counter()  # each call below compiles for its own mesh
  loss_fn = chex.assert_max_traces(experiment.loss_fn, n=1)
  train_step = steps.make_train_step(loss_fn, tx, mesh,
                                     log_grad_norm=log_grad_norm)
  history = []
  for step in range(num_steps):
    batch = batches_lib.train_batch(experiment.train_data, 32, step, seed=0)
    state, metrics = train_step(state, mesh_lib.shard_batch(batch, mesh))
    history.append(jax.device_get(metrics))
  return state, history


def test_eight_devices_match_one():
  assert jax.device_count() == 8, 'tests/conftest.py sets 8 fake CPU devices'
  state8, history8 = _run(8)
  state1, history1 = _run(1)
  chex.assert_trees_all_close(jax.device_get(state8.params),
                              jax.device_get(state1.params), atol=1e-5)
  chex.assert_trees_all_close(jax.device_get(state8.model_state),
                              jax.device_get(state1.model_state), atol=1e-5)
  chex.assert_trees_all_close(history8, history1, atol=1e-5)
  assert int(state8.step) == 6


def test_state_and_batch_shardings():
  mesh = mesh_lib.make_mesh()
  state, _ = _run(0, num_steps=1)
  for leaf in jax.tree.leaves(state.params):
    assert leaf.sharding.is_fully_replicated
  batch = mesh_lib.shard_batch(toy.toy_data(64), mesh)
  assert batch['input'].sharding.spec == jax.P('data')
  chex.assert_shape(batch['input'].addressable_shards[0].data, (8, 12))


def test_step_is_finite():
  state, history = _run(8, num_steps=3)
  chex.assert_tree_all_finite(jax.device_get(state.params))
  chex.assert_tree_all_finite(history)


def _draws(seed: int, num_steps: int = 3):
  """The random number the loss draws from its key at each step."""
  mesh = mesh_lib.make_mesh()
  experiment = toy.toy_experiment()

  def loss_fn(params, model_state, batch, key):
    del batch
    zero = 0.0 * sum(jax.numpy.sum(p) for p in jax.tree.leaves(params))
    return zero, ({'draw': jax.random.uniform(key)}, model_state)

  tx = optax.sgd(0.1)
  state = train_state.create_train_state(
      experiment.model, tx, experiment.sample_input, jax.random.key(seed), mesh)
  train_step = steps.make_train_step(loss_fn, tx, mesh)
  batch = mesh_lib.shard_batch(toy.toy_data(8), mesh)
  draws = []
  for _ in range(num_steps):
    state, metrics = train_step(state, batch)
    draws.append(float(metrics['draw']))
  return draws


def test_each_step_gets_its_own_reproducible_key():
  draws = _draws(seed=0)
  assert len(set(draws)) == len(draws)  # a new key every step
  assert _draws(seed=0) == draws  # the same keys on a rerun
  assert not set(_draws(seed=1)) & set(draws)  # other keys for another seed


def test_gradients_are_finite():
  experiment = toy.toy_experiment()
  mesh = mesh_lib.make_mesh()
  state = train_state.create_train_state(
      experiment.model, optax.sgd(0.1), experiment.sample_input,
      jax.random.key(1), mesh)
  batch = batches_lib.train_batch(experiment.train_data, 32, 0, seed=0)
  grads, _ = jax.grad(experiment.loss_fn, has_aux=True)(
      state.params, state.model_state, batch, jax.random.key(2))
  chex.assert_tree_all_finite(grads)
  chex.assert_trees_all_equal_shapes(grads, state.params)


@pytest.mark.parametrize('batch_size', [16, 40])
def test_evaluate_is_the_mean_over_every_example(batch_size):
  mesh = mesh_lib.make_mesh()
  experiment = toy.toy_experiment()
  state = train_state.create_train_state(
      experiment.model, optax.sgd(0.1), experiment.sample_input,
      jax.random.key(0), mesh)
  eval_step = steps.make_eval_step(experiment.eval_fn, mesh)
  data = experiment.eval_data['val']  # 64 examples: 40 leaves a padded batch
  result = steps.evaluate(eval_step, state,
                          batches_lib.eval_batches(data, batch_size), mesh)
  expected = experiment.eval_fn(state.params, state.model_state, data)
  np.testing.assert_allclose(result['loss'], np.mean(expected['loss']),
                             rtol=1e-5)
  np.testing.assert_allclose(result['accuracy'],
                             np.mean(expected['accuracy']), rtol=1e-6)


def test_grad_norm_is_logged_only_when_asked():
  _, plain = _run(8, num_steps=1)
  _, with_norm = _run(8, num_steps=1, log_grad_norm=True)
  assert 'grad_norm' not in plain[0]
  assert float(with_norm[0]['grad_norm']) > 0
  np.testing.assert_allclose(with_norm[0]['loss'], plain[0]['loss'])
