"""Image classification data sets as {'image': float32 [N, H, W, C] in [0, 1], 'label': int32 [N]}.

One config block (`config()`) picks the data set for every image project:
  digits   scikit-learn's bundled 8x8 digits (offline; 20% held out as test)
  mnist    the MNIST IDX files in `mnist_dir`
  cifar10  CIFAR-10 from `cifar10_dir`: the JPEG tree archive (all 60k images,
           JPEG-compressed) or, with `cifar10_source='lossless'`, the 4,000
           exact images of the convnetjs copy (last 1,000 held out as test)
  tfds     any TFDS image classification data set by name (`tfds_name`:
           mnist, fashion_mnist, cifar10, food101, ...), prepared in the
           array_record format
Validation is held out from the training split (`val_fraction`).
"""

import io
import os
import tarfile
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from lib import errors
from lib.data import batches
from lib.data import embedded
from lib.data import mnist_files
from lib.data import splits
from lib.data import tfds_source

DATASETS = ('digits', 'mnist', 'cifar10', 'tfds')
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
_CIFAR10_ARCHIVE = 'cifar10_jpg_tree.tar.gz'
_CIFAR10_LOSSLESS = 'cifar10_convnetjs_lossless_4000.npz'


class ImageData(NamedTuple):
  train: dict[str, np.ndarray]
  val: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  num_classes: int
  class_names: tuple[str, ...]


def config(name: str = 'digits', **overrides) -> ml_collections.ConfigDict:
  fields = ml_collections.ConfigDict(dict(
      name=name,  # digits | mnist | cifar10 | tfds
      mnist_dir='../shared/data/mnist',
      cifar10_dir='../shared/data/cifar10',
      cifar10_source='jpg',  # jpg (60k, JPEG-compressed) | lossless (4k exact)
      tfds_name='',
      tfds_data_dir='',  # '' = TFDS's default (~/tensorflow_datasets)
      image_size=0,  # resize to image_size x image_size; 0 = as stored
      val_fraction=0.1,  # of the training split
      split_seed=0,
      max_train_examples=0,  # 0 = all; a subset for quick runs
      max_test_examples=0,
      cache_dir='~/.cache/ml_course_jax',  # decoded JPEG archives
  ))
  fields.update(overrides)
  return fields


def _as_float(images: np.ndarray, scale: float) -> np.ndarray:
  images = np.asarray(images, np.float32) / scale
  return images[..., None] if images.ndim == 3 else images


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  if not size or images.shape[1:3] == (size, size):
    return images
  resize = jax.jit(lambda x: jax.image.resize(
      x, (x.shape[0], size, size, x.shape[-1]), 'linear'))
  chunks = [np.asarray(resize(images[i:i + 1024]))
            for i in range(0, len(images), 1024)]
  return np.clip(np.concatenate(chunks), 0.0, 1.0)


def read_cifar10_archive(path: str) -> dict[str, dict[str, np.ndarray]]:
  """The JPEG tree `train|test/<class>/NNNN.jpg` as uint8 arrays per split."""
  from PIL import Image  # matplotlib's dependency; only this loader needs it
  images = {'train': [], 'test': []}
  labels = {'train': [], 'test': []}
  class_index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
  with tarfile.open(path) as archive:
    for member in archive:
      parts = member.name.strip('./').split('/')
      if not member.isfile() or len(parts) < 3 or not parts[-1].endswith(
          '.jpg'):
        continue
      split, label = parts[-3], parts[-2]
      if split not in images or label not in class_index:
        continue
      data = archive.extractfile(member).read()
      images[split].append(np.asarray(Image.open(io.BytesIO(data)).convert(
          'RGB')))
      labels[split].append(class_index[label])
  if not images['train'] or not images['test']:
    raise errors.DataError(f'{path}: no train/<class>/*.jpg and '
                           'test/<class>/*.jpg images in the archive.')
  return {split: {'image': np.stack(images[split]),
                  'label': np.asarray(labels[split], np.int32)}
          for split in images}


