"""The ensemble lecture: bagging, SAMME, calibration, the vmapped deep ensemble, learning."""

import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import ensemble as sk_ensemble
from sklearn import tree

from lib import errors
from lib import mesh as mesh_lib
from lib import models
from projects.ensemble import calibration
from projects.ensemble import classic
from projects.ensemble import comparison
from projects.ensemble import config as config_lib
from projects.ensemble import data as data_lib
from projects.ensemble import deep
from projects.ensemble import networks
from projects.ensemble import train
from projects.ensemble import weak_learners

MNIST_DIR = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared',
                         'data', 'mnist')


def test_bootstrap_draws_n_with_replacement_and_oob_masks_are_the_rest():
  rng = np.random.default_rng(0)
  indices = classic.bootstrap_indices(rng, 1000, 20)
  chex.assert_shape(indices, (20, 1000))
  assert indices.min() >= 0 and indices.max() < 1000
  assert classic.bootstrap_indices(rng, 1000, 3, max_samples=0.5).shape == (
      3, 500)
  masks = classic.out_of_bag_masks(indices, 1000)
  for rows, mask in zip(indices, masks):
    np.testing.assert_array_equal(~mask, np.isin(np.arange(1000), rows))
  # P(an example is out of bag) = (1 - 1/n)^n -> 1/e.
  np.testing.assert_allclose(masks.mean(), math.exp(-1), atol=0.01)


def test_bagging_oob_score_covers_the_training_set_and_matches_sklearn():
  x, y, _, _ = comparison.load_split('breast_cancer', 0.25, 0)
  make = lambda s: tree.DecisionTreeClassifier(random_state=s)
  ours = classic.Bagging(make, 30, seed=0).fit(x, y)
  assert ours.oob_fraction_ == 1.0  # (1 - 1/e)^30: every example is OOB once
  np.testing.assert_array_equal(ours.oob_masks_,
                                classic.out_of_bag_masks(ours.indices_, len(x)))
  theirs = sk_ensemble.BaggingClassifier(
      tree.DecisionTreeClassifier(), n_estimators=30, oob_score=True,
      random_state=0).fit(x, y)
  assert abs(ours.oob_score_ - theirs.oob_score_) < 0.03


def test_samme_update_by_hand():
  # 5 points, K = 3, uniform weights, the learner misses point 4: error 0.2,
  # alpha = log(0.8 / 0.2) + log(3 - 1) = log 8; the missed weight grows 8x.
  miss = np.array([0, 0, 0, 0, 1], bool)
  weights, alpha, error = classic.samme_update(np.full(5, 0.2), miss, 3)
  assert error == pytest.approx(0.2)
  assert alpha == pytest.approx(math.log(8))
  np.testing.assert_allclose(weights, [1 / 12] * 4 + [2 / 3])
  # No better than chance (error >= 1 - 1/K): weight 0, weights unchanged.
  weights, alpha, _ = classic.samme_update(np.full(5, 0.2), ~miss, 3)
  assert alpha == 0.0
  np.testing.assert_allclose(weights, np.full(5, 0.2))


def test_adaboost_first_stump_matches_the_hand_worked_round_and_sklearn():
  x = np.arange(5.0)[:, None]
  y = np.array([0, 0, 1, 1, 2])
  stump = lambda s: tree.DecisionTreeClassifier(max_depth=1, random_state=s)
  ours = classic.AdaBoost(stump, num_estimators=3).fit(x, y)
  # The best stump splits at 1.5 (0 | 1) and misses the lone class-2 point.
  assert ours.errors_[0] == pytest.approx(0.2)
  assert ours.alphas_[0] == pytest.approx(math.log(8))
  kwargs = {}
  if 'algorithm' in sk_ensemble.AdaBoostClassifier().get_params():
    kwargs['algorithm'] = 'SAMME'
  theirs = sk_ensemble.AdaBoostClassifier(
      tree.DecisionTreeClassifier(max_depth=1), n_estimators=3,
      random_state=0, **kwargs).fit(x, y)
  count = len(ours.alphas_)
  np.testing.assert_allclose(ours.alphas_, theirs.estimator_weights_[:count])
  np.testing.assert_allclose(ours.errors_, theirs.estimator_errors_[:count])
  np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))


