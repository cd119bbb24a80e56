"""HW11: gradient reversal, the DANN step, the domain loaders and learning."""

import functools
import os
import shutil

import chex
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import mesh as mesh_lib
from lib import metric_log
from lib import optim
from lib import steps
from lib import train_state
from lib.data import domains
from lib.errors import ConfigError
from lib.errors import DataError
from projects.domain_adaptation import config as config_lib
from projects.domain_adaptation import dann
from projects.domain_adaptation import methods
from projects.domain_adaptation import train

USPS = '../shared/data/usps/usps.h5'


@pytest.mark.parametrize('scale', [0.0, 0.37, 1.0, 2.5])
def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward(
    scale):
  x = jax.random.normal(jax.random.key(0), (3, 5))
  cotangent = jax.random.normal(jax.random.key(1), (3, 5))
  out, vjp = jax.vjp(dann.gradient_reversal, x, jnp.float32(scale))
  np.testing.assert_array_equal(out, x)
  grad_x, grad_scale = vjp(cotangent)
  np.testing.assert_array_equal(grad_x, -np.float32(scale) * cotangent)
  assert float(grad_scale) == 0.0
  # The full Jacobian: exactly -lambda times the identity.
  jacobian = jax.jacrev(lambda v: dann.gradient_reversal(v, scale))(x[0])
  np.testing.assert_array_equal(jacobian, -np.float32(scale) * np.eye(5))


def test_gradient_reversal_flips_the_gradient_inside_a_loss_under_jit():
  loss = lambda w, s: jnp.sum(dann.gradient_reversal(w, s) ** 2)
  w = jnp.array([1.0, -2.0, 3.0])
  grad = jax.jit(jax.grad(loss))(w, 0.5)
  np.testing.assert_array_equal(grad, -0.5 * 2 * w)


def test_reversal_coefficient_follows_the_paper_schedule():
  progress = jnp.linspace(0.0, 1.0, 11)
  coefficient = dann.reversal_coefficient(progress, lambda_max=0.5, gamma=10.)
  assert float(coefficient[0]) == 0.0
  assert np.all(np.diff(coefficient) > 0)
  np.testing.assert_allclose(coefficient[-1], 0.5 * (2 / (1 + np.exp(-10)) -
                                                     1), rtol=1e-6)
  scale = dann.annealed_learning_rate_scale(100)
  np.testing.assert_allclose([scale(0), scale(100)], [1.0, 11 ** -0.75])


_MODEL = dann.DANN(channels=(4,), label_hidden=(8,), domain_hidden=(4,))
_TX = optim.make_optimizer(config_lib.get_config().optimizer, 10)


@functools.cache
def _initial_state():
  """One initialization for every step test (each costs a compilation)."""
  return train_state.create_train_state(
      _MODEL, _TX, np.zeros((1, 8, 8, 3), np.float32), jax.random.key(0),
      mesh_lib.make_mesh(1))


def _step_setup(num_devices, lambda_max=1.0):
  mesh = mesh_lib.make_mesh(num_devices)
  # A copy, replicated on this mesh: the step donates its state.
  state = jax.device_put(jax.tree.map(jnp.copy, _initial_state()),
                         mesh_lib.replicated(mesh))
  rng = np.random.default_rng(0)
  batch = {'source_image': rng.uniform(size=(16, 8, 8, 3)).astype(np.float32),
           'source_label': rng.integers(0, 10, 16).astype(np.int32),
           'target_image': rng.uniform(size=(16, 8, 8, 3)).astype(np.float32)}
  loss_fn = dann.make_loss_fn(_MODEL, num_steps=10, lambda_max=lambda_max)
  step = steps.make_train_step(loss_fn, _TX, mesh, loss_takes_step=True)
  return mesh, state, step, batch


def test_dann_step_sharded_equals_unsharded_and_follows_the_schedule():
  results = []
  for num_devices in (8, 1):
    mesh, state, step, batch = _step_setup(num_devices)
    for _ in range(3):
      state, metrics = step(state, mesh_lib.shard_batch(batch, mesh))
    chex.assert_tree_all_finite((state.params, state.model_state, metrics))
    assert set(metrics) == {'loss', 'class_loss', 'accuracy', 'domain_loss',
                            'domain_accuracy', 'reversal'}
    # lambda_p at p = 2/10, the progress before the third update.
    np.testing.assert_allclose(metrics['reversal'],
                               2 / (1 + np.exp(-2)) - 1, rtol=1e-6)
    assert set(state.model_state) == {'batch_stats'}
    results.append((state.params, state.model_state, metrics))
  chex.assert_trees_all_close(results[0], results[1], rtol=2e-5, atol=2e-6)


