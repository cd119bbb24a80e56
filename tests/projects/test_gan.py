"""HW6: GAN losses, gradient penalty, spectral norm, clipping, the sharded
step, the data, the quick config learning the 8-mode ring, Stacked MNIST's
data, packing and mode counting, and pix2pix completing half-masked digits."""

import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import errors
from lib import generative
from lib import mesh as mesh_lib
from projects.gan import config as config_lib
from projects.gan import data as data_lib
from projects.gan import gan as gan_lib
from projects.gan import losses
from projects.gan import networks
from projects.gan import pix2pix
from projects.gan import train


def _tiny_config(**overrides):
  config = config_lib.get_config('quick')
  config.model.hidden = (8, 8)
  config.batch_size = 16
  config.n_critic = 2
  config.update(overrides)
  return config


def _mixture_gan(config):
  problem = data_lib.load_problem(config)
  return train.build_gan(config, problem), problem


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('gan_quick'))
  config = config_lib.get_config('quick')
  config.num_devices = 2
  config.plots = True
  return workdir, train.train_and_evaluate(config, workdir)


def test_quick_config_covers_the_ring_and_its_init_does_not(quick_run):
  workdir, result = quick_run
  assert result.metrics['test/modes_covered'] >= 7
  assert result.metrics['test/high_quality_fraction'] > 0.5
  assert result.metrics['test/kl_to_uniform'] < 0.3
  assert result.metrics['baseline/init_modes_covered'] < 7
  for name in ('samples.png', 'players.png', 'learning_curves.png'):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, 'samples'))


def test_gradient_penalty_matches_finite_differences():
  with jax.enable_x64(True):
    critic_model = networks.Discriminator(networks.MLPFeatures((6, 6)))
    x = jax.random.normal(jax.random.key(0), (5, 2), jnp.float64)
    params = jax.tree.map(lambda p: p.astype(jnp.float64),
                          critic_model.init(jax.random.key(1), x))
    fake = jax.random.normal(jax.random.key(2), (5, 2), jnp.float64)
    key = jax.random.key(3)

    @jax.jit
    def check(params, x, fake):
      critic = lambda x: critic_model.apply(params, x)
      eps = 1e-6

      def numeric_norms(x):
        columns = [(critic(x + s) - critic(x - s)) / (2 * eps)
                   for s in eps * jnp.eye(2)]
        return jnp.linalg.norm(jnp.stack(columns, axis=1), axis=1)

      mix = jax.random.uniform(key, (5, 1), jnp.float64)
      x_hat = mix * x + (1 - mix) * fake
      return (losses.input_gradient_norms(critic, x), numeric_norms(x),
              losses.gradient_penalty(critic, x, fake, key),
              jnp.mean((numeric_norms(x_hat) - 1)**2))

    norms, numeric, penalty, expected = check(params, x, fake)
    np.testing.assert_allclose(norms, numeric, rtol=1e-6)
    np.testing.assert_allclose(penalty, expected, rtol=1e-6)


class _SpectralDense(nn.Module):

  @nn.compact
  def __call__(self, x, *, train=False):
    return generative.spectrally_normalized(nn.Dense(5, use_bias=False),
                                            True, train)(x)


def test_spectral_norm_of_a_normalized_weight_is_one():
  model = _SpectralDense()
  x = jnp.eye(7)  # the outputs are the normalized weight's rows
  variables = model.init(jax.random.key(0), x)
  variables = {'params': jax.tree.map(lambda w: 3.0 * w,
                                      variables['params']),
               'batch_stats': variables['batch_stats']}
  power_step = jax.jit(lambda v: model.apply(v, x, train=True,
                                             mutable=['batch_stats'])[1])
  for _ in range(30):  # power iteration, one step per training call
    variables = {**variables, **power_step(variables)}
  weight = model.apply(variables, x, train=False)
  raw = variables['params']['Dense_0']['kernel']
  assert np.linalg.svd(raw, compute_uv=False)[0] > 1.5
  assert np.linalg.svd(weight, compute_uv=False)[0] == pytest.approx(
      1.0, abs=1e-3)


def test_loss_known_answers():
  zero = jnp.zeros(4)
  assert losses.discriminator_loss('minimax', zero, zero) == pytest.approx(
      2 * np.log(2))
  assert losses.generator_loss('minimax', zero) == pytest.approx(-np.log(2))
  assert losses.generator_loss('nonsaturating', zero) == pytest.approx(
      np.log(2))
  real, fake = jnp.array([2.0, 0.0]), jnp.array([-3.0, 1.0])
  assert losses.discriminator_loss('wgan', real, fake) == pytest.approx(-2.0)
  assert losses.discriminator_loss('hinge', real, fake) == pytest.approx(
      (0 + 1) / 2 + (0 + 2) / 2)
  assert losses.generator_loss('hinge', fake) == pytest.approx(1.0)


