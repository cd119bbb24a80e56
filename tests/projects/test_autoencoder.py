"""HW8: KL, vector quantization, the IWAE bound, AUROC, loaders, sharding and learning."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from lib import errors
from lib import mesh as mesh_lib
from lib import predict
from projects.autoencoder import config as config_lib
from projects.autoencoder import data as data_lib
from projects.autoencoder import metrics
from projects.autoencoder import models
from projects.autoencoder import objectives
from projects.autoencoder import train
from projects.autoencoder import training

OMNIGLOT = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared',
                        'data', 'omniglot_background', 'images_background.npz')


def _quick(**overrides):
  config = config_lib.get_config('quick')
  config.num_devices = 2  # sharded; 8 fake devices only cost compile time
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def one_class_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('one_class')
  config = _quick(normal_classes=(1, 3), plots=True)
  config.baselines.features = ('latent',)
  return train.train_and_evaluate(config, str(workdir)), workdir


@pytest.fixture(scope='module')
def vae_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('vae')
  config = _quick(protocol='likelihood', num_steps=200, plots=False)
  config.model.kind = 'vae'
  config.data.binarize = True
  config.iwae.num_samples = (1, 10, 100)
  config.iwae.test_examples = 128
  return train.train_and_evaluate(config, str(workdir))


def test_kl_matches_the_closed_form_by_hand_and_by_monte_carlo():
  # By hand: KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1 - log s^2) / 2 per dim.
  mean, logvar = jnp.array([[0.0, 1.0]]), jnp.array([[0.0, jnp.log(4.0)]])
  np.testing.assert_allclose(objectives.gaussian_kl(mean, logvar),
                             [(4.0 + 1.0 - 1.0 - np.log(4.0)) / 2], rtol=1e-6)
  rng = np.random.default_rng(0)
  mean, logvar = rng.normal(size=(3, 4)), 0.5 * rng.normal(size=(3, 4))
  eps = rng.normal(size=(100_000, 3, 4))
  z = mean + np.exp(0.5 * logvar) * eps
  log_q = -0.5 * np.sum(eps**2 + logvar, -1)
  log_p = -0.5 * np.sum(z**2, -1)
  np.testing.assert_allclose((log_q - log_p).mean(0),
                             objectives.gaussian_kl(mean, logvar), atol=0.05)


def test_vq_assignments_are_nearest_neighbours():
  rng = np.random.default_rng(0)
  z_e, codebook = rng.normal(size=(5, 7, 3)), rng.normal(size=(11, 3))
  indices, z_q = objectives.quantize(jnp.asarray(z_e), jnp.asarray(codebook))
  brute = np.argmin(((z_e[..., None, :] - codebook)**2).sum(-1), -1)
  np.testing.assert_array_equal(indices, brute)
  np.testing.assert_allclose(z_q, codebook[brute], rtol=1e-6)


def test_straight_through_gradient_reaches_the_encoder():
  z_e = jnp.array([0.3, -1.2])
  z_q = jnp.array([1.0, 1.0])
  np.testing.assert_allclose(objectives.straight_through(z_e, z_q), z_q)
  grad = jax.grad(lambda z: jnp.sum(objectives.straight_through(z, z_q)**2))(
      z_e)
  np.testing.assert_allclose(grad, 2 * z_q)  # d/dz_q, passed to z_e
  config = _quick()
  config.model.kind = 'vqvae'
  model = models.make_model(config, (8, 8, 1))
  x = jnp.asarray(np.random.default_rng(0).random((16, 8, 8, 1), np.float32))
  params = model.init(jax.random.key(0), x[:1])['params']
  loss_fn, _ = objectives.make_fns(config, model)
  grads = jax.jit(jax.grad(lambda p: loss_fn(
      p, {}, {'image': x}, jax.random.key(1), 0)[0]))(params)
  encoder_norms = [float(jnp.abs(g).sum())
                   for g in jax.tree.leaves(grads['encoder'])]
  assert min(encoder_norms) > 0
  assert float(jnp.abs(grads['codebook']).sum()) > 0  # the codebook loss


def test_auroc_and_aupr_match_sklearn_on_random_scores():
  rng = np.random.default_rng(0)
  for _ in range(5):
    scores = np.round(rng.normal(size=300), 1)  # with ties
    labels = rng.random(300) < 0.3
    found = metrics.detection(scores, labels)
    assert found['auroc'] == pytest.approx(
        sk_metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert found['aupr'] == pytest.approx(
        sk_metrics.average_precision_score(labels, scores), abs=1e-12)
  assert predict.auroc([0.1, 0.2, 0.9], [0, 0, 1]) == 1.0


def test_classical_detectors_separate_an_obvious_outlier_cloud():
  rng = np.random.default_rng(0)
  normal = rng.normal(size=(200, 4))
  test = np.concatenate([rng.normal(size=(50, 4)),
                         rng.normal(6.0, 1.0, size=(50, 4))])
  outlier = np.repeat([False, True], 50)
  for name, scores in metrics.classical_scores(normal, test, 0, 100).items():
    assert predict.auroc(scores, outlier) > 0.95, name


def test_sharded_step_equals_unsharded():
  config = _quick()
  config.model.kind = 'dae'
  x = np.random.default_rng(0).random((64, 8, 8, 1), np.float32)
  model = models.make_model(config, x.shape[1:])
  out = []
  for devices in (8, 1):
    mesh = mesh_lib.make_mesh(devices)
    runs = training.Runs(config, model, x[:1], mesh)
    state, metrics_ = runs.train_step(runs.init(0),
                                      mesh_lib.shard_batch({'image': x}, mesh))
    out.append(jax.device_get((state.params, metrics_)))
  chex.assert_trees_all_close(out[0], out[1], rtol=1e-5, atol=1e-6)


def test_quick_config_learns_and_detects(one_class_run):
  result, workdir = one_class_run
  m = result.metrics
  for label in (1, 3):
    records = [json.loads(line) for line in open(
        workdir / f'class_{label}' / 'metrics.jsonl')]
    losses = [r['loss'] for r in records if r['split'] == 'train']
    assert losses[-1] < 0.5 * losses[0]
    assert m[f'one_class/class_{label}/auroc'] > 0.95
  assert m['one_class/mean_auroc'] > m['baseline/untrained_mean_auroc'] + 0.3
  assert m['one_class/mean_auroc'] > m['baseline/mean_image_mean_auroc']
  assert 'baseline/ocsvm_latent_mean_auroc' in m
  table = (workdir / 'one_class.md').read_text()
  assert '| mean |' in table and 'ocsvm_latent AUROC' in table
  for figure in ('reconstructions.png', 'latent.png', 'roc.png'):
    assert (workdir / figure).stat().st_size > 1000


def test_iwae_bound_is_above_the_elbo_and_tightens_with_k(vae_run):
  m = vae_run.metrics
  assert m['test/nll_k1'] > m['test/nll_k10'] > m['test/nll_k100']
  assert m['test/nll_k1'] - m['test/nll_k100'] < 10.0
  assert m['test/examples'] == 128
  # Training raised the ELBO: it starts near 64 * log 2 = 44 nats.
  assert m['test/nll_k1'] < 35.0


def test_folder_loader_reads_train_and_labelled_test_images(tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for part, count in (('train', 6), ('test/normal', 2), ('test/anomaly', 3)):
    (tmp_path / part).mkdir(parents=True)
    for i in range(count):
      Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).save(
          tmp_path / part / f'{i}.png')
  config = config_lib.get_config('faces')
  config.data.folder_dir = str(tmp_path)
  config.data.image_size = 16
  config.data.val_fraction = 0.2
  loaded = data_lib.load(config)
  chex.assert_shape(loaded.train['image'], (5, 16, 16, 3))
  np.testing.assert_array_equal(loaded.test['label'], [0, 0, 1, 1, 1])
  assert 0.0 <= loaded.test['image'].min() and loaded.test['image'].max() <= 1
  config.data.folder_dir = str(tmp_path / 'nowhere')
  with pytest.raises(errors.DataError, match='nowhere'):
    data_lib.load(config)


def test_ood_noise_sets_have_the_in_distribution_shape():
  config = _quick()
  config.ood.sets = ('gaussian', 'uniform')
  config.ood.num_examples = 50
  sets = data_lib.ood_sets(config, (8, 8, 1))
  for x in sets.values():
    chex.assert_shape(x, (50, 8, 8, 1))
    assert x.min() >= 0.0 and x.max() <= 1.0


@pytest.mark.skipif(not os.path.exists(OMNIGLOT),
                    reason='Omniglot is not in ../shared/data')
def test_omniglot_is_white_strokes_on_black_at_mnist_size():
  x = data_lib.omniglot(OMNIGLOT, 20, 28, 0)
  chex.assert_shape(x, (20, 28, 28, 1))
  assert x.mean() < 0.3  # mostly background, like MNIST


def test_every_variant_validates_and_bad_values_fail_in_one_line():
  for variant in (None, *config_lib.VARIANTS):
    config_lib.validate(config_lib.get_config(variant))
  for field, value, message in (('model.kind', 'gan', 'model.kind'),
                                ('score', 'elbo', 'elbo'),
                                ('normal_classes', (), 'normal_classes')):
    config = config_lib.get_config('quick')
    node, name = (config.model, 'kind') if '.' in field else (config, field)
    node[name] = value
    with pytest.raises(errors.ConfigError, match=message):
      config_lib.validate(config)
  with pytest.raises(errors.ConfigError, match='unknown'):
    config_lib.get_config('nope')