def test_dann_with_zero_lambda_learns_features_like_source_only():
  def train(with_target):
    mesh, state, step, batch = _step_setup(1, lambda_max=0.0)
    if not with_target:
      del batch['target_image']
    for _ in range(2):
      state, _ = step(state, mesh_lib.shard_batch(batch, mesh))
    return state.params

  source_only, zero_lambda = train(False), train(True)
  for part in ('feature_extractor', 'label_predictor'):
    chex.assert_trees_all_close(zero_lambda[part], source_only[part],
                                atol=1e-6)
  # The domain classifier trains only beside a target batch.
  assert not np.allclose(
      jax.tree.leaves(zero_lambda['domain_classifier'])[0],
      jax.tree.leaves(source_only['domain_classifier'])[0])


def test_textures_and_blending():
  textures = domains.random_textures(6, 12, seed=3)
  chex.assert_shape(textures, (6, 12, 12, 3))
  assert textures.min() >= 0 and textures.max() <= 1 and textures.std() > 0.05
  np.testing.assert_array_equal(textures, domains.random_textures(6, 12, 3))
  digits = np.zeros((6, 12, 12, 1), np.float32)
  digits[:, 3:9, 5:7] = 1.0
  blended = domains.blend_with_textures(digits, seed=1)
  chex.assert_shape(blended, (6, 12, 12, 3))
  texture = domains.random_textures(6, 12, (1, 0))
  np.testing.assert_allclose(blended[:, 0], texture[:, 0])  # background
  np.testing.assert_allclose(blended[:, 3:9, 5:7], 1 - texture[:, 3:9, 5:7],
                             atol=1e-6)  # the digit inverts the texture


def _write_usps(path, train_size=30, test_size=20):
  rng = np.random.default_rng(0)
  with h5py.File(path, 'w') as f:
    for split, size in (('train', train_size), ('test', test_size)):
      group = f.create_group(split)
      group['data'] = rng.uniform(size=(size, 256)).astype(np.float32)
      group['target'] = np.arange(size) % 10


def _write_folder(path, per_class=4):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for name in ('cat', 'dog', 'fish'):
    os.makedirs(os.path.join(path, name))
    for i in range(per_class):
      pixels = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(os.path.join(path, name, f'{i}.png'))


def _data_config(**fields):
  data = config_lib.get_config().data
  data.update(fields)
  return data


def test_usps_and_folder_loaders_and_pairing(tmp_path):
  usps_path = str(tmp_path / 'usps.h5')
  _write_usps(usps_path)
  usps = domains.load_usps(usps_path)
  chex.assert_shape(usps['train']['image'], (30, 16, 16, 1))
  np.testing.assert_array_equal(usps['test']['label'], np.arange(20) % 10)
  folder = str(tmp_path / 'drawings')
  _write_folder(folder)
  source, target = domains.load_pair(_data_config(
      source='usps', target=f'folder:{folder}', usps_path=usps_path,
      image_size=12, test_fraction=0.25))
  # USPS is grey: it gets three channels beside the colour folder images.
  chex.assert_shape(source['train']['image'], (30, 12, 12, 3))
  chex.assert_shape(target['train']['image'], (9, 12, 12, 3))
  chex.assert_shape(target['test']['image'], (3, 12, 12, 3))
  np.testing.assert_array_equal(source['train']['image'][..., 0],
                                source['train']['image'][..., 2])
  assert set(target['train']['label']) | set(target['test']['label']) == {
      0, 1, 2}
  for domain in (source, target):
    image = domain['train']['image']
    assert image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1


def test_tfds_domain_through_mock_data():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=12,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    source, target = domains.load_pair(_data_config(
        source='tfds:mnist', target='digits_m', image_size=8))
  chex.assert_shape(source['train']['image'], (12, 8, 8, 3))
  assert source['train']['image'].max() <= 1.0


