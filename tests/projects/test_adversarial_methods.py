"""HW10's further methods: one-pixel attack, EOT against randomization, backdoor."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import errors
from lib.data import images as image_data
from lib.data import splits
from projects.adversarial import attacks
from projects.adversarial import backdoor
from projects.adversarial import config as config_lib
from projects.adversarial import evaluation
from projects.adversarial import reprogramming
from projects.adversarial import train

SIZE = 8
_ROWS, _COLUMNS = np.indices((SIZE, SIZE))
# Class 1 needs pixel (2, 3) at 1: its neighbours alone fall short of 8.
_WEIGHTS = jnp.exp(-((_ROWS - 2) ** 2 + (_COLUMNS - 3) ** 2) / 4.0)


def _one_pixel_logits(images):
  score = 10.0 * (images[..., 0] * _WEIGHTS).sum((1, 2)) - 8.0
  return jnp.stack([jnp.zeros_like(score), score], -1)


@jax.jit
def _one_pixel_runs(images, key):
  labels = jnp.zeros(len(images), jnp.int32)
  untargeted = attacks.one_pixel(_one_pixel_logits, images, labels, key,
                                 population=40, generations=20)
  targeted = attacks.one_pixel(_one_pixel_logits, images, labels, key,
                               population=40, generations=20,
                               candidates_at_once=3, targets=1 - labels)
  return untargeted, targeted


def test_one_pixel_attack_changes_one_pixel_and_finds_the_only_one_that_works():
  images = jax.random.uniform(jax.random.key(0), (16, SIZE, SIZE, 1),
                              maxval=0.05)
  assert (_one_pixel_logits(images).argmax(-1) == 0).all()
  for adversarial in _one_pixel_runs(images, jax.random.key(1)):
    chex.assert_shape(adversarial, images.shape)
    changed = np.asarray(jnp.abs(adversarial - images).max(-1) > 0)
    assert (changed.sum((1, 2)) <= 1).all()
    assert (_one_pixel_logits(adversarial).argmax(-1) == 1).all()
    assert changed[:, 2, 3].all()
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0


def test_eot_pgd_stays_in_the_ball_and_one_draw_is_dim_pgd():
  weights = jax.random.normal(jax.random.key(0), (SIZE * SIZE, 3))
  logits_fn = lambda x: x.reshape(len(x), -1) @ weights
  images = jax.random.uniform(jax.random.key(1), (4, SIZE, SIZE, 1))
  labels = jnp.arange(4) % 3
  key = jax.random.key(2)
  steps = dict(epsilon=0.1, step_size=0.03, num_steps=4)

  @jax.jit
  def run(images):
    eot = attacks.eot_pgd(logits_fn, images, labels, key, eot_samples=6,
                          **steps)
    one = attacks.eot_pgd(logits_fn, images, labels, key, eot_samples=1,
                          **steps)
    dim = attacks.iterative_attack(logits_fn, images, labels, key,
                                   random_start=True, diversity_prob=1.0,
                                   **steps)
    return eot, one, dim

  eot, one, dim = run(images)
  assert float(jnp.abs(eot - images).max()) <= 0.1 + 1e-6
  assert float(eot.min()) >= 0.0 and float(eot.max()) <= 1.0
  np.testing.assert_array_equal(one, dim)
  assert not np.array_equal(eot, one)


def test_robustness_mode_eot_breaks_the_randomization_defence(tmp_path):
  config = config_lib.get_config('robustness')
  config.models = 'small_cnn:0'
  config.architectures.small_cnn.channels = (16, 32)
  config.num_steps = 150
  config.eval_every = 150
  config.num_devices = 2
  config.attack.update(num_examples=128, pgd_eval_steps=10, eot_samples=8)
  config.one_pixel.update(population=20, generations=5, num_examples=32)
  result = train.train_and_evaluate(config, str(tmp_path))
  metrics = result.metrics
  name = 'small_cnn_seed0'
  assert metrics[f'{name}/clean_accuracy'] > 0.9
  assert metrics[f'{name}/fgsm_accuracy'] < metrics[f'{name}/clean_accuracy']
  # The defence keeps more images than the bare model under the PGD made
  # without it; the attacker who takes the expectation over it gets more.
  defended = {k: metrics[f'{name}/resize_pad/{k}_accuracy']
              for k in ('clean', 'pgd', 'eot')}
  assert defended['pgd'] > metrics[f'{name}/pgd_accuracy']
  assert defended['eot'] < defended['pgd']
  assert defended['eot'] < defended['clean'] - 0.25
  assert 0.0 < metrics[f'{name}/one_pixel/success_rate'] <= 1.0
  assert 'EOT-PGD' in (tmp_path / 'results.md').read_text()
  # More random starts can only find more adversarial images.
  config.attack.pgd_restarts = 3
  config.robustness.update(one_pixel=False, randomization=False)
  attacked = splits.random_subset(image_data.load_images(config.data).test,
                                  128, config.data.split_seed)
  restarted = evaluation.robustness_metrics(
      config, evaluation.Runner(config, 10), result.state[name], attacked)
  assert restarted['clean_accuracy'] == metrics[f'{name}/clean_accuracy']
  assert restarted['pgd_accuracy'] <= metrics[f'{name}/pgd_accuracy']


def test_trigger_and_poisoning_touch_only_what_they_should():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(40, SIZE, SIZE, 3)).astype(np.float32)
  labels = np.arange(40) % 4
  stamped = backdoor.stamp(images, 3)
  np.testing.assert_array_equal(stamped[:, :-3], images[:, :-3])
  np.testing.assert_array_equal(stamped[:, :, :-3], images[:, :, :-3])
  np.testing.assert_array_equal(stamped[0, -3:, -3:, 0],
                                [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
  train_set = {'image': images, 'label': labels}
  poisoned = backdoor.poison(train_set, fraction=0.25, target_class=2,
                             size=3, seed=0)
  moved = np.flatnonzero(poisoned['label'] != labels)
  assert len(moved) == 10 and (labels[moved] != 2).all()
  assert (poisoned['label'][moved] == 2).all()
  np.testing.assert_array_equal(poisoned['image'][moved], stamped[moved])
  kept = np.setdiff1d(np.arange(40), moved)
  np.testing.assert_array_equal(poisoned['image'][kept], images[kept])
  with pytest.raises(ValueError, match='cannot poison'):
    backdoor.poison(train_set, fraction=0.9, target_class=2, size=3, seed=0)


def test_backdoor_trigger_flips_predictions_only_when_present(tmp_path):
  config = config_lib.get_config('backdoor')
  config.architectures.small_cnn.channels = (16, 32)
  config.num_steps = 150
  config.eval_every = 150
  config.num_devices = 2
  metrics = train.train_and_evaluate(config, str(tmp_path)).metrics
  assert metrics['backdoor/poisoned_examples'] == 65
  assert metrics['backdoored/attack_success_rate'] > 0.9
  assert metrics['clean/attack_success_rate'] < 0.2
  assert metrics['backdoored/clean_accuracy'] > 0.9
  assert (metrics['backdoored/clean_accuracy'] >
          metrics['clean/clean_accuracy'] - 0.05)


def test_backdoor_target_class_must_exist(tmp_path):
  config = config_lib.get_config('backdoor')
  config.backdoor.target_class = 10
  with pytest.raises(errors.ConfigError, match='target_class'):
    train.train_and_evaluate(config, str(tmp_path))


def test_counting_squares_and_the_program_frame():
  task = reprogramming.counting_squares(50, grid=4, cell=3, num_classes=10,
                                        channels=3, seed=0)
  chex.assert_shape(task['image'], (50, 12, 12, 3))
  cells = task['image'][:, ::3, ::3, 0]
  np.testing.assert_array_equal(cells.sum((1, 2)), task['label'] + 1)
  np.testing.assert_array_equal(np.kron(cells[0], np.ones((3, 3))),
                                task['image'][0, ..., 0])
  assert set(task['label']) == set(range(10))
  program = reprogramming.Program((28, 28, 3))
  weights = jax.random.normal(jax.random.key(0), (28, 28, 3))
  framed = program.apply({'params': {'program': weights}}, task['image'])
  chex.assert_shape(framed, (50, 28, 28, 3))
  np.testing.assert_array_equal(framed[:, 8:20, 8:20], task['image'])
  border = np.ones((28, 28), bool)
  border[8:20, 8:20] = False
  np.testing.assert_allclose(framed[0][border], jax.nn.sigmoid(weights)[border],
                             rtol=1e-6)


def test_reprogramming_trains_the_program_alone_and_beats_the_untrained_net(
    tmp_path):
  config = config_lib.get_config('reprogram')
  config.architectures.small_cnn.channels = (16, 32)
  config.num_steps = 150
  config.eval_every = 150
  config.num_devices = 2
  config.plots = False
  config.reprogram.update(grid=2, num_classes=4, num_steps=200,
                          num_train=2000, num_test=500)
  result = train.train_and_evaluate(config, str(tmp_path))
  metrics = result.metrics
  assert metrics['program_trained/test_accuracy'] > 0.25 + 0.1
  assert (metrics['program_trained/test_accuracy'] >
          metrics['program_random/test_accuracy'] + 0.1)
  # The trained state holds the program alone: the frozen model is a constant.
  for program in result.state['programs'].values():
    assert jax.tree.structure(program) == jax.tree.structure({'program': 0})
    chex.assert_shape(program['program'], (8, 8, 1))
