"""Self-supervised learning: the losses against references, the EMA target and
queue, k-NN, the sharded step, and learning on digits."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import mesh as mesh_lib
from lib import optim
from lib.data import augment
from lib.data import images
from lib.errors import ConfigError
from projects.self_supervised import config as config_lib
from projects.self_supervised import evaluation
from projects.self_supervised import losses
from projects.self_supervised import methods
from projects.self_supervised import networks as networks_lib
from projects.self_supervised import train


def _naive_nt_xent(z1, z2, temperature):
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n = len(z1)
  total = 0.0
  for i in range(2 * n):
    partner = (i + n) % (2 * n)
    others = sum(np.exp(z[i] @ z[k] / temperature)
                 for k in range(2 * n) if k != i)
    total += -np.log(np.exp(z[i] @ z[partner] / temperature) / others)
  return total / (2 * n)


def test_nt_xent_matches_a_loop_over_pairs_and_is_symmetric():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(2, 5, 7)).astype(np.float32)
  for temperature in (0.1, 0.5, 1.0):
    np.testing.assert_allclose(losses.nt_xent(z1, z2, temperature),
                               _naive_nt_xent(z1, z2, temperature), rtol=1e-5)
  np.testing.assert_allclose(losses.nt_xent(z1, z2, 0.2),
                             losses.nt_xent(z2, z1, 0.2), rtol=1e-6)
  # Identical views and orthogonal examples: the partner always wins.
  eye = np.eye(4, dtype=np.float32)
  assert float(losses.nt_xent(eye, eye, 0.05)) < 1e-3


def test_vicreg_terms_on_hand_cases():
  # +-2 in each dimension, decorrelated: std 2 (variance term 0) and zero
  # off-diagonal covariance.
  signs = np.array(list(itertools.product([-2.0, 2.0], repeat=3)), np.float32)
  invariance, variance, covariance = losses.vicreg_terms(signs, signs)
  assert float(invariance) == 0.0
  assert float(variance) == 0.0
  np.testing.assert_allclose(covariance, 0.0, atol=1e-6)
  # A collapsed batch: std 0 gives a variance hinge near 1 per view.
  same = np.ones((8, 3), np.float32)
  _, variance, _ = losses.vicreg_terms(same, same)
  np.testing.assert_allclose(variance, 2 * (1 - np.sqrt(1e-4)), rtol=1e-5)
  # Two copies of one dimension: covariance (sum of squared off-diagonals / d).
  x = np.random.default_rng(1).normal(size=(16, 1)).astype(np.float32)
  pair = np.concatenate([x, x], axis=1)
  var = np.var(x, ddof=1)
  _, _, covariance = losses.vicreg_terms(pair, pair)
  np.testing.assert_allclose(covariance, 2 * (2 * var ** 2 / 2), rtol=1e-4)
  invariance, _, _ = losses.vicreg_terms(pair, pair + 1.0)
  np.testing.assert_allclose(invariance, 1.0, rtol=1e-6)


def test_moco_queue_is_a_fifo_of_fixed_size():
  queue, index = jnp.zeros((6, 2)), jnp.int32(0)
  batches = [jnp.full((2, 2), float(i + 1)) for i in range(4)]
  for keys in batches:
    queue, index = losses.enqueue(queue, index, keys)
    assert queue.shape == (6, 2)
  # Batch 4 replaced batch 1, the oldest; the next write replaces batch 2.
  np.testing.assert_array_equal(queue[:, 0], [4, 4, 2, 2, 3, 3])
  assert int(index) == 2


def test_ema_update_is_exact_and_passes_no_gradient():
  target = {'w': jnp.array([1.0, 2.0]), 'b': jnp.array(3.0)}
  online = {'w': jnp.array([5.0, -2.0]), 'b': jnp.array(1.0)}
  updated = losses.ema_update(target, online, 0.9)
  chex.assert_trees_all_close(updated, jax.tree.map(
      lambda t, o: 0.9 * t + 0.1 * o, target, online), rtol=1e-6)
  grads = jax.grad(lambda o: losses.ema_update(target, o, 0.9)['w'].sum())(
      online)
  chex.assert_trees_all_equal(grads, jax.tree.map(jnp.zeros_like, online))
  # The stop-gradient losses pass nothing to their targets.
  p, z = jnp.ones((3, 4)), jnp.arange(12.0).reshape(3, 4)
  for loss in (losses.byol_loss, losses.simsiam_loss):
    assert float(jnp.abs(jax.grad(lambda z: loss(p, z))(z)).max()) == 0.0
  np.testing.assert_allclose(losses.ema_momentum(0.99, 0, 10, 'cosine'), 0.99,
                             rtol=1e-6)
  np.testing.assert_allclose(losses.ema_momentum(0.99, 10, 10, 'cosine'), 1.0)


def test_knn_matches_a_brute_force_vote():
  rng = np.random.default_rng(2)
  train_x = rng.normal(size=(40, 6)).astype(np.float32)
  train_y = rng.integers(0, 3, 40).astype(np.int32)
  test_x = rng.normal(size=(9, 6)).astype(np.float32)
  k, temperature = 5, 0.3
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  expected = []
  for query in unit(test_x):
    similarity = unit(train_x) @ query
    nearest = np.argsort(-similarity)[:k]
    votes = np.zeros(3)
    for i in nearest:
      votes[train_y[i]] += np.exp(similarity[i] / temperature)
    expected.append(np.argmax(votes))
  predicted = evaluation.knn_predict(train_x, train_y, test_x, k=k,
                                     num_classes=3, temperature=temperature)
  np.testing.assert_array_equal(predicted, expected)


def test_probe_and_collapse_statistic_on_known_features():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 4, 200).astype(np.int32)
  features = np.eye(4, dtype=np.float32)[labels] * 3 + rng.normal(
      scale=0.1, size=(200, 4)).astype(np.float32)
  assert evaluation.linear_probe(features[:150], labels[:150], features[150:],
                                 labels[150:], 4, steps=200) == 1.0
  std, threshold = evaluation.collapse_statistic(np.ones((50, 16)))
  assert std == 0.0 and threshold == 0.125
  spread, _ = evaluation.collapse_statistic(rng.normal(size=(2000, 16)))
  np.testing.assert_allclose(spread, 1 / np.sqrt(16), rtol=0.05)


def test_config_validation_names_the_field():
  for field, value, message in (
      ('methods', ('simclr', 'dino'), 'config.methods'),
      ('simclr.temperature', 0.0, 'config.simclr.temperature'),
      ('moco.queue_size', 100, 'config.moco.queue_size'),
      ('augment.crop_scale', (0.9, 0.2), 'config.augment.crop_scale'),
      ('augment.jitter_strength', 1.5, 'config.augment.jitter_strength'),
      ('finetune.fractions', (0.0,), 'config.finetune.fractions')):
    config = config_lib.get_config('quick')
    parent, _, name = field.rpartition('.')
    (config[parent] if parent else config)[name] = value
    with pytest.raises(ConfigError, match=message.replace('.', r'\.')):
      config_lib.validate(config)
  with pytest.raises(ConfigError, match='unknown self_supervised config'):
    config_lib.get_config('nope')


def _tiny_config():
  config = config_lib.get_config('quick')
  config.model.channels = (4,)
  config.head.update(dim=8, hidden=16, predictor_hidden=8)
  config.batch_size = 16
  config.moco.queue_size = 32
  return config


def test_batch_coupled_losses_sharded_equal_unsharded():
  rng = np.random.default_rng(6)
  z1, z2 = rng.normal(size=(2, 16, 8)).astype(np.float32)
  vicreg = lambda a, b: jnp.stack(losses.vicreg_terms(a, b))
  simclr = lambda a, b: losses.nt_xent(a, b, 0.2)
  for loss in (simclr, vicreg):
    values = []
    for num_devices in (8, 1):
      mesh = mesh_lib.make_mesh(num_devices)
      inputs = mesh_lib.shard_batch((z1, z2), mesh)
      values.append(jax.jit(jax.value_and_grad(
          lambda a, b: loss(a, b).sum(), argnums=(0, 1)))(*inputs))
    chex.assert_trees_all_close(values[0], values[1], rtol=1e-5, atol=1e-6)


def test_sharded_step_equals_unsharded():
  method = 'simclr'
  config = _tiny_config()
  nets = networks_lib.make_networks(config, 10, method in
                                    methods.WITH_PREDICTOR)
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  views = augment.make_two_views(config.augment)
  pixels = np.random.default_rng(4).uniform(size=(16, 8, 8, 1)).astype(
      np.float32)
  results = []
  for num_devices in (2, 1):
    mesh = mesh_lib.make_mesh(num_devices)
    step = methods.make_train_step(method, nets, tx, config, mesh, views)
    state = methods.init_state(method, nets, tx, config, pixels[:1], mesh)
    for _ in range(2):
      state, metrics = step(state, mesh_lib.shard_batch({'image': pixels},
                                                        mesh))
    results.append((state.params, state.target, state.queue, metrics))
  chex.assert_tree_all_finite(results[0])
  # atol: Adam turns gradients that are zero in exact arithmetic into steps
  # of rounding-noise size (VICReg's terms ignore the last bias, for one).
  chex.assert_trees_all_close(results[0], results[1], rtol=1e-4, atol=1e-4)


def test_moco_step_moves_the_target_by_ema_and_fills_the_queue():
  config = _tiny_config()
  config.moco.momentum = 0.5
  nets = networks_lib.make_networks(config, 10, False)
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  mesh = mesh_lib.make_mesh(2)
  pixels = np.random.default_rng(5).uniform(size=(16, 8, 8, 1)).astype(
      np.float32)
  state = methods.init_state('moco', nets, tx, config, pixels[:1], mesh)
  before = jax.tree.map(np.asarray, (state.target['params'], state.queue))
  step = methods.make_train_step('moco', nets, tx, config, mesh,
                                 augment.make_two_views(config.augment))
  state, _ = step(state, mesh_lib.shard_batch({'image': pixels}, mesh))
  online = {k: state.params[k] for k in ('backbone', 'projector')}
  chex.assert_trees_all_close(state.target['params'], jax.tree.map(
      lambda t, o: 0.5 * t + 0.5 * o, before[0], online), rtol=1e-5,
                              atol=1e-6)
  assert int(state.queue_index) == 0  # 2 x 16 keys filled the 32 slots
  assert not np.allclose(state.queue, before[1])
  np.testing.assert_allclose(np.linalg.norm(state.queue, axis=1), 1.0,
                             rtol=1e-5)


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  config = config_lib.get_config('quick')
  config.num_devices = 2
  return train.train_and_evaluate(config, str(tmp_path_factory.mktemp('ssl')))


def test_quick_config_learns_on_digits(quick_run):
  metrics = quick_run.metrics
  # The tour's row: SimCLR's probe on 2 labels a class beats the random
  # backbone's by a clear margin, and the projections have not collapsed.
  assert metrics['simclr/probe/accuracy'] >= 0.7
  assert metrics['simclr/probe/accuracy'] > (
      metrics['random/probe/accuracy'] + 0.15)
  assert metrics['simclr/knn/accuracy'] > metrics['random/knn/accuracy']
  assert metrics['simclr/collapsed'] == 0.0
  assert metrics['simclr/feature_std'] >= metrics['simclr/collapse_threshold']


def test_a_collapsed_backbone_fails_the_tour_target(quick_run):
  params, model_state = quick_run.state['simclr']
  zeroed = jax.tree.map(jnp.zeros_like, params)
  config = config_lib.get_config('quick')
  nets = networks_lib.make_networks(config, 10, False)
  data = images.load_images(config.data)
  embedder = evaluation.make_embedder(nets, mesh_lib.make_mesh(2))
  metrics = evaluation.frozen_metrics(embedder, (zeroed, model_state), data,
                                      config.eval, 10, 64, config.seed)
  assert metrics['probe/accuracy'] < config.tour.target
  assert metrics['collapsed'] == 1.0