def _with(config, **fields):
  config = config.copy_and_resolve_references()
  config.update(fields)
  return config


def test_sharded_gan_step_equals_the_unsharded_step_and_clips_weights():
  config = _with(_tiny_config(loss='wgan', clip_value=0.02), steps_per_call=2)
  config.model.hidden = (8,)
  config.d_optimizer.learning_rate = 0.5  # pushes weights past the clip
  gan, problem = _mixture_gan(config)
  batches = data_lib.real_chunk(config, problem, 1)
  chex.assert_shape(batches['real'], (2, 2, 16, 2))  # steps, n_critic, B, 2
  results = []
  for devices in (8, 1):
    mesh = mesh_lib.make_mesh(devices)
    state = gan_lib.make_init(gan, 0, mesh)()
    state, metrics = gan_lib.make_step(gan, mesh)(
        state, gan_lib.shard_chunk(batches, mesh))
    state = state.replace(key=jax.random.key_data(state.key))
    results.append(jax.device_get((state, metrics)))
  chex.assert_trees_all_close(results[0], results[1], rtol=1e-4, atol=1e-5)
  state, metrics = results[0]
  chex.assert_tree_all_finite(metrics)
  assert int(state.step) == 2
  for weight in jax.tree.leaves(state.d_params):
    assert float(np.max(np.abs(weight))) <= 0.02 + 1e-7


def test_conditional_conv_players_and_projection_discriminator():
  config = _with(config_lib.get_config('digits_conditional'),
                 spectral_norm=True)
  config.model.update(width=4, features=8)
  generator, discriminator = networks.make_players(config, (8, 8, 1), 10)
  z = jnp.tile(jax.random.normal(jax.random.key(0), (4, config.latent_dim)),
               (2, 1))
  labels = jnp.concatenate([jnp.arange(4), jnp.arange(4) + 1])
  samples, _ = jax.jit(generator.init_with_output)(jax.random.key(1), z,
                                                   labels)
  chex.assert_shape(samples, (8, 8, 8, 1))
  assert float(jnp.abs(samples).max()) <= 1.0
  assert not np.allclose(samples[:4], samples[4:])  # the label matters
  same_images = jnp.tile(samples[:4], (2, 1, 1, 1))
  scores, d_vars = jax.jit(discriminator.init_with_output)(
      jax.random.key(2), same_images, labels)
  assert 'batch_stats' in d_vars  # spectral-norm power-iteration vectors
  chex.assert_shape(scores, (8,))
  assert not np.allclose(scores[:4], scores[4:])  # the projection term


def test_mixtures_and_the_real_batch_are_deterministic():
  assert data_lib.mixture_centers('ring').shape == (8, 2)
  assert data_lib.mixture_centers('grid').shape == (25, 2)
  np.testing.assert_allclose(np.linalg.norm(data_lib.mixture_centers('ring'),
                                            axis=1), 2.0)
  config = _tiny_config()
  problem = data_lib.load_problem(config)
  first = data_lib.real_batch(config, problem, 3)['real']
  np.testing.assert_array_equal(
      first, data_lib.real_batch(config, problem, 3)['real'])
  assert not np.array_equal(first,
                            data_lib.real_batch(config, problem, 4)['real'])


def _stacked_digits_config(**overrides):
  config = config_lib.get_config('stacked_digits')
  config.update(overrides)
  return config


def _matching_labels(image, split):
  """The labels of the single-channel images of `split` equal to `image`."""
  same = np.all(split['image'][..., 0] == image, axis=(1, 2))
  return set(split['label'][same].tolist())


