"""HW14's GEM, LwF and PackNet: the QP, the distillation loss, the masks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from optax import tree_utils as otu
import pytest
import scipy.optimize

from lib import errors
from lib import mesh as mesh_lib
from lib import models
from lib import optim
from lib import train_state
from projects.lifelong import config as config_lib
from projects.lifelong import methods
from projects.lifelong import sequence
from projects.lifelong import state as state_lib
from projects.lifelong import tasks

gem_project = jax.jit(methods.gem_project)


def _reference_gem(grads, task_grads, margin):
  """GEM's dual QP by scipy's NNLS (float64): v = margin + argmin_{w >= 0}
  ||G^T w + G^T margin + g||, the same objective up to a constant."""
  g, rows = np.float64(grads), np.float64(task_grads)
  shift = g + rows.T @ np.full(len(rows), margin)
  excess, _ = scipy.optimize.nnls(rows.T, -shift)
  return g + rows.T @ (excess + margin)


@pytest.mark.parametrize('margin', [0.0, 0.5])
def test_gem_projection_solves_the_dual_qp(margin):
  rng = np.random.default_rng(0)
  projected_any = False
  for trial in range(12):
    grads = rng.normal(size=30).astype(np.float32)
    task_grads = rng.normal(size=(4, 30)).astype(np.float32)
    valid = np.arange(4) < 1 + trial % 4
    # Tree-shaped gradients: one [5, 6] leaf, as a layer's kernel.
    projected, conflict = gem_project(
        {'w': grads.reshape(5, 6)}, {'w': task_grads.reshape(4, 5, 6)},
        jnp.asarray(valid), margin)
    projected = np.asarray(projected['w']).ravel()
    chex.assert_tree_all_finite(projected)
    dots = task_grads[valid] @ grads
    assert bool(conflict) == bool(np.any(dots < 0))
    if not conflict:
      np.testing.assert_array_equal(projected, grads)
      continue
    projected_any = True
    scale = np.linalg.norm(grads) * np.linalg.norm(task_grads, axis=1)
    assert np.all(task_grads[valid] @ projected >= -1e-5 * scale[valid])
    np.testing.assert_allclose(
        projected, _reference_gem(grads, task_grads[valid], margin),
        rtol=1e-4, atol=1e-4)
  assert projected_any


def test_gem_projection_leaves_agreeing_gradients_alone():
  task_grads = {'w': jnp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])}
  grads = {'w': jnp.asarray([0.5, 0.2, -3.0])}
  projected, conflict = gem_project(grads, task_grads,
                                    jnp.asarray([True, True]), 0.5)
  assert not conflict
  chex.assert_trees_all_equal(projected, grads)
  # The only conflict is with a slot not yet filled: ignored too.
  projected, conflict = gem_project({'w': jnp.asarray([0.5, -0.2, 1.0])},
                                    task_grads, jnp.asarray([True, False]), 0.5)
  assert not conflict


def test_nonnegative_qp_is_exact_on_a_known_answer():
  # min 1/2 |w|^2 + c.w on w >= 0: w = max(-c, 0); the third is not allowed.
  w = jax.jit(methods.nonnegative_qp)(
      jnp.eye(3), jnp.asarray([-2.0, 1.0, -1.0]),
      jnp.asarray([True, True, False]))
  np.testing.assert_allclose(w, [2.0, 0.0, 0.0], atol=1e-6)


def _tiny_model(seed=0):
  model = models.MLP((8,), num_outputs=10, activation=jnp.tanh)
  inputs = np.random.default_rng(seed).normal(size=(6, 5)).astype(np.float32)
  params = model.init(jax.random.key(seed), inputs[:1])['params']
  return (lambda p, x: model.apply({'params': p}, x)), params, inputs


def test_lwf_loss_is_zero_at_the_old_model_and_positive_elsewhere():
  apply_fn, old, inputs = _tiny_model()
  loss = jax.jit(jax.value_and_grad(methods.distillation_loss, argnums=1),
                 static_argnums=(0, 4))
  value, grads = loss(apply_fn, old, old, inputs, 2.0)
  assert float(value) == 0.0
  chex.assert_trees_all_close(grads, otu.tree_zeros_like(grads), atol=1e-7)
  moved = jax.tree.map(lambda p: p + 0.3, old)
  value, _ = loss(apply_fn, moved, old, inputs, 2.0)
  # KL(softmax(old / 2) || softmax(new / 2)), written out in numpy.
  soft = lambda p: np.asarray(jax.nn.softmax(apply_fn(p, inputs) / 2.0))
  expected = np.mean(np.sum(soft(old) * np.log(soft(old) / soft(moved)), -1))
  assert float(value) > 0
  np.testing.assert_allclose(value, expected, rtol=1e-4)


def test_lwf_step_distils_the_previous_model_on_the_batch_alone():
  config = config_lib.get_config('quick')
  config.method, config.steps_per_task = 'lwf', 10
  apply_fn, params, inputs = _tiny_model()
  batch = {'input': inputs, 'label': np.arange(6, dtype=np.int32),
           'class_mask': np.ones((6, 10), np.float32)}
  mesh = mesh_lib.make_mesh(1)
  tx = optim.make_optimizer(config.optimizer, config.steps_per_task)
  step = state_lib.make_train_step(
      config, lambda p, x, task: apply_fn(p, x), tx, mesh)
  old = jax.tree.map(lambda p: p + 0.3, params)
  expected = config.lwf.strength * methods.distillation_loss(
      apply_fn, params, old, inputs, config.lwf.temperature)
  for task, penalty in ((0, 0.0), (1, expected)):
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # the step donates
    train = train_state.TrainState(
        step=jnp.int32(task * config.steps_per_task), params=copy(params),
        opt_state=tx.init(params), model_state={}, key=jax.random.key(0))
    state = state_lib.initial_state(config, train, [0.1] * 3, mesh)
    # No memory: the previous model and the current batch are all it uses.
    _, metrics = step(state.replace(anchor=copy(old)), batch, None)
    np.testing.assert_allclose(metrics['penalty'], penalty, rtol=1e-5)
  assert expected > 0


def test_packnet_prune_keeps_the_largest_free_weights_of_each_layer():
  signs = np.array([1.0, -1.0] * 6, np.float32)
  kernel = (np.arange(1, 13, dtype=np.float32) * signs).reshape(3, 4)
  owner = np.full((3, 4), methods.FREE, np.int32)
  owner[0] = 0  # task 0's row: |w| 1..4, the smallest, but not free
  params = {'kernel': jnp.asarray(kernel), 'bias': jnp.asarray([0.1, -0.2])}
  owners = {'kernel': jnp.asarray(owner),
            'bias': jnp.full(2, methods.FREE, jnp.int32)}
  pruned, new_owners = jax.jit(methods.packnet_prune, static_argnums=3)(
      params, owners, 1, 0.5)
  # Of the 8 free weights (|w| 5..12), the 4 smallest are zeroed and stay free.
  expected = kernel.copy()
  expected[1] = 0.0
  expected_owner = owner.copy()
  expected_owner[2] = 1
  np.testing.assert_array_equal(pruned['kernel'], expected)
  np.testing.assert_array_equal(new_owners['kernel'], expected_owner)
  np.testing.assert_array_equal(pruned['bias'], params['bias'])  # never pruned
  np.testing.assert_array_equal(new_owners['bias'], [1, 1])


def test_packnet_task_params_drop_only_later_tasks_weights():
  owner = jnp.asarray([0, 1, 2, methods.FREE])
  weights = jnp.asarray([1.0, 2.0, 3.0, 4.0])
  task_params = jax.jit(methods.packnet_task_params)
  for task, expected in ((0, [1, 0, 0, 4]), (1, [1, 2, 0, 4]),
                         (2, [1, 2, 3, 4])):
    np.testing.assert_array_equal(
        task_params({'w': weights}, {'w': owner}, task)['w'], expected)


def test_packnet_freezes_each_tasks_weights_and_evaluates_with_its_own():
  config = config_lib.get_config('quick')
  config.method = 'packnet'
  config.steps_per_task, config.packnet.retrain_steps = 30, 10
  config.model.features = (32,)
  train_tasks, test_tasks = tasks.make_tasks(config)
  run = sequence.TaskSequence(config, train_tasks, test_tasks,
                              mesh_lib.make_mesh(2))
  state = run.init()
  ends = []  # (params, owners) at the end of each task
  for step in range(1, 3 * config.steps_per_task + 1):
    state, _ = run.step(state, step)
    if step % config.steps_per_task == 0:
      ends.append(jax.device_get((state.train.params, state.owners)))
  params, owners = ends[-1]
  for task, (kept, kept_owners) in enumerate(ends[:-1]):
    assert (kept_owners['Dense_0']['kernel'] == task).any()
    for layer in ('Dense_0', 'Dense_1'):  # biases are all task 0's
      for name in ('kernel', 'bias'):
        mine = kept_owners[layer][name] == task
        np.testing.assert_array_equal(owners[layer][name][mine], task)
        np.testing.assert_array_equal(  # bit-identical
            params[layer][name][mine], kept[layer][name][mine])
  later = owners['Dense_0']['kernel'] == 2
  assert not np.array_equal(params['Dense_0']['kernel'][later],
                            ends[0][0]['Dense_0']['kernel'][later])
  # Same weights, same masks: a task's accuracy never changes once learned.
  matrix = np.asarray(jax.device_get(state.matrix))
  np.testing.assert_array_equal(matrix[1:, 0], matrix[0, 0])
  np.testing.assert_array_equal(matrix[2, 1], matrix[1, 1])
  # Scrambling task 2's weights leaves tasks 0 and 1 as they were.
  scrambled = jax.tree.map(lambda w, o: np.where(o == 2, 100.0 * w, w),
                           params, owners)
  before = run.accuracies(state.train, state.owners)
  after = run.accuracies(state.train.replace(params=scrambled), state.owners)
  np.testing.assert_array_equal(after[:2], before[:2])
  assert after[2] != before[2]


@pytest.mark.parametrize('method, field, value, match', [
    ('gem', 'gem.margin', -0.1, 'gem.margin'),
    ('gem', 'gem.memory_per_task', 0, 'gem.memory_per_task'),
    ('gem', 'tasks.num_tasks', 12, 'at most 11 tasks'),
    ('lwf', 'lwf.strength', -1.0, 'lwf.strength'),
    ('lwf', 'lwf.temperature', 0.0, 'lwf.temperature'),
    ('packnet', 'packnet.prune_fraction', 1.0, 'prune_fraction'),
    ('packnet', 'packnet.retrain_steps', 300, 'retrain_steps'),
    ('finetune', 'tasks.order', (0, 0, 1, 2, 3), 'permutation of 0..4'),
    ('finetune', 'tasks.order', (1, 2, 3, 4, 5), 'permutation of 0..4'),
    ('finetune', 'tasks.order', (2, 1, 0), 'permutation of 0..4'),
    ('net2net', 'net2net.widen_by', -1, 'net2net.widen_by'),
    ('net2net', 'net2net.noise', -0.1, 'net2net.noise'),
    ('net2net', 'model.features', (), 'Net2Net widens'),
])
def test_bad_method_configs_fail_clearly(method, field, value, match):
  config = config_lib.get_config()
  config.method = method
  parent, name = field.split('.')
  config[parent][name] = value
  with pytest.raises(errors.ConfigError, match=match):
    config_lib.validate(config)
