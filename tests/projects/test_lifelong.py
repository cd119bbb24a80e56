"""HW14: penalties, importances, A-GEM, metrics, task sequences and learning."""

import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
from optax import tree_utils as otu
import pytest
import tensorflow_datasets as tfds

from lib import errors
from lib import mesh as mesh_lib
from lib import models
from lib import optim
from lib import train_state
from projects.lifelong import config as config_lib
from projects.lifelong import methods
from projects.lifelong import metrics
from projects.lifelong import state as state_lib
from projects.lifelong import tasks
from projects.lifelong import train

MNIST_DIR = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared',
                         'data', 'mnist')


def _tiny_problem(batch_size=8, seed=0):
  rng = np.random.default_rng(seed)
  model = models.MLP((5,), num_outputs=10, activation=jnp.tanh)
  batch = {'input': rng.normal(size=(batch_size, 6)).astype(np.float32),
           'label': rng.integers(0, 10, batch_size).astype(np.int32),
           'class_mask': np.ones((batch_size, 10), np.float32),
           'mask': np.ones(batch_size, np.float32)}
  batch['mask'][-1] = 0.0  # a padding example, which must count for nothing
  params = model.init(jax.random.key(seed), batch['input'][:1])['params']
  apply_fn = lambda p, x: model.apply({'params': p}, x)
  return apply_fn, params, batch


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_around_it():
  apply_fn, anchor, batch = _tiny_problem()
  fisher = jax.jit(methods.fisher_diagonal, static_argnums=0)(
      apply_fn, anchor, batch)
  direction = jax.tree.map(
      lambda x: jax.random.normal(jax.random.key(1), x.shape), anchor)

  @jax.jit
  def penalty_along(t):  # penalty at anchor + t * direction
    moved = jax.tree.map(lambda a, d: a + t * d, anchor, direction)
    return methods.quadratic_penalty(moved, anchor, fisher)

  assert float(penalty_along(0.0)) == 0.0
  unit = float(penalty_along(1.0))
  assert unit > 0
  for t in (0.5, 2.0, -3.0):
    np.testing.assert_allclose(penalty_along(t), t ** 2 * unit, rtol=1e-5)


@pytest.mark.parametrize('sampled', [False, True])
def test_fisher_from_vmap_grad_equals_a_per_example_loop(sampled):
  apply_fn, params, batch = _tiny_problem()
  key = jax.random.key(3) if sampled else None
  fisher = jax.jit(methods.fisher_diagonal, static_argnums=0)(
      apply_fn, params, batch, key)
  labels = batch['label']
  if sampled:  # the same labels the estimator draws from the model
    labels = jax.random.categorical(key, apply_fn(params, batch['input']))
  example_grad = jax.jit(jax.grad(
      lambda p, x, y: jax.nn.log_softmax(apply_fn(p, x[None])[0])[y]))
  expected = jax.tree.map(np.zeros_like, params)
  for x, y, weight in zip(batch['input'], labels, batch['mask']):
    grad = example_grad(params, x, y)
    expected = jax.tree.map(lambda e, g, w=weight: e + w * np.square(g),
                            expected, grad)
  chex.assert_trees_all_close(fisher, expected, rtol=1e-5, atol=1e-7)