def test_stacked_batches_are_pure_and_their_modes_are_the_digits():
  config = _stacked_digits_config(batch_size=8, n_critic=2)
  problem = data_lib.load_problem(config)
  assert problem.sample_shape == (8, 8, 3) and problem.num_classes == 1000
  first = data_lib.real_batch(config, problem, 3)['real']
  chex.assert_shape(first, (2, 8, 8, 8, 3))  # n_critic, B, H, W, digits
  np.testing.assert_array_equal(
      first, data_lib.real_batch(config, problem, 3)['real'])
  assert not np.array_equal(first,
                            data_lib.real_batch(config, problem, 4)['real'])
  train = {'image': problem.train, 'label': problem.train_labels}
  for channel in np.moveaxis(first.reshape(-1, 8, 8, 3), -1, 0)[:, :4]:
    for image in channel:  # every channel is one training digit
      assert _matching_labels(image, train)
  images, modes = data_lib.stacked_test(problem, 6, seed=0)
  chex.assert_shape(images, (6, 8, 8, 3))
  for image, mode in zip(images, modes):
    digits = [_matching_labels(image[..., c], problem.images.test)
              for c in range(3)]
    assert mode in {100 * a + 10 * b + c for a in digits[0]
                    for b in digits[1] for c in digits[2]}
  np.testing.assert_array_equal(
      data_lib.stacked_modes(np.array([[3, 0, 7], [9, 9, 9]]), 10),
      [307, 999])


def test_packing_concatenates_consecutive_samples_along_channels():
  images = jnp.arange(6 * 4 * 4 * 3, dtype=jnp.float32).reshape(6, 4, 4, 3)
  packed = gan_lib.pack_samples(images, 2)
  chex.assert_shape(packed, (3, 4, 4, 6))
  np.testing.assert_array_equal(packed[1, ..., :3], images[2])
  np.testing.assert_array_equal(packed[1, ..., 3:], images[3])
  points = jnp.arange(12.0).reshape(6, 2)
  np.testing.assert_array_equal(gan_lib.pack_samples(points, 3),
                                points.reshape(2, 6))
  assert gan_lib.pack_samples(points, 1) is points


def test_stacked_digits_with_packing_scores_modes_end_to_end(tmp_path):
  config = _stacked_digits_config(num_devices=2, batch_size=16, pack=2,
                                  num_steps=4, log_every=4, eval_every=4,
                                  checkpoint_every=0, plots=False)
  config.model.update(width=4, features=16)
  config.classifier.update(num_steps=100, batch_size=64)
  config.eval.update(num_samples=256, batch_size=256)
  metrics = train.train_and_evaluate(config, str(tmp_path)).metrics
  # 256 stacked test images over 1,000 modes: about 226 distinct ones, KL
  # at least log(1000 / 256) = 1.36 (against log 1000 = 6.9 on one mode).
  assert metrics['baseline/real_modes_covered'] > 150
  assert metrics['baseline/real_mode_accuracy'] > 0.8
  assert metrics['baseline/real_mode_kl'] < 2.0
  for name in ('test/modes_covered', 'test/mode_kl', 'test/digit_kl',
               'baseline/init_modes_covered', 'baseline/init_mode_kl'):
    assert np.isfinite(metrics[name]), name
  assert 1 <= metrics['test/modes_covered'] <= 256


def test_image_folder_loader(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  (tmp_path / 'faces' / 'part').mkdir(parents=True)
  for i, size in enumerate((80, 96, 64)):
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / 'faces' / 'part' / f'{i}.png')
  (tmp_path / 'faces' / 'notes.txt').write_text('not an image')
  images = data_lib.load_image_folder(str(tmp_path / 'faces'), 16)
  chex.assert_shape(images, (3, 16, 16, 3))
  assert 0.0 <= images.min() and images.max() <= 1.0
  config = config_lib.get_config('folder')
  config.data.folder = str(tmp_path / 'faces')
  problem = data_lib.load_problem(config)
  assert problem.sample_shape == (64, 64, 3)
  assert problem.train.min() >= -1.0 and problem.train.max() <= 1.0
  with pytest.raises(errors.DataError, match='data.folder'):
    data_lib.load_image_folder(str(tmp_path / 'nowhere'), 16)


@pytest.mark.parametrize('field,value,message', [
    ('loss', 'lsgan', 'config.loss'),
    ('conditional', True, 'labelled images'),
    ('steps_per_call', 7, 'multiple of config.steps_per_call'),
    ('ema_decay', 1.0, 'ema_decay'),
    ('pack', 0, 'config.pack=0 must be a positive integer'),
    ('pack', 3, 'multiple of config.pack=3'),
])
def test_bad_config_fails_with_one_clear_message(field, value, message):
  config = config_lib.get_config()
  config[field] = value
  with pytest.raises(errors.ConfigError, match=message):
    config_lib.validate(config)


def test_every_variant_validates():
  for variant in (None, *config_lib.VARIANTS):
    config_lib.validate(config_lib.get_config(variant))


