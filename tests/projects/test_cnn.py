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
from lib import metric_log
from lib import models
from lib.data import images as image_data
from projects.cnn import config as config_lib
from projects.cnn import ensemble
from projects.cnn import evaluation
from projects.cnn import pseudo_label
from projects.cnn import train
from projects.cnn import tricks
from projects.cnn import tta

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _tiny_config(**overrides):
  config = config_lib.get_config('quick')
  config.model.channels = (8, 16)
  config.num_steps = 30
  config.eval_every = 30
  config.plots = False
  config.num_devices = 2
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


def _probs(predictor, variables, images, batch_size):
  return predictor(variables, {'image': images}, batch_size)['probs']


def test_tta_predictor_shape_padding_and_sharded_equals_unsharded(small_cnn):
  model, params, model_state = small_cnn
  variables = (params, model_state)
  images = np.random.default_rng(0).uniform(size=(13, 8, 8, 1)).astype(
      np.float32)
  mesh8 = mesh_lib.make_mesh()
  assert mesh8.size == 8
  # The batch's other fields come back beside the probabilities, in order.
  outputs = tta.make_predictor(model, mesh8, shift=1)(
      variables, {'image': images, 'index': np.arange(13)}, 8)
  np.testing.assert_array_equal(outputs['index'], np.arange(13))
  probs = outputs['probs']
  chex.assert_shape(probs, (13, 10))
  chex.assert_tree_all_finite(probs)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  mesh1 = mesh_lib.make_mesh(1)
  single = _probs(tta.make_predictor(model, mesh1, shift=1), variables,
                  images, 16)
  np.testing.assert_allclose(probs, single, atol=1e-6)
  # Without TTA the probabilities are the model's own softmax.
  plain = _probs(tta.make_predictor(model, mesh8), variables, images, 8)
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
  plain_fn = tta.make_predictor(model, mesh)
  flip_fn = tta.make_predictor(model, mesh, flip=True)

  def probs(predictor, x):
    return _probs(predictor, (params, model_state), x, 8)

  np.testing.assert_allclose(probs(flip_fn, symmetric),
                             probs(plain_fn, symmetric), atol=1e-6)
  images = images.astype(np.float32)  # not symmetric: the mirror image counts
  assert np.abs(probs(flip_fn, images) - probs(plain_fn, images)).max() > 1e-4


def test_ensemble_of_identical_members_equals_one_member():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, size=20)
  probs = {'test': {'probs': rng.dirichlet(np.ones(10), size=20),
                    'label': labels}}
  np.testing.assert_allclose(
      ensemble.average_probs([probs, probs, probs])['test']['probs'],
      probs['test']['probs'])
  other = {'test': {'probs': rng.dirichlet(np.ones(10), size=20),
                    'label': labels}}
  averaged = ensemble.average_probs([probs, other])['test']
  np.testing.assert_allclose(
      averaged['probs'], (probs['test']['probs'] + other['test']['probs']) / 2)
  np.testing.assert_array_equal(averaged['label'], labels)
  metrics, curves = ensemble.summarize([probs, other])
  assert [k for k, _ in curves['test/accuracy']] == [1, 2]
  assert metrics['test/accuracy'] == evaluation.accuracy(averaged)
  assert metrics['member_mean/test/accuracy'] == pytest.approx(
      (metrics['member_0/test/accuracy'] + metrics['member_1/test/accuracy'])
      / 2)


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


def _train_records(workdir):
  return [r for r in metric_log.read_metrics(workdir) if r['split'] == 'train']


def test_ensemble_mode_averages_its_members_softmax_and_resumes(tmp_path):
  config = _tiny_config(mode='ensemble', num_steps=20, eval_every=20)
  config.tta.shift = 0
  config.ensemble.num_members = 1  # stops after the first member
  first = train.train_and_evaluate(config, str(tmp_path))
  member_0 = _train_records(tmp_path / 'member_0')
  config.ensemble.num_members = 2
  result = train.train_and_evaluate(config, str(tmp_path))
  # The finished member is restored, not trained again.
  assert _train_records(tmp_path / 'member_0') == member_0
  assert (result.metrics['member_0/test/accuracy'] ==
          first.metrics['member_0/test/accuracy'])
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
  averaged = np.mean(np.argmax(probs[0] + probs[1], -1) == data.test['label'])
  np.testing.assert_allclose(result.metrics['test/accuracy'], averaged)
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['test/accuracy'] == result.metrics['test/accuracy']