def test_calibration_metrics_by_hand():
  probs = np.array([[0.95, 0.05], [0.65, 0.35], [0.25, 0.75], [0.85, 0.15]])
  labels = np.array([0, 1, 1, 0])
  assert calibration.nll(probs, labels) == pytest.approx(
      -np.mean(np.log([0.95, 0.35, 0.75, 0.85])))
  # sum_k (p_k - y_k)^2 per example: 2 * 0.05^2, 2 * 0.65^2, 2 * 0.25^2, ...
  assert calibration.brier(probs, labels) == pytest.approx(
      np.mean([2 * 0.05**2, 2 * 0.65**2, 2 * 0.25**2, 2 * 0.15**2]))
  # 5 bins: (0.8, 1] holds 0.95 and 0.85, both right: |1 - 0.9| x 2/4;
  # (0.6, 0.8] holds 0.65 (wrong) and 0.75 (right): |0.5 - 0.7| x 2/4.
  assert calibration.ece(probs, labels, num_bins=5) == pytest.approx(0.15)
  confidence, accuracy, count = calibration.reliability_bins(probs, labels, 5)
  np.testing.assert_array_equal(count, [0, 0, 0, 2, 2])
  np.testing.assert_allclose(confidence[3:], [0.7, 0.9])
  np.testing.assert_allclose(accuracy[3:], [0.5, 1.0])


def test_identical_members_have_no_mutual_information_and_chance_ood_auroc():
  rng = np.random.default_rng(0)
  one = rng.dirichlet(np.ones(4), size=(30, 1))
  same = np.repeat(one, 3, axis=1)
  np.testing.assert_allclose(calibration.mutual_information(same), 0,
                             atol=1e-12)
  np.testing.assert_allclose(calibration.entropy(np.full(4, 0.25)),
                             math.log(4))
  metrics = calibration.ood_metrics(same[:15], same[15:])
  assert metrics['auroc_mutual_information'] == pytest.approx(0.5, abs=0.1)
  disagreeing = rng.dirichlet(np.ones(4), size=(15, 3))
  assert (calibration.mutual_information(disagreeing) > 0).all()


def test_im2col_layer_equals_a_same_padded_convolution():
  x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
  kernel = jax.random.normal(jax.random.key(1), (5, 5, 3, 4))
  expected = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(
          x, kernel)
  got = jax.jit(lambda x, k: networks.im2col(x, 5) @ k.reshape(-1, 4))(
      x, kernel)
  np.testing.assert_allclose(got, expected, atol=1e-5)
  lenet = networks.LeNet5(num_outputs=10)
  outputs = jax.eval_shape(lambda x: lenet.apply(
      lenet.init(jax.random.key(0), x), x), jnp.zeros((3, 28, 28, 1)))
  chex.assert_shape(outputs, (3, 10))


def test_vmapped_sharded_ensemble_equals_members_trained_one_by_one():
  model = models.MLP((16,), num_outputs=3)
  tx = optax.adam(1e-2)
  rng = np.random.default_rng(0)
  source = {'image': rng.normal(size=(64, 5)).astype(np.float32),
            'label': rng.integers(0, 3, 64).astype(np.int32)}
  members, steps = 3, 4
  keys = deep.member_keys(0, members)
  mesh = mesh_lib.make_mesh(2)  # the batch is sharded over 2 devices
  state = deep.init_ensemble(model, tx, source['image'][:1], keys, mesh)
  ensemble_step = deep.make_ensemble_step(model, tx, mesh)
  for step in range(steps):
    batch = deep.member_batches(source, 16, step, 0, members)
    chex.assert_shape(batch['image'], (16, members, 5))
    state, metrics = ensemble_step(state, mesh_lib.shard_batch(batch, mesh))
  chex.assert_shape(metrics['loss'], ())
  member_step = jax.jit(deep.make_member_step(model, tx))
  init_member = jax.jit(lambda key: deep.init_member(
      model, tx, source['image'][:1], key))
  for m in range(members):
    alone = init_member(keys[m])
    for step in range(steps):
      batch = deep.member_batches(source, 16, step, 0, members)
      alone, _ = member_step(alone, {k: v[:, m] for k, v in batch.items()})
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x[m], state.params), alone.params, atol=1e-5)
  assert int(state.step[0]) == steps


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  config = config_lib.get_config('quick')
  config.num_devices = 2
  workdir = str(tmp_path_factory.mktemp('ensemble'))
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_quick_deep_ensemble_learns_digits_and_its_disagreement_flags_ood(
    quick_run):
  config, workdir, result = quick_run
  m = result.metrics
  assert m['test/accuracy'] > 0.95  # chance 0.1
  assert m['test/accuracy'] >= m['test/member_mean/accuracy'] - 0.01
  assert m['test/nll'] < m['test/member_mean/nll']
  assert m['ood/auroc_mutual_information'] > m['ood/member/auroc_entropy'] + 0.03
  assert m['ood/auroc_mutual_information'] >= config.tour.target
  for name in ('reliability.png', 'deep_ensemble.md', 'summary.json'):
    assert os.path.exists(os.path.join(workdir, name))


