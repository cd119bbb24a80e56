"""HW15: meta-gradients, inner loops, learning on sinusoids, Omniglot episodes."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import errors
from lib import metric_log
from projects.meta import algorithms
from projects.meta import config as config_lib
from projects.meta import learners
from projects.meta import models
from projects.meta import problem as problem_lib
from projects.meta import reload
from projects.meta import tasks as tasks_lib
from projects.meta import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
OMNIGLOT = os.path.join(REPO, '..', 'shared', 'data', 'omniglot_background',
                        'images_background.npz')


def _tiny_tasks(num_tasks=2, shots=3, query=4, seed=0):
  return jax.tree.map(jnp.asarray, tasks_lib.sinusoid_tasks(
      np.random.default_rng(seed), num_tasks, shots, query))


def _tiny_meta(method, inner_steps=2, inner_lr=0.1):
  learner = models.Learner(models.MLPBody((4,)), 1)
  return algorithms.MetaLearner(learner, method, 'mse', inner_lr, inner_steps)


def _flat(tree):
  return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize('method', ['maml', 'anil', 'metasgd'])
def test_second_order_meta_gradient_matches_finite_differences(method):
  with jax.enable_x64(True):
    meta = _tiny_meta(method)
    tasks = jax.tree.map(lambda x: x.astype(jnp.float64), _tiny_tasks())
    params = jax.tree.map(lambda x: x.astype(jnp.float64),
                          meta.init(jax.random.key(0), tasks['support_input'][0]))
    _, grads = meta.meta_gradient(params, tasks)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    loss = lambda v: meta.meta_loss(unravel(v), tasks)[0]
    eps = 1e-5
    numeric = jax.jit(jax.vmap(
        lambda e: (loss(flat + eps * e) - loss(flat - eps * e)) / (2 * eps)))(
            jnp.eye(len(flat)))
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(grads)[0],
                               numeric, rtol=1e-5, atol=1e-8)


def test_first_order_maml_drops_the_second_order_term():
  with jax.enable_x64(True):
    tasks = jax.tree.map(lambda x: x.astype(jnp.float64), _tiny_tasks())
    maml, fomaml = _tiny_meta('maml'), _tiny_meta('fomaml')
    params = jax.tree.map(lambda x: x.astype(jnp.float64),
                          maml.init(jax.random.key(1), tasks['support_input'][0]))
    _, maml_grads = maml.meta_gradient(params, tasks)
    _, fo_grads = fomaml.meta_gradient(params, tasks)
    # Known answer: FOMAML's gradient is the mean query gradient at the
    # adapted parameters.
    learner = maml.learner

    def query_grad(task):
      support = lambda p: algorithms.task_loss(
          'mse', learner.apply(p, task['support_input']), task['support_label'])
      adapted, _ = algorithms.gradient_descent(support, params['net'], 0.1, 2)
      return jax.grad(lambda p: algorithms.task_loss(
          'mse', learner.apply(p, task['query_input']),
          task['query_label']))(adapted)

    expected = jax.tree.map(lambda g: g.mean(0), jax.vmap(query_grad)(tasks))
    chex.assert_trees_all_close(fo_grads['net'], expected, rtol=1e-10)
    difference = _flat(maml_grads) - _flat(fo_grads)
    assert jnp.linalg.norm(difference) > 1e-3 * jnp.linalg.norm(
        _flat(maml_grads))


def test_gradient_descent_known_answer_and_trajectory():
  loss = lambda p: jnp.sum(jnp.square(p['w'] - 3.0))
  params = {'w': jnp.zeros(2)}
  adapted, seen = algorithms.gradient_descent(loss, params, 0.25, 2,
                                              observe=loss)
  # Each step halves the distance to 3: 0 -> 1.5 -> 2.25.
  np.testing.assert_allclose(adapted['w'], [2.25, 2.25])
  np.testing.assert_allclose(seen, [18.0, 4.5, 1.125])
  lrs = {'w': jnp.array([0.25, 0.5])}  # Meta-SGD: one rate per parameter
  adapted, _ = algorithms.gradient_descent(loss, params, lrs, 1)
  np.testing.assert_allclose(adapted['w'], [1.5, 3.0])


def test_inner_loop_lowers_support_loss_on_omniglot_like_episodes():
  pool = np.random.default_rng(0).random((10, 4, 12, 12, 1), np.float32)
  task = tasks_lib.episodes(np.random.default_rng(1), pool, 1, 5, 2, 2)
  task = jax.tree.map(lambda x: jnp.asarray(x[0]), task)
  learner = models.Learner(models.ConvBody(channels=8, num_blocks=2), 5)
  params = learner.init(jax.random.key(0), task['support_input'])
  support = lambda p: algorithms.task_loss(
      'cross_entropy', learner.apply(p, task['support_input']),
      task['support_label'])
  _, losses = jax.jit(lambda p: algorithms.gradient_descent(
      support, p, 0.4, 5, observe=support))(params)
  chex.assert_shape(losses, (6,))
  assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('size', [28, 7])
def test_im2col_conv_matches_xla(stride, size):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 5)), jnp.float32)
  expected = jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), 'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  chex.assert_trees_all_close(models.im2col_conv3x3(x, kernel, stride),
                              expected, rtol=1e-4, atol=1e-4)


def _meta_train(meta, num_steps=300, num_tasks=8, seed=0, meta_lr=1e-2):
  """num_steps Adam meta-steps on fresh sinusoid tasks, in one scan."""
  tx = optax.adam(meta_lr)
  tasks = jax.tree.map(
      lambda x: jnp.asarray(x).reshape(num_steps, num_tasks, *x.shape[1:]),
      tasks_lib.sinusoid_tasks(np.random.default_rng(seed),
                               num_steps * num_tasks, 10, 10))
  params = meta.init(jax.random.key(seed), tasks['support_input'][0, 0])
  loss_fn = learners.make_loss_fn(
      config_lib.get_config(), problem_lib.Problem('sinusoid', {}), meta)

  @jax.jit
  def run(params):
    def step(carry, batch):
      params, opt_state = carry
      grads = jax.grad(lambda p: loss_fn(p, {}, batch, None)[0])(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    return jax.lax.scan(step, (params, tx.init(params)), tasks)[0][0]

  return run(params)


@pytest.mark.parametrize('method', algorithms.METHODS)
def test_each_method_learns_sinusoid_regression(method):
  # Reptile with one inner step would be joint training: it needs several;
  # ANIL adapts a linear head only, which needs a larger step and more
  # meta-steps (at 400 its adaptation gain was 0.83x on one machine, 0.72x at
  # 800; seeds 1 and 2 gave 0.44x and 0.47x at 800).
  meta = algorithms.MetaLearner(
      models.Learner(models.MLPBody((40, 40)), 1), method, 'mse',
      0.1 if method == 'anil' else 0.01, 5 if method == 'reptile' else 1)
  params = _meta_train(meta, num_steps=800 if method == 'anil' else 400)
  # Meta-SGD's learned rates are tuned for its training's single step.
  steps = 1 if method == 'metasgd' else 10
  test = jax.tree.map(jnp.asarray, tasks_lib.sinusoid_tasks(
      np.random.default_rng(99), 200, 10, 50))
  mse = meta.evaluate(params, test, steps)['mse'].mean(0)  # 0..steps
  zero_mse = float(jnp.mean(test['query_label']**2))
  untrained = meta.evaluate(meta.init(jax.random.key(0), test[
      'support_input'][0]), test, steps)['mse'].mean(0)
  assert mse[-1] < 0.8 * mse[0], mse  # adaptation helps
  assert mse[-1] < 0.8 * zero_mse, (mse, zero_mse)
  assert mse[-1] < 0.8 * untrained[-1], (mse, untrained)  # meta-training helps


def _quick(tmp_path, **overrides):
  config = config_lib.get_config('quick')
  config.update(batch_size=8, num_steps=60, eval_every=30, log_every=10,
                checkpoint_every=30, plots=False, num_devices=2)
  config.eval.update(val_episodes=16, test_episodes=40, batch_episodes=16)
  for name, value in overrides.items():
    group, field = name.split('.') if '.' in name else (None, name)
    if group:
      config[group][field] = value
    else:
      config[name] = value
  return config


def test_train_resume_and_reload_give_the_same_results(tmp_path):
  config = _quick(tmp_path)
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  assert {'test/mse_ci95', 'test/mse_step1', 'baseline/zero_mse',
          'train/mse'} <= set(straight.metrics)
  half = _quick(tmp_path, num_steps=30)
  train.train_and_evaluate(half, str(tmp_path / 'resumed'))
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  chex.assert_trees_all_close(resumed.state.params, straight.state.params,
                              rtol=1e-5, atol=1e-6)
  records = metric_log.read_metrics(str(tmp_path / 'resumed'))
  assert [r['step'] for r in records if r['split'] == 'val'] == [30, 60]
  reloaded = reload.evaluate(str(tmp_path / 'straight'), episodes=40)
  assert reloaded['mse'] == pytest.approx(straight.metrics['test/mse'],
                                          rel=1e-5)
  other = reload.evaluate(str(tmp_path / 'straight'), shots=5, episodes=40)
  assert other['mse'] != reloaded['mse']


def test_processes_draw_shares_of_the_one_process_batches(monkeypatch):
  # Two processes' rows of a step's meta batch (and of an episode chunk) make
  # up the batch one process draws, so both train and test the same.
  config = config_lib.get_config('quick')
  problem = problem_lib.Problem('sinusoid', dict.fromkeys(problem_lib.SPLITS))
  draw = lambda: (problem_lib.train_batch(config, problem, 7), next(
      problem_lib.episode_chunks(problem, 'test', 8, 8, ways=1, shots=3,
                                 query=2)))
  whole = draw()
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  shares = []
  for index in range(2):
    monkeypatch.setattr(jax, 'process_index', lambda: index)
    shares.append(draw())
  chex.assert_shape(shares[0][0]['support_input'], (8, 10, 1))
  combined = jax.tree.map(lambda a, b: np.concatenate([a, b]), *shares)
  chex.assert_trees_all_equal(combined, whole)
  assert not np.array_equal(shares[0][0]['query_label'],
                            shares[1][0]['query_label'])


def _write_tiny_omniglot(path, characters=14, drawings=6):
  """Characters as distinct random strokes (white background = True)."""
  rng = np.random.default_rng(0)
  prototypes = rng.random((characters, 1, 105, 105)) < 0.1
  jitter = rng.random((characters, drawings, 105, 105)) < 0.02
  ink = prototypes ^ jitter
  np.savez(path, images=~ink,
           labels=np.repeat(np.arange(characters)[:, None], drawings, 1))


def test_omniglot_npz_loader_and_disjoint_splits(tmp_path):
  path = tmp_path / 'omniglot.npz'
  _write_tiny_omniglot(path)
  pool = tasks_lib.load_omniglot_npz(str(path), 28)
  chex.assert_shape(pool, (14, 6, 28, 28, 1))
  assert pool.dtype == np.float32 and 0 <= pool.min() and pool.max() <= 1
  assert pool.mean() < 0.3  # ink is 1 on a 0 background
  train_pool, val, test = tasks_lib.split_classes(pool, 3, 4)
  assert (len(train_pool), len(val), len(test)) == (7, 3, 4)
  as_set = lambda p: {a.tobytes() for a in p[:, 0]}
  assert not as_set(train_pool) & as_set(test)
  assert not as_set(val) & as_set(test) and not as_set(train_pool) & as_set(val)
  rotated = tasks_lib.with_rotations(train_pool)
  chex.assert_shape(rotated, (28, 6, 28, 28, 1))
  np.testing.assert_array_equal(rotated[7], np.rot90(train_pool[0], 1, (1, 2)))
  with pytest.raises(errors.ConfigError, match='num_test_classes'):
    tasks_lib.split_classes(pool, 7, 7)
  with pytest.raises(errors.DataError, match='no Omniglot file'):
    tasks_lib.load_omniglot_npz(str(tmp_path / 'missing.npz'))


def test_episodes_are_n_way_k_shot_with_distinct_examples():
  # pool[c, e] holds the value 100 c + e everywhere.
  pool = (100 * np.arange(12)[:, None] + np.arange(8)[None]).astype(
      np.float32)[..., None, None, None] * np.ones((1, 1, 2, 2, 1), np.float32)
  ep = tasks_lib.episodes(np.random.default_rng(0), pool, 16, 5, 2, 3)
  chex.assert_shape(ep['support_input'], (16, 10, 2, 2, 1))
  chex.assert_shape(ep['query_label'], (16, 15))
  for t in range(16):
    s_ids = ep['support_input'][t, :, 0, 0, 0].astype(int)
    q_ids = ep['query_input'][t, :, 0, 0, 0].astype(int)
    assert len(set(s_ids) | set(q_ids)) == 25  # no example twice
    classes = {}
    for ids, labels in ((s_ids, ep['support_label'][t]),
                        (q_ids, ep['query_label'][t])):
      for i, label in zip(ids, labels):
        assert classes.setdefault(int(label), i // 100) == i // 100
    assert sorted(classes) == list(range(5))
    assert len(set(classes.values())) == 5
  with pytest.raises(errors.ConfigError, match='examples'):
    tasks_lib.episodes(np.random.default_rng(0), pool, 1, 5, 4, 5)


@pytest.mark.parametrize('method', ['maml', 'transfer'])
def test_omniglot_run_saves_and_reloads(tmp_path, method):
  path = tmp_path / 'omniglot.npz'
  _write_tiny_omniglot(path)
  config = config_lib.get_config('omniglot')
  config.method = method
  config.data.update(omniglot_path=str(path), num_val_classes=3,
                     num_test_classes=5)
  config.task.update(ways=3, shots=1, query=1, eval_query=2)
  config.data.image_size = 12  # 2 blocks: 12 -> 6 -> 3
  config.model.update(channels=4, num_blocks=2)
  config.transfer.finetune_steps = 5
  config.update(batch_size=8, num_steps=2, eval_every=2, log_every=1,
                checkpoint_every=0, plots=False, num_devices=2)
  config.eval.update(val_episodes=8, test_episodes=16, batch_episodes=8)
  result = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert 0 <= result.metrics['test/accuracy'] <= 1
  assert result.metrics['baseline/chance_accuracy'] == pytest.approx(1 / 3)
  chex.assert_tree_all_finite(result.state.params)
  reloaded = reload.evaluate(str(tmp_path / 'run'), episodes=16)
  assert reloaded['accuracy'] == pytest.approx(result.metrics['test/accuracy'])
  five_way = reload.evaluate(str(tmp_path / 'run'), ways=5, episodes=16)
  assert 0 <= five_way['accuracy'] <= 1 and np.isfinite(five_way['loss'])


def test_bad_configs_are_config_errors(tmp_path):
  config = config_lib.get_config('quick')
  config.method = 'nope'
  with pytest.raises(errors.ConfigError, match='config.method'):
    train.train_and_evaluate(config, str(tmp_path))
  config = config_lib.get_config('quick')
  config.task.ways = 3
  with pytest.raises(errors.ConfigError, match='ways'):
    train.train_and_evaluate(config, str(tmp_path))
  config = config_lib.get_config('quick')
  config.batch_size = 12
  with pytest.raises(errors.ConfigError, match='batch_size'):
    train.train_and_evaluate(config, str(tmp_path))
  config = config_lib.get_config('omniglot')
  config.data.omniglot_path = str(tmp_path / 'missing.npz')
  with pytest.raises(errors.DataError, match='no Omniglot file'):
    train.train_and_evaluate(config, str(tmp_path))
  with pytest.raises(errors.ConfigError, match='unknown meta'):
    config_lib.get_config('nope')


@pytest.mark.skipif(not os.path.exists(OMNIGLOT),
                    reason='real Omniglot not in ../shared/data')
def test_real_omniglot_background_set():
  pool = tasks_lib.load_omniglot_npz(OMNIGLOT, 28)
  chex.assert_shape(pool, (964, 20, 28, 28, 1))
  assert 0.05 < pool.mean() < 0.25  # strokes on a blank page