def test_mas_and_scp_importances_match_their_definitions():
  apply_fn, params, batch = _tiny_problem()
  mas = jax.jit(methods.mas_importance, static_argnums=0)(
      apply_fn, params, batch)
  example_grad = jax.jit(jax.grad(
      lambda p, x: jnp.sum(apply_fn(p, x[None]) ** 2)))
  expected = jax.tree.map(np.zeros_like, params)
  for x, weight in zip(batch['input'], batch['mask']):
    expected = jax.tree.map(lambda e, g, w=weight: e + w * np.abs(g),
                            expected, example_grad(params, x))
  chex.assert_trees_all_close(mas, expected, rtol=1e-5, atol=1e-7)

  key = jax.random.key(5)
  scp = jax.jit(methods.scp_importance, static_argnums=(0, 4))(
      apply_fn, params, batch, key, 16)
  real = batch['mask'] > 0
  directions = jax.random.normal(key, (16, 10))
  directions /= jnp.linalg.norm(directions, axis=-1, keepdims=True)
  projection_grad = jax.jit(jax.grad(lambda p, xi: jnp.dot(jax.nn.softmax(
      apply_fn(p, batch['input'][real])).mean(0), xi)))
  sums = jax.tree.map(np.zeros_like, params)
  for xi in directions:
    sums = jax.tree.map(lambda s, g: s + np.square(g), sums,
                        projection_grad(params, xi))
  expected = jax.tree.map(lambda s: real.sum() * s / 16, sums)
  chex.assert_trees_all_close(scp, expected, rtol=1e-4, atol=1e-9)


def test_si_importance_formula():
  path = {'w': jnp.array([2.0, -1.0, 0.5])}
  start = {'w': jnp.array([0.0, 0.0, 1.0])}
  end = {'w': jnp.array([1.0, 3.0, 1.0])}
  omega = methods.si_importance(path, start, end, damping=0.1)
  # Negative path credit counts as zero; no movement divides by the damping.
  np.testing.assert_allclose(omega['w'], [2.0 / 1.1, 0.0, 0.5 / 0.1],
                             rtol=1e-6)


def test_agem_projection():
  rng = np.random.default_rng(0)
  for _ in range(20):
    grads = {'a': jnp.asarray(rng.normal(size=(3, 4))),
             'b': jnp.asarray(rng.normal(size=5))}
    memory = {'a': jnp.asarray(rng.normal(size=(3, 4))),
              'b': jnp.asarray(rng.normal(size=5))}
    projected = methods.agem_project(grads, memory)
    dot = float(otu.tree_vdot(grads, memory))
    if dot >= 0:
      chex.assert_trees_all_close(projected, grads)
    else:  # the conflicting component removed, nothing more
      assert abs(float(otu.tree_vdot(projected, memory))) < 1e-5
      residual = jax.tree.map(jnp.subtract, grads, projected)
      cosine = float(otu.tree_vdot(residual, memory)) / np.sqrt(
          float(otu.tree_vdot(residual, residual))
          * float(otu.tree_vdot(memory, memory)))
      np.testing.assert_allclose(abs(cosine), 1.0, rtol=1e-5)
  memory = {'a': jnp.ones(3), 'b': jnp.zeros(2)}
  conflict = {'a': -jnp.ones(3), 'b': jnp.ones(2)}
  assert float(otu.tree_vdot(methods.agem_project(conflict, memory),
                                 memory)) >= -1e-6


def test_lifelong_metrics_match_a_hand_computed_matrix():
  matrix = [[0.9, 0.2, 0.1],
            [0.6, 0.8, 0.3],
            [0.5, 0.7, 0.95]]
  random_init = [0.1, 0.15, 0.05]
  result = metrics.lifelong_metrics(matrix, random_init)
  np.testing.assert_allclose(result['acc'], (0.5 + 0.7 + 0.95) / 3)
  np.testing.assert_allclose(result['bwt'], ((0.5 - 0.9) + (0.7 - 0.8)) / 2)
  np.testing.assert_allclose(result['fwt'], ((0.2 - 0.15) + (0.3 - 0.05)) / 2)
  with pytest.raises(ValueError, match='square'):
    metrics.lifelong_metrics([[0.1, 0.2]], [0.1])


def test_rotation_matches_rot90_and_keeps_zero_angle():
  images = np.random.default_rng(0).random((3, 7, 7)).astype(np.float32)
  np.testing.assert_array_equal(tasks.rotate_images(images, 0), images)
  np.testing.assert_allclose(tasks.rotate_images(images, 90),
                             np.rot90(images, 1, axes=(1, 2)), atol=1e-5)
  np.testing.assert_allclose(tasks.rotate_images(images, 180),
                             images[:, ::-1, ::-1], atol=1e-5)


