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


def test_random_resized_crop_of_the_whole_image_is_the_identity():
  images = _images()
  chex.assert_trees_all_close(augment.random_resized_crop(
      jax.random.key(6), images, scale=(1.0, 1.0), ratio=(1.0, 1.0)), images,
                              atol=1e-6)
  cropped = augment.random_resized_crop(jax.random.key(6), images,
                                        scale=(0.2, 0.5))
  chex.assert_equal_shape([images, cropped])
  assert not np.allclose(cropped, images)
  # A crop of a constant image is that constant.
  flat = jnp.full((4, 8, 8, 3), 0.3)
  chex.assert_trees_all_close(
      augment.random_resized_crop(jax.random.key(7), flat), flat, atol=1e-6)


def test_hue_greyscale_and_blur_are_the_transforms_they_name():
  images = _images()
  grey = augment.random_greyscale(jax.random.key(8), images, 1.0)
  chex.assert_trees_all_close(grey[..., 0], grey[..., 2])
  chex.assert_trees_all_close(grey[..., 0], images @ jnp.array(
      [0.299, 0.587, 0.114]), atol=1e-6)
  one_channel = images[..., :1]
  assert augment.random_greyscale(jax.random.key(8), one_channel,
                                  1.0) is one_channel
  # A hue turn keeps grey pixels grey, and a full turn is the identity.
  grey_images = jnp.repeat(images[..., :1] * 0.5 + 0.25, 3, axis=-1)
  chex.assert_trees_all_close(augment.random_hue(
      jax.random.key(9), grey_images, 0.5), grey_images, atol=1e-5)
  # Blur keeps a constant image and the mean of each image about the same.
  flat = jnp.full((4, 8, 8, 1), 0.7)
  chex.assert_trees_all_close(augment.random_gaussian_blur(
      jax.random.key(10), flat, 1.0), flat, atol=1e-6)
  blurred = augment.random_gaussian_blur(jax.random.key(10), images, 1.0,
                                         sigma=(1.0, 2.0), kernel_fraction=0.5)
  assert float(blurred.std()) < float(images.std())


def test_two_views_keep_shape_and_range_and_follow_the_key():
  views = augment.views_config(blur_probability=0.5, jitter_strength=1.0)
  two_views = jax.jit(augment.make_two_views(views))
  for channels in (1, 3):
    images = _images(channels=channels)
    first, second = two_views(jax.random.key(11), images)
    for view in (first, second):
      chex.assert_equal_shape([images, view])
      assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0
    assert not np.allclose(first, second)
    again = two_views(jax.random.key(11), images)
    chex.assert_trees_all_equal((first, second), again)
  with pytest.raises(errors.ConfigError, match='config.augment.crop_scale'):
    augment.make_view(augment.views_config(crop_scale=(0.5, 0.1)))
  with pytest.raises(errors.ConfigError,
                     match='config.augment.jitter_strength'):
    augment.make_view(augment.views_config(jitter_strength=-0.1))
  with pytest.raises(errors.ConfigError,
                     match='config.augment.blur_probability'):
    augment.make_view(augment.views_config(blur_probability=2.0))