def test_a_broken_ensemble_of_identical_members_fails_the_tour_target(
    quick_run):
  config, _, result = quick_run
  data = data_lib.load_splits(config)
  images = data['test']['image']
  model = networks.make_network(config, 10)
  predictor = deep.make_predictor(model, mesh_lib.make_mesh(2))
  copies = jax.tree.map(lambda x: jnp.broadcast_to(x[:1], x.shape),
                        result.state.params)

  def member_probs(inputs):
    source = {'image': inputs, 'label': np.zeros(len(inputs), np.int32)}
    return predictor(copies, source, 512)['member_probs']

  ood = calibration.ood_metrics(member_probs(images), member_probs(
      data_lib.ood_images(config, images)))
  assert ood['auroc_mutual_information'] < 0.6 < config.tour.target


def test_our_tree_ensembles_are_within_a_few_points_of_sklearns():
  config = config_lib.get_config()
  config.trees.datasets = ('breast_cancer',)
  config.trees.num_estimators = 30
  config.trees.boosting_estimators = 50
  config.trees.networks = False
  rows = {r['method']: r for r in comparison.compare(config)}
  for method in ('bagging', 'random_forest', 'adaboost', 'gradient_boosting',
                 'stacking'):
    row = rows[method]
    assert row['ours'] > 0.9, row
    assert abs(row['ours'] - row['sklearn']) <= 0.04, row
  assert rows['random_forest']['ours'] >= rows['single_tree']['ours']
  assert '| breast_cancer | bagging |' in comparison.markdown(list(
      rows.values()))


def test_bagging_and_adaboost_run_over_jax_network_learners():
  x, y, x_test, y_test = comparison.load_split('wine', 0.25, 0)
  net = lambda s: weak_learners.NetworkClassifier(s, steps=100, num_classes=3)
  for model in (classic.Bagging(net, 3), classic.AdaBoost(net, 3)):
    model.fit(x, y)
    assert np.mean(model.predict(x_test) == y_test) > 0.9  # chance 0.4
  # Zero weight on every class-2 example: the network never predicts it.
  unweighted = net(0).fit(x, y, sample_weight=(y != 2).astype(float))
  assert not np.any(unweighted.predict(x_test[y_test == 2]) == 2)


@pytest.mark.parametrize('field, value, message', [
    ('data.source', 'imagenet', 'data.source'),
    ('data.ood', 'svhn', 'data.ood'),
    ('model.name', 'vgg', 'model.name'),
    ('ensemble.num_members', 0, 'num_members'),
    ('trees.datasets', ('iris',), 'trees.datasets'),
    ('trees.num_estimators', 0, 'num_estimators'),
])
def test_bad_config_values_fail_with_one_line(field, value, message):
  config = config_lib.get_config()
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(errors.ConfigError, match=message):
    config_lib.validate(config)


def test_missing_mnist_names_the_path_and_the_flag(tmp_path):
  config = config_lib.get_config('mnist')
  config.data.mnist_dir = str(tmp_path)
  with pytest.raises(errors.DataError, match='data.mnist_dir'):
    data_lib.load_splits(config)


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR),
                    reason='MNIST is not in ../shared/data')
def test_mnist_splits_and_cifar_ood_inputs():
  config = config_lib.get_config('mnist')
  config.data.mnist_dir = MNIST_DIR
  config.data.cifar10_npz = os.path.join(
      MNIST_DIR, '..', 'cifar10', 'cifar10_convnetjs_lossless_4000.npz')
  config.data.ood_examples = 50
  data = data_lib.load_splits(config)
  assert {k: len(v['label']) for k, v in data.items()} == {
      'train': 55000, 'val': 5000, 'test': 10000}
  assert data['train']['image'].dtype == np.float32
  assert data['train']['image'].max() <= 1.0
  ood = data_lib.ood_images(config, data['test']['image'])
  chex.assert_shape(ood, (50, 28, 28, 1))
  assert 0.0 <= ood.min() and ood.max() <= 1.0
