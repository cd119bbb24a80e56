"""Image data for the deep ensemble, and the out-of-distribution inputs it is tested on.

Sources (config.data.source):
  digits   scikit-learn's 8x8 digits (offline): `test_fraction` held out,
           then `val_fraction` of the rest.
  mnist    the IDX files in `mnist_dir`: the official 10,000 test images;
           the last `val_size` training images are the validation split.
  tfds     TFDS `tfds_name` (e.g. 'mnist') from `tfds_data_dir`, same splits.
  cifar10  `cifar10_npz` (4,000 exact CIFAR-10 images, x uint8 [N, 32, 32, 3]
           and y): the last `test_fraction` are the test split.
OOD inputs (config.data.ood): 'shuffled_pixels' (test images with their
pixels permuted, each its own way: same intensities, no shape), 'noise'
(uniform), 'cifar10' (the CIFAR-10 npz in grey, resized to the images' size;
for MNIST).
"""

import os

import jax
import numpy as np

from lib import errors
from lib.data import embedded
from lib.data import mnist_files
from lib.data import splits
from lib.data import tfds_source

SOURCES = ('digits', 'mnist', 'tfds', 'cifar10')
OOD_KINDS = ('shuffled_pixels', 'noise', 'cifar10')


def _as_float(split):
  image = split['image']
  if image.dtype == np.uint8:
    image = image.astype(np.float32) / 255.0
  return {'image': image.astype(np.float32),
          'label': split['label'].astype(np.int32)}


def _read_cifar10(path: str):
  if not os.path.exists(path):
    raise errors.DataError(f'{path}: no such file; set '
                           '--config.data.cifar10_npz to the CIFAR-10 npz.')
  with np.load(path) as arrays:
    return {'image': arrays['x'], 'label': arrays['y'].astype(np.int32)}


def _tail_split(data, size: int):
  total = len(data['label'])
  if not 0 < size < total:
    raise errors.ConfigError(f'a held-out split of {size} from {total} '
                             'examples leaves an empty split')
  return ({k: v[:total - size] for k, v in data.items()},
          {k: v[total - size:] for k, v in data.items()})


def load_splits(config) -> dict:
  """{'train', 'val', 'test'}: 'image' float32 [N, H, W, C] in [0, 1], 'label' int32."""
  d = config.data
  if d.source == 'digits':
    rest, test = splits.split_fraction(embedded.load_digits(), d.test_fraction,
                                       d.split_seed)
    train, val = splits.split_fraction(rest, d.val_fraction, d.split_seed)
    return {'train': train, 'val': val, 'test': test}
  if d.source == 'cifar10':
    data = _read_cifar10(d.cifar10_npz)
    rest, test = _tail_split(data, int(round(len(data['label']) *
                                             d.test_fraction)))
  else:
    if d.source == 'mnist':
      try:
        files = mnist_files.load_mnist(d.mnist_dir)
      except errors.DataError as e:
        raise errors.DataError(f'{e} Set --config.data.mnist_dir.') from None
    else:
      try:
        files = {name: tfds_source.to_arrays(tfds_source.load_tfds(
            d.tfds_name, name, d.tfds_data_dir or None), ('image', 'label'))
                 for name in ('train', 'test')}
      except errors.DataError as e:
        raise errors.DataError(f'{e} (--config.data.tfds_data_dir)') from None
    rest, test = files['train'], files['test']
  train, val = _tail_split(rest, d.val_size)
  train = splits.random_subset(train, d.train_examples, d.split_seed)
  return {'train': _as_float(train), 'val': _as_float(val),
          'test': _as_float(test)}


def ood_images(config, test_images: np.ndarray) -> np.ndarray:
  """`config.data.ood_examples` inputs from outside the training distribution."""
  d = config.data
  rng = np.random.default_rng(d.split_seed + 1)
  count = min(d.ood_examples, len(test_images))
  if d.ood == 'noise':
    return rng.random((count, *test_images.shape[1:]), dtype=np.float32)
  if d.ood == 'shuffled_pixels':
    images = test_images[:count]
    flat = images.reshape(count, -1)
    order = np.argsort(rng.random(flat.shape), axis=1)
    return np.take_along_axis(flat, order, 1).reshape(images.shape)
  cifar = _read_cifar10(d.cifar10_npz)['image'][:count].astype(np.float32)
  grey = cifar.mean(-1, keepdims=True) / 255.0
  height, width, channels = test_images.shape[1:]
  resized = jax.image.resize(grey, (len(grey), height, width, 1), 'linear')
  resized = np.clip(np.asarray(resized, np.float32), 0.0, 1.0)
  return np.repeat(resized, channels, -1)
