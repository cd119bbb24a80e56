"""HW3: test-time augmentation, ensembles, pseudo-labels, training, configs."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import errors
from lib import mesh as mesh_lib
from lib import models
from lib.data import images as image_data
from projects.cnn import ablation
from projects.cnn import config as config_lib
from projects.cnn import pseudo_label
from projects.cnn import train
from projects.cnn import tta

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _tiny_config(**overrides):
  config = config_lib.get_config('quick')
  config.model.channels = (8, 16)
  config.num_steps = 30
  config.eval_every = 30
  config.plots = False
  config.update(overrides)
  return config


def test_tta_views_are_the_image_its_mirror_and_shifted_crops():
  images = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
  out = tta.views(images, flip=True, shift=1)
  chex.assert_shape(out, (6, 2, 4, 4, 1))
  np.testing.assert_array_equal(out[0], images)
  np.testing.assert_array_equal(out[1], images[:, :, ::-1])
  # View 2 moves the content down-right by one pixel, zeros coming in.
  expected = np.zeros((2, 4, 4, 1), np.float32)
  expected[:, 1:, 1:] = images[:, :-1, :-1]
  np.testing.assert_array_equal(out[2], expected)
  expected = np.zeros((2, 4, 4, 1), np.float32)
  expected[:, :-1, :-1] = images[:, 1:, 1:]  # view 5: up-left
  np.testing.assert_array_equal(out[5], expected)
  chex.assert_shape(tta.views(images), (1, 2, 4, 4, 1))


@pytest.fixture(scope='module')
def small_cnn():
  model = models.SmallCNN((8, 16), num_outputs=10)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  params = variables.pop('params')
  return model, params, dict(variables)


def test_predict_probs_shape_padding_and_sharded_equals_unsharded(small_cnn):
  model, params, model_state = small_cnn
  images = np.random.default_rng(0).uniform(size=(13, 8, 8, 1)).astype(
      np.float32)
  mesh8 = mesh_lib.make_mesh()
  assert mesh8.size == 8
  probs = tta.predict_probs(tta.make_predict_fn(model, mesh8, shift=1),
                            params, model_state, images, 8, mesh8)
  chex.assert_shape(probs, (13, 10))
  chex.assert_tree_all_finite(probs)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  mesh1 = mesh_lib.make_mesh(1)
  single = tta.predict_probs(tta.make_predict_fn(model, mesh1, shift=1),
                             params, model_state, images, 16, mesh1)
  np.testing.assert_allclose(probs, single, atol=1e-6)
  # Without TTA the probabilities are the model's own softmax.
  plain = tta.predict_probs(tta.make_predict_fn(model, mesh8), params,
                            model_state, images, 8, mesh8)
  logits = jax.jit(lambda x: models.apply_model(
      model, params, model_state, x, train=False)[0])(images)
  np.testing.assert_allclose(plain, jax.nn.softmax(logits), atol=1e-6)
  assert np.abs(plain - probs).max() > 1e-4  # the shifted views count


def test_flip_tta_equals_plain_prediction_on_mirror_symmetric_images(
    small_cnn):
  model, params, model_state = small_cnn
  images = np.random.default_rng(1).uniform(size=(16, 8, 8, 1))
  symmetric = ((images + images[:, :, ::-1]) / 2).astype(np.float32)
  mesh = mesh_lib.make_mesh()
  plain_fn = tta.make_predict_fn(model, mesh)
  flip_fn = tta.make_predict_fn(model, mesh, flip=True)

  def probs(predict_fn, x):
    return tta.predict_probs(predict_fn, params, model_state, x, 8, mesh)

  np.testing.assert_allclose(probs(flip_fn, symmetric),
                             probs(plain_fn, symmetric), atol=1e-6)
  images = images.astype(np.float32)  # not symmetric: the mirror image counts
  assert np.abs(probs(flip_fn, images) - probs(plain_fn, images)).max() > 1e-4


def test_ensemble_of_identical_members_equals_one_member():
  rng = np.random.default_rng(0)
  probs = {'test': rng.dirichlet(np.ones(10), size=20)}
  np.testing.assert_allclose(train.average_probs([probs, probs, probs])['test'],
                             probs['test'])
  other = {'test': rng.dirichlet(np.ones(10), size=20)}
  np.testing.assert_allclose(train.average_probs([probs, other])['test'],
                             (probs['test'] + other['test']) / 2)


def test_select_confident_respects_the_threshold():
  probs = np.array([[0.95, 0.05, 0.0],
                    [0.3, 0.6, 0.1],
                    [0.0, 0.09, 0.91],
                    [0.9, 0.1, 0.0],  # exactly the threshold: not chosen
                    [0.05, 0.92, 0.03]])
  indices, labels = pseudo_label.select_confident(probs, 0.9)
  np.testing.assert_array_equal(indices, [0, 2, 4])
  np.testing.assert_array_equal(labels, [0, 2, 1])
  chex.assert_type(labels, np.int32)
  assert len(pseudo_label.select_confident(probs, 0.0)[0]) == 5


def test_pseudo_labels_come_from_the_model_not_the_hidden_labels():
  data = image_data.load_images(image_data.config('digits'))
  labelled, unlabelled, hidden = pseudo_label.split_labelled(data.train, 0.3,
                                                             seed=0)
  assert set(unlabelled) == {'image'}
  total = len(data.train['label'])
  assert len(labelled['label']) == round(0.3 * total)
  assert len(unlabelled['image']) + len(labelled['label']) == total
  # A "model" that always predicts the wrong class (true + 1) with confidence
  # 0.8, except for every third image, where it is unsure.
  wrong = (hidden + 1) % 10
  probs = np.full((len(hidden), 10), 0.2 / 9)
  probs[np.arange(len(hidden)), wrong] = 0.8
  probs[::3] = 0.1
  combined, chosen = pseudo_label.with_pseudo_labels(labelled, unlabelled,
                                                     probs, 0.65)
  np.testing.assert_array_equal(chosen, np.flatnonzero(np.arange(len(hidden))
                                                       % 3))
  num_labelled = len(labelled['label'])
  np.testing.assert_array_equal(combined['label'][:num_labelled],
                                labelled['label'])
  np.testing.assert_array_equal(combined['label'][num_labelled:],
                                wrong[chosen])
  np.testing.assert_array_equal(combined['image'][num_labelled:],
                                unlabelled['image'][chosen])


def test_augmented_training_learns_digits_and_reports_tta(tmp_path):
  config = _tiny_config(num_steps=100, eval_every=100, label_smoothing=0.1)
  config.model.channels = (32, 64)
  config.augment.mixup_alpha = 0.2  # and the quick config's random crops
  config.optimizer.update(schedule='cosine', warmup_steps=10,
                          learning_rate=3e-3)
  result = train.train_and_evaluate(config, str(tmp_path))
  metrics = result.metrics
  baseline = metrics['baseline/majority_class_accuracy']
  assert baseline < 0.2
  assert metrics['test/accuracy'] > 0.9 > baseline + 0.5
  assert metrics['test/tta_accuracy'] > 0.9
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['test/tta_accuracy'] == metrics['test/tta_accuracy']


def test_ensemble_mode_averages_its_members_softmax(tmp_path):
  config = _tiny_config(mode='ensemble', num_steps=20, eval_every=20)
  config.ensemble.num_members = 2
  config.tta.shift = 0
  result = train.train_and_evaluate(config, str(tmp_path))
  assert len(result.state) == 2
  assert (tmp_path / 'member_1' / 'summary.json').exists()
  data = image_data.load_images(config.data)
  model = models.make_image_classifier(config.model, 10)
  probs = [jax.nn.softmax(models.apply_model(
      model, s.params, s.model_state, data.test['image'], train=False)[0])
           for s in result.state]
  for member, member_probs in enumerate(probs):
    np.testing.assert_allclose(
        result.metrics[f'member_{member}/test/accuracy'],
        np.mean(np.argmax(member_probs, -1) == data.test['label']))
  assert not np.allclose(probs[0], probs[1], atol=1e-3)  # different seeds
  ensemble = np.mean(np.argmax(probs[0] + probs[1], -1) == data.test['label'])
  np.testing.assert_allclose(result.metrics['test/accuracy'], ensemble)


def test_pseudo_label_mode_trains_rounds(tmp_path):
  config = _tiny_config(mode='pseudo_label')
  config.pseudo_label.update(labelled_fraction=0.3, threshold=0.2, rounds=1)
  result = train.train_and_evaluate(config, str(tmp_path))
  metrics = result.metrics
  num_train = metrics['labelled_examples'] + metrics['unlabelled_examples']
  assert num_train == 1294
  assert 0 < metrics['round_1/pseudo_labels'] <= metrics['unlabelled_examples']
  assert 0.0 <= metrics['round_1/pseudo_label_accuracy'] <= 1.0
  assert metrics['test/accuracy'] == metrics['round_1/test/accuracy']
  for key in ('round_0/test/accuracy', 'round_0/test/tta_accuracy',
              'test/tta_accuracy'):
    assert 0.0 <= metrics[key] <= 1.0
  assert (tmp_path / 'round_1' / 'checkpoints').is_dir()


@pytest.mark.parametrize('field, value, message', [
    ('mode', 'nope', 'config.mode'),
    ('tta.shift', -1, 'config.tta.shift'),
    ('ensemble.num_members', 0, 'config.ensemble.num_members'),
    ('pseudo_label.labelled_fraction', 1.0, 'labelled_fraction'),
    ('pseudo_label.threshold', 1.0, 'pseudo_label.threshold'),
    ('pseudo_label.rounds', -1, 'pseudo_label.rounds'),
    ('augment.brightness', 1.5, 'config.augment.brightness'),
    ('label_smoothing', 1.0, 'config.label_smoothing'),
    ('model.name', 'nope', 'model.name'),
])
def test_bad_config_is_a_config_error(field, value, message):
  config = config_lib.get_config()
  ablation.set_field(config, field, value)
  with pytest.raises(errors.ConfigError, match=message):
    train.build(config)


def test_config_variants():
  with pytest.raises(errors.ConfigError, match='unknown cnn'):
    config_lib.get_config('nope')
  for variant in (None, *config_lib.VARIANTS):
    config = config_lib.get_config(variant)
    train.validate(config)
    assert config.project == 'cnn'
  cifar = config_lib.get_config('cifar10')
  assert ablation.tricks_in(cifar) == list(ablation.TRICKS)
  assert ablation.tricks_in(config_lib.get_config()) == ['crop + flip']


def test_ablation_turns_off_exactly_one_trick():
  config = config_lib.get_config('cifar10')
  no_mixup = ablation.without(config, ['mixup'])
  assert no_mixup.augment.mixup_alpha == 0.0
  assert config.augment.mixup_alpha == 0.2  # the original is untouched
  rest = ablation.tricks_in(no_mixup)
  assert rest == [t for t in ablation.TRICKS if t != 'mixup']
  none = ablation.without(config, ablation.TRICKS)
  assert ablation.tricks_in(none) == []
  assert none.optimizer.schedule == 'constant'
  assert none.tta == config.tta  # test-time augmentation is reported apart
  table = ablation.markdown_table([
      {'variant': 'all tricks', 'change': 'x', 'val': 0.5, 'test': 0.25,
       'test_tta': None, 'seconds': 3.0}])
  assert '| all tricks | x | 0.5000 | 0.2500 |  | 3 |' in table


def test_tfds_variant_loads_by_name(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = config_lib.get_config('tfds')
  config.data.val_fraction = 0.25
  with tfds.testing.mock_data(num_examples=24,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    experiment = train.build(config)
  chex.assert_shape(experiment.sample_input, (1, 28, 28, 1))
  assert len(experiment.train_data['label']) == 18


def test_launch_train_quick_writes_summary(tmp_path):
  done = subprocess.run(
      [sys.executable, '-m', 'launch.train',
       '--config=projects/cnn/config.py:quick', f'--workdir={tmp_path}',
       '--config.num_steps=20', '--config.plots=False'],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['step'] == 20
  assert {'test/accuracy', 'test/tta_accuracy',
          'baseline/majority_class_accuracy'} <= set(summary)