def test_bad_data_and_configs_fail_with_one_clear_error(tmp_path):
  with pytest.raises(DataError, match='no such USPS'):
    domains.load_usps(str(tmp_path / 'missing.h5'))
  with h5py.File(tmp_path / 'bad.h5', 'w') as f:
    f.create_group('train')['data'] = np.zeros((3, 10))
  with pytest.raises(DataError, match='bad.h5'):
    domains.load_usps(str(tmp_path / 'bad.h5'))
  with pytest.raises(DataError, match='missing MNIST'):
    domains.load_pair(_data_config(source='mnist', target='usps',
                                   mnist_dir=str(tmp_path)))
  with pytest.raises(ConfigError, match='unknown domain_adaptation'):
    config_lib.get_config('nope')
  bad_fields = [('methods', ('dann', 'magic'), 'config.methods'),
                ('methods', ('finetune',), 'source_only must come before'),
                ('data.target', 'svhn', 'data.target'),
                ('data.source', 'tfds:', 'data.source'),
                ('dann.lambda_max', -1.0, 'dann.lambda_max'),
                ('finetune.shots', 0, 'finetune.shots'),
                ('features_plot.method', 'umap', 'features_plot.method'),
                ('batch_size', 12, 'multiple of the number of devices')]
  for field, value, message in bad_fields:
    config = config_lib.get_config('quick')
    *parents, name = field.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
    with pytest.raises(ConfigError, match=message):
      train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_few_shot_takes_k_per_class():
  data = {'image': np.arange(50), 'label': np.arange(50) % 5}
  chosen = methods.few_shot(data, 3, seed=0)
  np.testing.assert_array_equal(np.bincount(chosen['label']), [3] * 5)
  np.testing.assert_array_equal(chosen['image'] % 5, chosen['label'])


def _tiny_quick_config():
  config = config_lib.get_config('quick')
  config.methods = ('source_only', 'dann', 'finetune')
  config.model.update(channels=(8, 16), label_hidden=(32,),
                      domain_hidden=(32,))
  config.num_devices = 2  # sharded; 8 fake devices only cost compile time
  config.num_steps = 160
  config.eval_every = config.checkpoint_every = 80
  config.finetune.update(shots=5, num_steps=20)
  config.features_plot.examples = 64
  return config


def _train_records(directory):
  return [r for r in metric_log.read_metrics(directory)
          if r['split'] == 'train']


def test_methods_learn_on_the_offline_pair_and_resume(tmp_path):
  workdir = str(tmp_path / 'run')
  config = _tiny_quick_config()
  metrics = train.train_and_evaluate(config, workdir).metrics
  for method in config.methods:
    assert metrics[f'{method}/target/accuracy'] > 0.45  # chance is 0.1
  for method in ('source_only', 'dann'):
    assert metrics[f'{method}/source/accuracy'] > 0.85
  # Five labelled target images per class help the source-only network.
  assert (metrics['finetune/target/accuracy'] >
          metrics['source_only/target/accuracy'])
  assert 0 <= metrics['dann/domain_accuracy'] <= 1
  assert not [name for name in metrics if 'domain_accuracy' in name and
              not name.startswith('dann/')]
  for name in ('results.md', 'summary.json', 'features_pca.png',
               'target_accuracy.png', 'dann/learning_curves.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  source_only_records = _train_records(os.path.join(workdir, 'source_only'))

  # Killed after DANN's step-80 checkpoint, before finetune began: the rerun
  # restores source_only without training it, resumes DANN at step 80 and
  # fine-tunes source_only's restored network, ending as if never stopped.
  shutil.rmtree(os.path.join(workdir, 'dann', 'checkpoints', '160'))
  shutil.rmtree(os.path.join(workdir, 'finetune'))
  resumed = train.train_and_evaluate(config, workdir).metrics
  assert _train_records(os.path.join(workdir, 'source_only')) == (
      source_only_records)
  assert set(resumed) == set(metrics)
  for name, value in metrics.items():
    if not name.endswith('wall_seconds'):
      np.testing.assert_allclose(resumed[name], value, rtol=1e-5, err_msg=name)


@pytest.mark.skipif(not os.path.exists(USPS), reason=f'{USPS} is absent')
def test_real_usps_file_loads():
  usps = domains.load_usps(USPS)
  chex.assert_shape(usps['train']['image'], (7291, 16, 16, 1))
  chex.assert_shape(usps['test']['image'], (2007, 16, 16, 1))