@pytest.mark.parametrize('kind', tasks.KINDS)
def test_task_sequences_on_digits(kind):
  config = config_lib.get_config()
  config.tasks.kind = kind
  train_tasks, test_tasks = tasks.make_tasks(config)
  assert len(train_tasks) == len(test_tasks) == 5
  for t, task in enumerate(train_tasks):
    n = len(task['label'])
    chex.assert_shape([task['input'], task['class_mask']], [(n, 64), (n, 10)])
    assert task['input'].dtype == np.float32 and task['label'].dtype == np.int32
    allowed = task['class_mask'][np.arange(n), task['label']]
    np.testing.assert_array_equal(allowed, 1.0)  # every label is in its head
    if kind == 'split':
      assert set(np.unique(task['label'])) == {2 * t, 2 * t + 1}
      np.testing.assert_array_equal(task['class_mask'].sum(1), 2.0)
    elif kind == 'permuted':  # the same pixels, reordered
      np.testing.assert_array_equal(np.sort(task['input'], 1),
                                    np.sort(train_tasks[0]['input'], 1))
  if kind != 'split':
    assert not np.allclose(train_tasks[1]['input'], train_tasks[0]['input'])


def test_tfds_source_builds_tasks():
  config = config_lib.get_config()
  config.tasks.source = 'tfds'
  config.tasks.kind = 'permuted'
  config.tasks.num_tasks = 2
  with tfds.testing.mock_data(num_examples=24,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    train_tasks, test_tasks = tasks.make_tasks(config)
  chex.assert_shape(train_tasks[1]['input'], (24, 784))
  assert 0.0 <= train_tasks[0]['input'].min() <= train_tasks[0]['input'].max() <= 1.0
  assert len(test_tasks[0]['label']) == 24


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason='no MNIST in ../shared/data')
def test_rotated_mnist_tasks():
  config = config_lib.get_config('rotated_mnist')
  config.tasks.mnist_dir = MNIST_DIR
  config.tasks.train_per_task = 500
  config.tasks.test_per_task = 200
  train_tasks, test_tasks = tasks.make_tasks(config)
  chex.assert_shape([train_tasks[4]['input'], test_tasks[4]['input']],
                    [(500, 784), (200, 784)])
  np.testing.assert_array_equal(train_tasks[0]['label'], train_tasks[4]['label'])
  # Rotation moves ink but keeps most of it (bilinear blurs a little).
  ink = [t['input'].sum() for t in train_tasks]
  np.testing.assert_allclose(ink, ink[0], rtol=0.1)


