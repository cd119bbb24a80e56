"""Augmentations: shapes, ranges, and that each is the transform it names."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import errors
from lib.data import augment


def _images(batch=16, size=8, channels=3):
  return jax.random.uniform(jax.random.key(0), (batch, size, size, channels))


def test_random_crop_is_a_shifted_window():
  images = _images()
  cropped = augment.random_crop(jax.random.key(1), images, padding=2)
  chex.assert_equal_shape([images, cropped])
  padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(len(images)):
    windows = [padded[i, dy:dy + 8, dx:dx + 8] for dy in range(5)
               for dx in range(5)]
    assert any(np.array_equal(w, cropped[i]) for w in windows)
  assert not np.array_equal(cropped, images)  # 16 examples: some shifted
  chex.assert_trees_all_equal(
      augment.random_crop(jax.random.key(1), images, padding=0), images)


def test_random_flip_mirrors_about_half():
  images = _images(batch=256)
  flipped = augment.random_flip(jax.random.key(2), images)
  same = np.all(np.asarray(flipped == images), axis=(1, 2, 3))
  mirrored = np.all(np.asarray(flipped == images[:, :, ::-1]), axis=(1, 2, 3))
  assert np.all(same | mirrored)
  assert 0.35 < mirrored.mean() < 0.65


def test_colour_jitter_stays_in_range_and_zero_strength_is_identity():
  images = _images()
  jittered = augment.colour_jitter(jax.random.key(3), images, 0.5, 0.5, 0.5)
  chex.assert_equal_shape([images, jittered])
  assert float(jittered.min()) >= 0.0 and float(jittered.max()) <= 1.0
  assert not np.allclose(jittered, images)
  chex.assert_trees_all_close(
      augment.colour_jitter(jax.random.key(3), images), images)
  grey = jnp.repeat(images[..., :1], 3, axis=-1)  # no saturation to change
  chex.assert_trees_all_close(
      augment.colour_jitter(jax.random.key(3), grey, saturation=0.5), grey,
      atol=1e-6)


def test_mixup_is_a_convex_combination_of_two_examples():
  images = _images()
  mixed, weight, perm = augment.mixup(jax.random.key(4), images, alpha=0.4)
  assert 0.0 <= float(weight) <= 1.0
  assert sorted(np.asarray(perm).tolist()) == list(range(16))
  chex.assert_trees_all_close(
      mixed, weight * images + (1 - weight) * images[perm], atol=1e-6)


def test_make_augment_composes_and_validates():
  assert augment.make_augment(augment.config()) is None
  assert augment.make_augment(augment.config(mixup_alpha=0.2)) is None
  apply = augment.make_augment(augment.config(crop_padding=2, flip=True,
                                              brightness=0.2))
  out = jax.jit(apply)(jax.random.key(5), _images())
  chex.assert_shape(out, (16, 8, 8, 3))
  chex.assert_tree_all_finite(out)
  with pytest.raises(errors.ConfigError, match='config.augment.brightness'):
    augment.make_augment(augment.config(brightness=1.5))
  with pytest.raises(errors.ConfigError, match='config.augment.crop_padding'):
    augment.make_augment(augment.config(crop_padding=-1))