def test_pseudo_label_mode_trains_rounds(tmp_path):
  config = _tiny_config(mode='pseudo_label', num_steps=60, eval_every=60)
  config.model.channels = (16, 32)
  config.optimizer.learning_rate = 3e-3
  config.pseudo_label.update(labelled_fraction=0.3, threshold=0.5, rounds=1)
  metrics = train.train_and_evaluate(config, str(tmp_path)).metrics
  assert metrics['labelled_examples'] == 388
  assert metrics['unlabelled_examples'] == 1294 - 388
  # Round 0 learns from the 388 labels; its confident labels are nearly all
  # right, and the threshold keeps only some of the unlabeled images.
  chance = metrics['baseline/majority_class_accuracy']
  assert chance < 0.2
  for key in ('round_0/test/accuracy', 'round_0/test/tta_accuracy',
              'test/accuracy', 'test/tta_accuracy'):
    assert metrics[key] > chance + 0.4, key
  assert metrics['round_1/pseudo_label_accuracy'] > 0.9
  assert 0 < metrics['round_1/pseudo_labels'] < metrics['unlabelled_examples']
  assert metrics['test/accuracy'] == metrics['round_1/test/accuracy']
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
  config.update_from_flattened_dict({field: value})
  with pytest.raises(errors.ConfigError, match=message):
    train.build(config)


def test_config_variants():
  with pytest.raises(errors.ConfigError, match='unknown cnn'):
    config_lib.get_config('nope')
  for variant in (None, *config_lib.VARIANTS):
    config = config_lib.get_config(variant)
    config_lib.validate(config)
    assert config.project == 'cnn'
  cifar = config_lib.get_config('cifar10')
  assert tricks.tricks_in(cifar) == list(tricks.TRICKS)
  assert tricks.tricks_in(config_lib.get_config()) == ['crop + flip']


def test_ablation_turns_off_exactly_one_trick(tmp_path):
  config = config_lib.get_config('cifar10')
  no_mixup = tricks.without(config, ['mixup'])
  assert no_mixup.augment.mixup_alpha == 0.0
  assert config.augment.mixup_alpha == 0.2  # the original is untouched
  rest = tricks.tricks_in(no_mixup)
  assert rest == [t for t in tricks.TRICKS if t != 'mixup']
  none = tricks.without(config, tricks.TRICKS)
  assert tricks.tricks_in(none) == []
  assert none.optimizer.schedule == 'constant'
  assert none.tta == config.tta  # test-time augmentation is reported apart
  tricks.write_results([
      {'variant': 'all tricks', 'change': 'x', 'val': 0.5, 'test': 0.25,
       'test_tta': None, 'seconds': 3}], str(tmp_path), 'title')
  assert '| all tricks | x | 0.5 | 0.25 | - | 3 |' in (
      tmp_path / 'ablation.md').read_text()
  assert (tmp_path / 'ablation.png').exists()


def test_tfds_variant_loads_by_name(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = config_lib.get_config('tfds')
  config.data.val_fraction = 0.25
  with tfds.testing.mock_data(num_examples=24,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    experiment = train.build(config)
  chex.assert_shape(experiment.sample_input, (1, 28, 28, 1))
  assert len(experiment.train_data['label']) == 18


def test_launch_train_learns_digits_with_the_tricks_and_reports_tta(tmp_path):
  overrides = dict(num_steps=100, eval_every=100, plots=False, num_devices=2,
                   label_smoothing=0.1, **{'augment.mixup_alpha': 0.2},
                   **{'optimizer.schedule': 'cosine',
                      'optimizer.warmup_steps': 10,
                      'optimizer.learning_rate': 3e-3})
  done = subprocess.run(
      [sys.executable, '-m', 'launch.train',
       '--config=projects/cnn/config.py:quick', f'--workdir={tmp_path}',
       *(f'--config.{name}={value}' for name, value in overrides.items())],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['step'] == 100
  baseline = summary['baseline/majority_class_accuracy']
  assert baseline < 0.2
  # The quick config's random crops, mixup, label smoothing, warm-up + cosine.
  assert summary['test/accuracy'] > 0.9 > baseline + 0.5
  assert summary['test/tta_accuracy'] > 0.9