def test_bad_configs_fail_clearly(tmp_path):
  with pytest.raises(errors.ConfigError, match='unknown lifelong'):
    config_lib.get_config('nope')
  for field, value, match in [
      ('method', 'nope', 'config.method'),
      ('tasks.kind', 'nope', 'tasks.kind'),
      ('tasks.source', 'nope', 'tasks.source'),
      ('tasks.num_tasks', 3, 'divisor'),
      ('ewc.strength', -1.0, 'ewc.strength'),
      ('ewc.fisher', 'nope', 'ewc.fisher'),
      ('steps_per_task', 0, 'steps_per_task'),
  ]:
    config = config_lib.get_config()
    if field == 'tasks.num_tasks':
      config.tasks.kind = 'split'
    if field == 'ewc.strength':
      config.method = 'ewc'
    parent, _, name = field.rpartition('.')
    (config[parent] if parent else config)[name] = value
    with pytest.raises(errors.ConfigError, match=match):
      train.train_and_evaluate(config, str(tmp_path / 'run'))
  config = config_lib.get_config('rotated_mnist')
  config.tasks.mnist_dir = str(tmp_path / 'absent')
  with pytest.raises(errors.DataError, match='missing MNIST'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')


# The most state: RWalk's anchor, importance and three running sums; PackNet's
# owners, changed within a task.
RESUMED = ('rwalk', 'packnet')
# One fixed MLP each (the growing ones are tested in test_lifelong_growth.py).
FIXED_MODEL = tuple(m for m in methods.METHODS if m not in methods.GROWING)


def _small_config(method):
  config = config_lib.get_config('quick')
  config.method = method
  config.tasks.num_tasks = 2
  config.steps_per_task = 80
  config.model.features = (64,)
  config.importance_examples = 256
  config.scp.num_projections = 16
  # Milder than the defaults (tuned for 5 tasks), so this small MLP learns both.
  config.ewc.strength, config.mas.strength, config.si.strength = 300.0, 10.0, 10.0
  config.rwalk.strength, config.scp.strength = 10.0, 1e4
  config.lwf.strength = 10.0  # permuted inputs: the old outputs need weight
  config.packnet.prune_fraction, config.packnet.retrain_steps = 0.3, 20
  if method in RESUMED:  # mid-task checkpoints too, the first one in task 0
    config.checkpoint_every = 50
    config.keep_checkpoints = 4
  config.log_every = 40
  config.plots = False
  config.num_devices = 2
  return config


def _accuracies(config, params, test_tasks, owners=None) -> list[float]:
  """Each test task's accuracy of `params`, computed here from the model.

  With PackNet's `owners`, task j drops the weights of the tasks after j.
  """
  model = models.MLP(tuple(config.model.features), num_outputs=10)
  accuracies = []
  for j, task in enumerate(test_tasks):
    weights = params
    if owners is not None:
      weights = jax.tree.map(
          lambda w, o, j=j: np.where((o > j) & (o != methods.FREE), 0.0, w),
          params, owners)
    logits = np.asarray(model.apply({'params': weights}, task['input']))
    logits = np.where(task['class_mask'] > 0, logits, -np.inf)
    accuracies.append(float(np.mean(logits.argmax(-1) == task['label'])))
  return accuracies


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Every fixed-model method trained on two permuted-digit tasks (2 devices)."""
  results = {}
  for method in FIXED_MODEL:
    workdir = str(tmp_path_factory.mktemp(method))
    results[method] = (workdir, train.train_and_evaluate(_small_config(method),
                                                         workdir))
  return results


@pytest.mark.parametrize('method', FIXED_MODEL)
def test_each_method_learns_its_tasks(runs, method):
  workdir, result = runs[method]
  with open(os.path.join(workdir, 'accuracy_matrix.json')) as f:
    record = json.load(f)
  matrix, random_init = np.asarray(record['matrix']), record['random_init']
  chex.assert_shape(matrix, (2, 2))
  assert max(random_init) < 0.25  # chance is 0.1
  # Chance is 0.1; the penalties trade some of the second task for the first.
  assert matrix[0, 0] > 0.8 and matrix[1, 1] > 0.3, matrix
  assert result.metrics['acc'] > 0.55, matrix
  # The last row is the final model's accuracy on each task, as reported.
  config = _small_config(method)
  _, test_tasks = tasks.make_tasks(config)
  params, owners = jax.device_get((result.state.train.params,
                                   result.state.owners))
  final = _accuracies(config, params, test_tasks, owners or None)
  np.testing.assert_allclose(matrix[-1], final, atol=1e-6)
  np.testing.assert_allclose(
      [result.metrics['task0/accuracy'], result.metrics['task1/accuracy']],
      final, atol=1e-6)
  np.testing.assert_allclose(result.metrics['acc'], np.mean(final), atol=1e-6)
  assert result.metrics['step'] == 160
  chex.assert_tree_all_finite(result.state.train.params)


def test_methods_agree_until_the_first_task_ends(runs):
  # Same initialization and batches; no penalty, memory, old model or union
  # before task 1 (PackNet prunes within task 0).
  rows = {m: np.asarray(jax.device_get(r.state.matrix))[0]
          for m, (_, r) in runs.items() if m != 'packnet'}
  for method, row in rows.items():
    np.testing.assert_allclose(row, rows['finetune'], atol=1e-6,
                               err_msg=method)


def test_methods_forget_less_than_finetuning(runs):
  after = {m: json.load(open(os.path.join(w, 'accuracy_matrix.json')))[
      'matrix'][1][0] for m, (w, _) in runs.items()}
  # Permuted pixels share nothing, so plain fine-tuning loses much of task 0.
  assert after['finetune'] < 0.7, after
  for method in ('multitask', 'ewc', 'mas', 'rwalk', 'scp', 'agem', 'gem',
                 'lwf', 'packnet'):
    assert after[method] > after['finetune'] + 0.1, (method, after)


@pytest.mark.parametrize('method', RESUMED)
def test_resume_in_an_earlier_task_ends_like_an_uninterrupted_run(
    runs, method, tmp_path):
  workdir, result = runs[method]
  resumed_dir = str(tmp_path / 'resumed')
  shutil.copytree(workdir, resumed_dir)
  checkpoints = os.path.join(resumed_dir, 'checkpoints')
  assert sorted(int(s) for s in os.listdir(checkpoints) if s.isdigit()) == [
      50, 100, 150, 160]
  for step in ('100', '150', '160'):  # as if killed at step 60, in task 0
    shutil.rmtree(os.path.join(checkpoints, step))
  resumed = train.train_and_evaluate(_small_config(method), resumed_dir)
  without_key = lambda s: s.replace(train=s.train.replace(key=None))
  chex.assert_trees_all_close(without_key(resumed.state),
                              without_key(result.state), atol=1e-6)
  for name in ('acc', 'bwt', 'fwt'):
    np.testing.assert_allclose(resumed.metrics[name], result.metrics[name])


@pytest.mark.parametrize('method', ['agem', 'gem'])
def test_sharded_step_equals_one_device(method):
  config = _small_config(method)  # two sharded batches, one projection
  train_tasks, _ = tasks.make_tasks(config)
  batch = {k: v[:64] for k, v in train_tasks[0].items()}
  memory = {k: v[64:128] for k, v in train_tasks[0].items()}
  if method == 'agem':
    memory['weight'] = np.ones(64, np.float32)
  else:  # GEM's one slot (2 tasks), its examples sharded; a conflicting task
    memory = {k: v[None, 64:128] for k, v in train_tasks[1].items()}
  model = models.MLP(tuple(config.model.features), num_outputs=10)
  apply_fn = lambda params, x, task: model.apply({'params': params}, x)
  tx = optim.make_optimizer(config.optimizer, config.steps_per_task)
  outputs = []
  for devices in (1, 8):
    mesh = mesh_lib.make_mesh(devices)
    step = state_lib.make_train_step(config, apply_fn, tx, mesh)
    state = state_lib.initial_state(config, train_state.create_train_state(
        model, tx, batch['input'][:1], jax.random.key(0), mesh), [0.1, 0.1],
                                    mesh)
    # In task 1, where GEM's slot holds an earlier task.
    state = state.replace(train=state.train.replace(
        step=state.train.step + config.steps_per_task))
    sharding = state_lib.memory_sharding(config, mesh)
    for _ in range(3):
      state, step_metrics = step(
          state, mesh_lib.shard_batch(batch, mesh),
          jax.tree.map(lambda x, s=sharding: jax.device_put(x, s), memory))
    outputs.append(jax.device_get((state.replace(train=state.train.replace(
        key=None)), step_metrics)))
  chex.assert_trees_all_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-6)
  if method == 'gem':  # the last step solved the QP
    assert outputs[0][1]['memory_conflict'] == 1.0
