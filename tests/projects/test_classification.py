"""HW2: context frames, training, critical points, loaders and the toolkit."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import errors
from lib import metric_log
from lib import models
from projects.classification import config as config_lib
from projects.classification import context
from projects.classification import critical_points as cp
from projects.classification import experiments
from projects.classification import phonemes
from projects.classification import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_concat_context_shapes_and_edges():
  frames = jnp.arange(8.0).reshape(4, 2)  # frame t = [2t, 2t + 1]
  out = context.concat_context(frames, 3)
  chex.assert_shape(out, (4, 6))
  np.testing.assert_array_equal(out, [[0, 1, 0, 1, 2, 3],  # first repeats
                                      [0, 1, 2, 3, 4, 5],
                                      [2, 3, 4, 5, 6, 7],
                                      [4, 5, 6, 7, 6, 7]])  # last repeats
  chex.assert_shape(context.concat_context(jnp.zeros((7, 39)), 11), (7, 429))
  np.testing.assert_array_equal(context.concat_context(frames, 1), frames)
  with pytest.raises(ValueError, match='odd'):
    context.concat_context(frames, 4)


def test_numpy_context_indices_match_concat_context_per_utterance():
  rng = np.random.default_rng(0)
  utterances = [rng.normal(size=(t, 3)).astype(np.float32) for t in (2, 5, 9)]
  index = phonemes.context_indices([len(u) for u in utterances], 5)
  joined = np.concatenate(utterances)[index].reshape(len(index), -1)
  expected = np.concatenate([context.concat_context(u, 5) for u in utterances])
  np.testing.assert_array_equal(joined, expected)


def test_quick_config_learns_as_a_toolkit_variant(tmp_path):
  config = config_lib.get_config('quick')
  config.num_steps = 200
  config.plots = False
  config.num_devices = 2
  table = experiments.run_variants({'quick (200 steps)': config},
                                   str(tmp_path))
  run_dir = tmp_path / 'quick'
  train_losses = [r['loss'] for r in metric_log.read_metrics(str(run_dir))
                  if r['split'] == 'train']
  assert train_losses[-1] < 0.2 * train_losses[0]
  summary = json.loads((run_dir / 'summary.json').read_text())
  baseline = summary['baseline/majority_class_accuracy']
  assert baseline < 0.2
  assert summary['val/accuracy'] > 0.9 > baseline + 0.5
  # The table's row: the variant, its steps and batch, then its metrics.
  header, rule, row = table.splitlines()
  assert header.startswith('| variant | steps | batch | val accuracy |')
  cells = [cell.strip() for cell in row.strip('|').split('|')]
  assert cells[:3] == ['quick (200 steps)', '200', '64']
  assert float(cells[3]) == pytest.approx(summary['val/accuracy'], abs=1e-4)
  assert (tmp_path / 'val_accuracy.png').exists()


def test_unknown_config_variant_and_dataset():
  with pytest.raises(errors.ConfigError, match='unknown classification'):
    config_lib.get_config('nope')
  config = config_lib.get_config()
  config.data.name = 'nope'
  with pytest.raises(errors.ConfigError, match='data.name'):
    train.build(config)
  config = config_lib.get_config()
  config.model.activation = 'gelu'
  with pytest.raises(errors.ConfigError, match='model.activation'):
    train.build(config)


@pytest.mark.parametrize('loss_fn, kind', [
    (lambda x: x[0]**2 + x[1]**2, cp.LOCAL_MINIMUM),
    (lambda x: x[0]**2 - x[1]**2, cp.SADDLE_POINT),
    (lambda x: -x[0]**2 - x[1]**2, cp.LOCAL_MAXIMUM),
])
def test_critical_point_check_classifies_quadratics(loss_fn, kind):
  x, grad_norms = cp.find_critical_point(loss_fn, jnp.array([0.5, -0.3]), 300,
                                         0.05)
  assert grad_norms[-1] < 1e-3 * grad_norms[0]
  report = cp.check_critical_point(loss_fn, x)
  assert report.grad_norm < 1e-3
  assert report.kind == kind
  assert report.minimum_ratio == {cp.LOCAL_MINIMUM: 1.0, cp.SADDLE_POINT: 0.5,
                                  cp.LOCAL_MAXIMUM: 0.0}[kind]
  np.testing.assert_allclose(np.abs(report.eigenvalues), [2.0, 2.0],
                             rtol=1e-5)


def test_escape_saddle_lowers_the_loss():
  loss_fn = lambda x: x[0]**2 - x[1]**2 + 0.1 * x[1]**4
  x = jnp.zeros(2)
  new_x, before, after = cp.escape_saddle(loss_fn, x, 0.5)
  assert after < before - 0.1
  np.testing.assert_allclose(jnp.abs(new_x), [0.0, 0.5], atol=1e-6)


def _tiny_mlp_loss():
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.normal(size=(32, 5)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, size=32))
  model = models.MLP((4,), num_outputs=3, activation=jnp.tanh)
  params = model.init(jax.random.key(0), inputs[:1])['params']

  def loss(params):
    logits = model.apply({'params': params}, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, labels).mean()

  return cp.flatten_loss(loss, params)


def test_lanczos_matches_the_dense_hessian_on_a_small_model():
  loss_fn, x, _ = _tiny_mlp_loss()  # 39 parameters
  dense, vectors = cp.hessian_eigh(loss_fn, x)
  v = jax.random.normal(jax.random.key(1), x.shape)
  np.testing.assert_allclose(cp.hvp(loss_fn, x, v),
                             vectors @ (dense * (vectors.T @ v)), atol=1e-4)
  ritz, ritz_vectors = cp.lanczos(loss_fn, x, 25, jax.random.key(0))
  scale = float(jnp.max(jnp.abs(dense)))
  np.testing.assert_allclose([ritz[0], ritz[-1]], [dense[0], dense[-1]],
                             atol=1e-3 * scale)
  full, _ = cp.lanczos(loss_fn, x, x.size, jax.random.key(0))
  np.testing.assert_allclose(full, dense, atol=1e-3 * scale)
  # The Ritz vector of the most negative value escapes like the dense one.
  _, before, after = cp.escape_saddle(loss_fn, x, 0.05, ritz_vectors[:, 0])
  assert dense[0] < 0 and after < before


def _write_phoneme_folder(root, lengths=(6, 4, 5, 3, 7)):
  os.makedirs(root / 'feat' / 'train')
  rng = np.random.default_rng(0)
  names = [f'utt{i}' for i in range(len(lengths))]
  with open(root / 'train_split.txt', 'w') as split, \
      open(root / 'train_labels.txt', 'w') as labels:
    for name, length in zip(names, lengths):
      split.write(name + '\n')
      labels.write(' '.join([name, *map(str, rng.integers(0, 41, length))])
                   + '\n')
      np.save(root / 'feat' / 'train' / f'{name}.npy',
              rng.normal(size=(length, 39)).astype(np.float32))
  return names


def test_phoneme_loader_reads_npy_features(tmp_path):
  names = _write_phoneme_folder(tmp_path)
  train_set, val_set = phonemes.load_phonemes(str(tmp_path), 3, 0.2, seed=0)
  assert train_set['input'].shape[1] == 3 * 39
  assert len(train_set['label']) + len(val_set['label']) == 25
  assert len(train_set['input']) == len(train_set['label'])
  assert train_set['label'].dtype == np.int32
  # 0.2 of 5 utterances: one is held out whole, its frames with context.
  held_out = [name for name in names
              if len(np.load(tmp_path / 'feat' / 'train' / f'{name}.npy'))
              == len(val_set['label'])]
  assert len(held_out) == 1
  frames = np.load(tmp_path / 'feat' / 'train' / f'{held_out[0]}.npy')
  np.testing.assert_allclose(val_set['input'],
                             context.concat_context(frames, 3))


def test_phoneme_config_builds(tmp_path):
  _write_phoneme_folder(tmp_path)
  config = config_lib.get_config('phonemes')
  config.data.phoneme_dir = str(tmp_path)
  experiment = train.build(config)
  chex.assert_shape(experiment.sample_input, (1, 11 * 39))
  assert experiment.model.num_outputs == 41


def test_phoneme_loader_errors(tmp_path):
  with pytest.raises(errors.DataError, match='not found'):
    phonemes.load_phonemes(str(tmp_path / 'absent'), 11, 0.2, seed=0)
  names = _write_phoneme_folder(tmp_path)
  os.remove(tmp_path / 'feat' / 'train' / f'{names[0]}.npy')
  with pytest.raises(errors.DataError, match=names[0]):
    phonemes.load_phonemes(str(tmp_path), 11, 0.2, seed=0)
  with pytest.raises(errors.ConfigError, match='odd'):
    phonemes.load_phonemes(str(tmp_path), 4, 0.2, seed=0)


def test_toolkit_unknown_experiment_fails_clearly(tmp_path):
  with pytest.raises(errors.ConfigError, match='unknown --experiment'):
    experiments.run_experiment('nope', config_lib.get_config(), str(tmp_path))
  done = subprocess.run(
      [sys.executable, '-m', 'projects.classification.toolkit',
       '--experiment=nope', f'--workdir={tmp_path}'],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: unknown --experiment='nope'")
  assert not os.listdir(tmp_path)