def _load_cifar10(data: ml_collections.ConfigDict):
  directory = os.path.expanduser(data.cifar10_dir)
  if data.cifar10_source == 'lossless':
    path = os.path.join(directory, _CIFAR10_LOSSLESS)
    if not os.path.exists(path):
      raise errors.DataError(f'{path} does not exist (data.cifar10_dir).')
    with np.load(path) as arrays:
      images, labels = arrays['x'], arrays['y'].astype(np.int32)
    return ({'image': images[:3000], 'label': labels[:3000]},
            {'image': images[3000:], 'label': labels[3000:]})
  if data.cifar10_source != 'jpg':
    raise errors.ConfigError(f'data.cifar10_source={data.cifar10_source!r}: '
                             "choose 'jpg' or 'lossless'")
  path = os.path.join(directory, _CIFAR10_ARCHIVE)
  if not os.path.exists(path):
    raise errors.DataError(f'{path} does not exist (data.cifar10_dir).')
  cache = os.path.join(os.path.expanduser(data.cache_dir), 'cifar10_jpg.npz')
  if not os.path.exists(cache):
    decoded = read_cifar10_archive(path)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache + '.tmp.npz', **{f'{split}_{key}': value
                                    for split, arrays in decoded.items()
                                    for key, value in arrays.items()})
    os.replace(cache + '.tmp.npz', cache)
  with np.load(cache) as arrays:
    return tuple({'image': arrays[f'{split}_image'],
                  'label': arrays[f'{split}_label']}
                 for split in ('train', 'test'))


def _load_tfds(data: ml_collections.ConfigDict):
  if not data.tfds_name:
    raise errors.ConfigError("data.tfds_name must name a TFDS data set when "
                             "data.name='tfds'")
  loaded = []
  for split, limit in (('train', data.max_train_examples),
                       ('test', data.max_test_examples)):
    source = tfds_source.load_tfds(data.tfds_name, split,
                                   data.tfds_data_dir or None)
    loaded.append(_tfds_images(source, limit, data.image_size,
                               f'{data.tfds_name}:{split}'))
  return tuple(loaded)


def _tfds_images(source, limit: int, image_size: int, name: str) -> dict:
  """Images and labels of a TFDS source, each image resized to `image_size`.

  Resizing per example (uint8, bilinear) lets data sets whose images differ
  in size (food101, ...) stack into one array.
  """
  from PIL import Image  # matplotlib's dependency
  size = batches.num_examples(source)
  size = min(size, limit) if limit else size
  images, labels = [], []
  for index in range(size):
    example = source[index]
    image = np.asarray(example['image'])
    if image_size and image.shape[:2] != (image_size, image_size):
      pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
      image = np.asarray(pil.resize((image_size, image_size),
                                    Image.Resampling.BILINEAR))
      image = image.reshape(image_size, image_size, -1)
    images.append(image)
    labels.append(example['label'])
  shapes = sorted({x.shape for x in images})
  if len(shapes) > 1:
    raise errors.DataError(
        f'{name}: images have different shapes ({shapes[0]}, {shapes[-1]}, '
        '...); set data.image_size to resize each one, e.g. '
        '--config.data.image_size=64')
  return {'image': np.stack(images), 'label': np.asarray(labels)}


def _limit(source: dict, limit: int, seed: int) -> dict:
  size = len(source['label'])
  if not limit or limit >= size:
    return source
  keep = np.sort(np.random.default_rng(seed).permutation(size)[:limit])
  return splits.take(source, keep)


def load_images(data: ml_collections.ConfigDict) -> ImageData:
  """Train/val/test splits of the data set `data.name`, images in [0, 1]."""
  class_names = tuple(str(i) for i in range(10))
  if data.name == 'digits':
    digits = embedded.load_digits()
    train, test = splits.split_fraction(digits, 0.2, seed=12345)
  elif data.name == 'mnist':
    mnist = mnist_files.load_mnist(os.path.expanduser(data.mnist_dir))
    train, test = mnist['train'], mnist['test']
  elif data.name == 'cifar10':
    train, test = _load_cifar10(data)
    class_names = CIFAR10_CLASSES
  elif data.name == 'tfds':
    train, test = _load_tfds(data)
    class_names = ()
  else:
    raise errors.ConfigError(f'data.name={data.name!r}: choose one of '
                             f'{DATASETS}')
  train = _limit(train, data.max_train_examples, data.split_seed)
  test = _limit(test, data.max_test_examples, data.split_seed)
  scale = 1.0 if data.name == 'digits' else 255.0
  train, test = ({'image': _resize(_as_float(s['image'], scale),
                                   data.image_size),
                  'label': np.asarray(s['label'], np.int32)}
                 for s in (train, test))
  num_classes = int(max(train['label'].max(), test['label'].max())) + 1
  if not class_names:
    class_names = tuple(str(i) for i in range(num_classes))
  train, val = splits.split_fraction(train, data.val_fraction,
                                     data.split_seed)
  return ImageData(train, val, test, num_classes, class_names)
