"""HW14's growing networks (PNN, Net2Net) and the curriculum (tasks.order)."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np

from lib import mesh as mesh_lib
from lib import models
from projects.lifelong import config as config_lib
from projects.lifelong import growth
from projects.lifelong import metrics
from projects.lifelong import sequence
from projects.lifelong import tasks
from projects.lifelong import train


def _tiny_config(method):
  config = config_lib.get_config('quick')  # 3 permuted-digit tasks
  config.method, config.steps_per_task = method, 60
  config.optimizer.learning_rate = 3e-3
  config.model.features = (32, 16)
  config.net2net.widen_by = 4
  config.plots = False
  return config


def _run(config, record_every_task):
  """Trains the whole sequence step by step; calls `record_every_task(run, state)`."""
  train_tasks, test_tasks = tasks.make_tasks(config)
  run = sequence.TaskSequence(config, train_tasks, test_tasks,
                              mesh_lib.make_mesh(2))
  state = run.init()
  for step in range(1, config.tasks.num_tasks * config.steps_per_task + 1):
    state, _ = run.step(state, step)
    if step % config.steps_per_task == 0:
      record_every_task(run, state)
  return run, state


def test_pnn_freezes_earlier_columns_and_their_outputs():
  config = _tiny_config('pnn')
  inputs = np.random.default_rng(0).normal(size=(32, 64)).astype(np.float32)
  ends = []  # per task end: (params, every column's logits on `inputs`)
  model = growth.ProgressiveMLP((32, 16), 10, num_columns=3)
  apply = jax.jit(lambda p, c: model.apply({'params': p}, inputs, c),
                  static_argnums=1)

  def record(run, state):
    del run
    params = jax.device_get(state.train.params)
    ends.append((params, [np.asarray(apply(params, c)) for c in range(3)]))

  _, state = _run(config, record)
  for t in (1, 2):
    for c in range(t):  # earlier columns: bit-identical, so their outputs too
      chex.assert_trees_all_equal(ends[t][0][f'column_{c}'],
                                  ends[c][0][f'column_{c}'])
      np.testing.assert_array_equal(ends[t][1][c], ends[c][1][c])
    assert not np.array_equal(ends[t][1][t], ends[t - 1][1][t])  # trained
  # Column 2 reads both earlier ones: its laterals change its output.
  params = ends[-1][0]
  assert set(params['column_2']) == {'layer0', 'layer1', 'layer2',
                                     'lateral1_from0', 'lateral1_from1',
                                     'lateral2_from0', 'lateral2_from1'}
  cut = dict(params)
  cut['column_2'] = {k: jax.tree.map(np.zeros_like, v)
                     if k.startswith('lateral') else v
                     for k, v in params['column_2'].items()}
  assert not np.allclose(apply(cut, 2), ends[-1][1][2])
  # Each column: 64*32+32 + 32*16+16 + 16*10+10 weights, plus per earlier
  # column a lateral into layers 1 and 2 (32*16 + 16*10).
  assert growth.column_sizes(params) == [2778, 2778 + 672, 2778 + 2 * 672]
  # A task is evaluated with its own column: its accuracy never changes.
  matrix = np.asarray(jax.device_get(state.matrix))
  np.testing.assert_array_equal(matrix[1:, 0], matrix[0, 0])
  np.testing.assert_array_equal(matrix[2, 1], matrix[1, 1])
  assert np.all(np.diag(matrix) > 0.5), matrix


@jax.jit
def _widen_and_compare(params, inputs, key):
  """(narrow outputs, widened outputs, widened params) for models.MLP (5, 7)."""
  narrow = models.MLP((5, 7), num_outputs=3)
  wide = models.MLP((11, 13), num_outputs=3)
  padded = growth.pad_to(params, jax.eval_shape(
      lambda: wide.init(key, inputs[:1])['params']))
  widened = growth.wider_net(padded, jnp.asarray([5, 7]), 3, key)
  return (narrow.apply({'params': params}, inputs),
          wide.apply({'params': widened}, inputs), widened)


def test_net2net_widening_computes_the_same_function():
  key = jax.random.key(0)
  inputs = jax.random.normal(jax.random.key(1), (64, 6))
  params = models.MLP((5, 7), num_outputs=3).init(key, inputs[:1])['params']
  before, after, widened = _widen_and_compare(params, inputs, key)
  np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
  kernel = np.asarray(widened['Dense_0']['kernel'])
  # 3 new units, each a copy of an original one; the rest still zero.
  for unit in range(5, 8):
    assert any(np.array_equal(kernel[:, unit], kernel[:, u]) for u in range(5))
  np.testing.assert_array_equal(kernel[:, 8:], 0.0)
  # Copied units share their outgoing weights: each original row is split.
  rows = np.asarray(widened['Dense_1']['kernel'])[:8, :7]
  np.testing.assert_allclose(
      rows.sum(0), np.asarray(params['Dense_1']['kernel']).sum(0), rtol=1e-5,
      atol=1e-6)
  assert not np.allclose(rows[:5], np.asarray(params['Dense_1']['kernel']))


def test_net2net_grows_before_each_task_and_trains_only_grown_units():
  config = _tiny_config('net2net')
  grown = []  # per task end: the nonzero units of each hidden layer

  def record(run, state):
    params = jax.device_get(state.train.params)
    grown.append([int(np.sum(np.any(params[f'Dense_{k}']['kernel'] != 0, 0)))
                  for k in range(2)])

  _, state = _run(config, record)
  assert grown == [[32, 16], [36, 20], [40, 24]]
  chex.assert_shape(state.train.params['Dense_0']['kernel'], (64, 40))
  matrix = np.asarray(jax.device_get(state.matrix))
  assert np.all(np.diag(matrix) > 0.5), matrix


def test_task_order_permutes_the_tasks_and_the_matrix(tmp_path):
  config = config_lib.get_config()  # rotated digits
  config.method, config.steps_per_task = 'finetune', 60
  config.tasks.num_tasks, config.num_devices = 3, 2
  config.plots = False
  natural_train, natural_test = tasks.make_tasks(config)
  config.tasks.order = (2, 0, 1)
  ordered_train, ordered_test = tasks.make_tasks(config)
  for place, t in enumerate(config.tasks.order):
    np.testing.assert_array_equal(ordered_train[place]['input'],
                                  natural_train[t]['input'])
    np.testing.assert_array_equal(ordered_train[place]['task'], place)
  assert metrics.task_names(config) == ['40°', '0°', '20°']
  result = train.train_and_evaluate(config, str(tmp_path))
  with open(os.path.join(tmp_path, 'accuracy_matrix.json')) as f:
    record = json.load(f)
  assert record['tasks'] == ['40°', '0°', '20°']
  # Row i, column j: the run's j-th task (natural task order[j]).
  run = sequence.TaskSequence(config, ordered_train, natural_test,
                              mesh_lib.make_mesh(2))
  natural = run.accuracies(result.state.train)
  np.testing.assert_allclose(record['matrix'][-1],
                             natural[list(config.tasks.order)], atol=1e-6)
  assert record['matrix'][0][0] > 0.5  # 40° learned first
