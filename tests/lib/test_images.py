"""Image data sets: every source gives float images in [0, 1] with int labels."""

import io
import tarfile
from pathlib import Path

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from lib import errors
from lib.data import images

CIFAR10_DIR = Path(__file__).parents[2].parent / 'shared/data/cifar10'


def _check(data: images.ImageData, shape, num_classes):
  for split in (data.train, data.val, data.test):
    chex.assert_shape(split['image'], (None, *shape))
    chex.assert_type([split['image'], split['label']], [np.float32, np.int32])
    assert 0.0 <= split['image'].min() and split['image'].max() <= 1.0
    assert split['image'].max() > 0.5  # scaled once, not twice
  assert data.num_classes == num_classes == len(data.class_names)


def test_digits_splits_are_disjoint():
  data = images.load_images(images.config('digits'))
  _check(data, (8, 8, 1), 10)
  sizes = [len(s['label']) for s in (data.train, data.val, data.test)]
  assert sum(sizes) == 1797
  flat = {s: {x.tobytes() for x in split['image']}
          for s, split in zip('tvs', (data.train, data.val, data.test))}
  assert not flat['v'] & flat['s']


def test_resize_and_limits():
  data = images.load_images(images.config(
      'digits', image_size=16, max_train_examples=100, max_test_examples=50,
      val_fraction=0.2))
  _check(data, (16, 16, 1), 10)
  assert (len(data.train['label']), len(data.val['label']),
          len(data.test['label'])) == (80, 20, 50)


def _write_cifar_archive(path, per_class=2):
  rng = np.random.default_rng(0)
  pixels = {}
  with tarfile.open(path, 'w:gz') as archive:
    for split in ('train', 'test'):
      for name in images.CIFAR10_CLASSES[:3]:
        for i in range(per_class):
          image = np.full((32, 32, 3), rng.integers(0, 256), np.uint8)
          buffer = io.BytesIO()
          Image.fromarray(image).save(buffer, format='JPEG', quality=95)
          info = tarfile.TarInfo(f'./{split}/{name}/{i:04d}.jpg')
          info.size = buffer.tell()
          buffer.seek(0)
          archive.addfile(info, buffer)
          pixels[(split, name, i)] = image[0, 0, 0]
  return pixels


def test_cifar10_archive_decodes_labels_and_pixels(tmp_path):
  pixels = _write_cifar_archive(tmp_path / 'cifar10_jpg_tree.tar.gz')
  decoded = images.read_cifar10_archive(
      str(tmp_path / 'cifar10_jpg_tree.tar.gz'))
  assert len(decoded['train']['label']) == len(decoded['test']['label']) == 6
  assert set(decoded['train']['label']) == {0, 1, 2}
  for image, label in zip(decoded['test']['image'], decoded['test']['label']):
    expected = [v for (split, name, _), v in pixels.items()
                if split == 'test' and name == images.CIFAR10_CLASSES[label]]
    assert min(abs(int(image[5, 5, 0]) - int(v)) for v in expected) <= 2
  data = images.load_images(images.config(
      'cifar10', cifar10_dir=str(tmp_path), cache_dir=str(tmp_path / 'cache'),
      val_fraction=0.5))
  assert data.class_names == images.CIFAR10_CLASSES
  assert (tmp_path / 'cache' / 'cifar10_jpg.npz').exists()
  chex.assert_shape(data.train['image'], (3, 32, 32, 3))


def test_missing_and_bad_data_sets(tmp_path):
  with pytest.raises(errors.DataError, match='does not exist'):
    images.load_images(images.config('cifar10', cifar10_dir=str(tmp_path)))
  with pytest.raises(errors.ConfigError, match='cifar10_source'):
    images.load_images(images.config('cifar10', cifar10_source='png'))
  with pytest.raises(errors.ConfigError, match="data.name='svhn'"):
    images.load_images(images.config('svhn'))
  with pytest.raises(errors.ConfigError, match='tfds_name'):
    images.load_images(images.config('tfds'))
  with tarfile.open(tmp_path / 'cifar10_jpg_tree.tar.gz', 'w:gz'):
    pass
  with pytest.raises(errors.DataError, match='no train'):
    images.read_cifar10_archive(str(tmp_path / 'cifar10_jpg_tree.tar.gz'))


def test_tfds_by_name():
  with tfds.testing.mock_data(num_examples=24,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    data = images.load_images(images.config(
        'tfds', tfds_name='mnist', val_fraction=0.25))
  chex.assert_shape(data.train['image'], (18, 28, 28, 1))
  chex.assert_type(data.train['image'], np.float32)
  assert data.train['image'].max() <= 1.0


def test_tfds_images_of_different_sizes_are_resized_or_refused():
  rng = np.random.default_rng(0)
  examples = [{'image': rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
               'label': i % 3}
              for i, (h, w) in enumerate([(40, 30), (24, 24), (50, 60)] * 4)]
  with tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: examples):
    data = images.load_images(images.config(
        'tfds', tfds_name='food101', image_size=16, val_fraction=0.25))
    chex.assert_shape(data.train['image'], (9, 16, 16, 3))
    assert data.num_classes == 3
    with pytest.raises(errors.DataError, match='data.image_size'):
      images.load_images(images.config('tfds', tfds_name='food101'))


@pytest.mark.skipif(not (CIFAR10_DIR / 'cifar10_convnetjs_lossless_4000.npz')
                    .exists(), reason='../shared/data/cifar10 is not here')
def test_real_cifar10_lossless():
  data = images.load_images(images.config(
      'cifar10', cifar10_dir=str(CIFAR10_DIR), cifar10_source='lossless'))
  _check(data, (32, 32, 3), 10)
  assert len(data.test['label']) == 1000