def test_pix2pix_players_keep_the_visible_half_and_score_patches():
  size, patches = 28, 7  # MNIST: 28 -> 14 -> 7 and back
  generator = pix2pix.UNet(width=4, norm='batch')
  discriminator = pix2pix.PatchDiscriminator(width=4, spectral_norm=True)
  images = jax.random.uniform(jax.random.key(0), (3, size, size, 1),
                              minval=-1.0, maxval=1.0)
  hidden = pix2pix.hidden_mask('bottom_half', size)
  condition = images * (1 - hidden)
  g_vars = jax.jit(generator.init)(jax.random.key(1), condition)
  model = pix2pix.Pix2Pix(
      generator, discriminator, g_tx=None, d_tx=None, loss='nonsaturating',
      image_shape=(size, size, 1), hidden=hidden, l1_weight=1.0,
      gan_weight=1.0)
  (completion, g_state) = jax.jit(model.complete, static_argnames='train')(
      g_vars['params'], {'batch_stats': g_vars['batch_stats']}, condition,
      train=True)
  chex.assert_shape(completion, (3, size, size, 1))
  chex.assert_tree_all_finite((completion, g_state))
  assert float(jnp.abs(completion).max()) <= 1.0
  visible = np.broadcast_to(hidden == 0, completion.shape)
  np.testing.assert_array_equal(completion[visible], images[visible])
  scores, d_vars = jax.jit(discriminator.init_with_output)(
      jax.random.key(2), condition, completion)
  chex.assert_shape(scores, (3, patches, patches))
  chex.assert_tree_all_finite((scores, d_vars))


def test_pix2pix_generator_loss_without_gan_is_the_hidden_half_l1():
  target = jnp.zeros((1, 2, 2, 1))
  completion = jnp.array([0.0, 0.0, 0.5, -1.5]).reshape(1, 2, 2, 1)
  hidden = pix2pix.hidden_mask('bottom_half', 2)  # the second row
  scores = jnp.array([[[3.0]]])  # any score: its weight is 0
  loss, parts = pix2pix.generator_objective(
      'nonsaturating', scores, completion, target, hidden, l1_weight=10.0,
      gan_weight=0.0)
  assert float(parts['l1']) == pytest.approx((0.5 + 1.5) / 2)
  assert float(loss) == pytest.approx(10.0 * (0.5 + 1.5) / 2)
  both, _ = pix2pix.generator_objective(
      'nonsaturating', scores, completion, target, hidden, l1_weight=10.0,
      gan_weight=2.0)
  assert float(both) == pytest.approx(10.0 + 2 * np.log1p(np.exp(-3.0)))


@pytest.mark.parametrize('field,value,message', [
    ('pix2pix.gan_weight', 0.0, 'both 0'),
    ('pix2pix.l1_weight', -1.0, 'l1_weight=-1.0 must be >= 0'),
    ('pix2pix.mask', 'top_third', 'config.pix2pix.mask'),
    ('loss', 'wgan_gp', r'config.loss \(pix2pix\)'),
    ('data.name', 'ring', 'labelled images'),
    ('n_critic', 2, 'n_critic=1'),
])
def test_bad_pix2pix_config_fails_with_one_clear_message(field, value,
                                                         message):
  config = config_lib.get_config('pix2pix')
  config.pix2pix.l1_weight = 0.0 if field == 'pix2pix.gan_weight' else 100.0
  group, _, name = field.rpartition('.')
  (config[group] if group else config)[name] = value
  with pytest.raises(errors.ConfigError, match=message):
    config_lib.validate(config)


def test_pix2pix_completions_beat_the_mean_image(tmp_path):
  config = config_lib.get_config('pix2pix')
  config.data.image_size = 0  # 8x8 digits
  config.model.width = 8
  config.optimizer.learning_rate = config.d_optimizer.learning_rate = 2e-3
  config.classifier.update(num_steps=20, batch_size=32)
  config.update(num_devices=2, batch_size=32, num_steps=150, log_every=150,
                eval_every=150, checkpoint_every=0)
  metrics = train.train_and_evaluate(config, str(tmp_path)).metrics
  assert metrics['test/hidden_l1'] < 0.75 * metrics[
      'baseline/mean_fill_hidden_l1']
  assert metrics['test/hidden_mse'] < metrics['baseline/mean_fill_hidden_mse']
  for name in ('accuracy', 'fid', 'sharpness_ratio'):
    assert np.isfinite(metrics[f'test/{name}']), name
  assert os.path.exists(os.path.join(str(tmp_path), 'completions.png'))
