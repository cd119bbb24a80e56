"""The data of HW8: image sets, a folder of images, the one-class split, OOD sets.

Images are float32 [N, H, W, C] in [0, 1]. A folder (the homework's faces)
holds train/*.png (normal only) and test/normal/*.png, test/anomaly/*.png:
labels 0 (normal) and 1 (anomaly), so its one-class protocol is class 0.
"""

import glob
import os

import jax
import ml_collections
import numpy as np

from lib import errors
from lib.data import images
from lib.data import splits

_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')


def resize(x: np.ndarray, size: int) -> np.ndarray:
  """Bilinear (antialiased) resize of [N, H, W, C] images to size x size."""
  if x.shape[1:3] == (size, size):
    return x
  fn = jax.jit(lambda b: jax.image.resize(
      b, (b.shape[0], size, size, b.shape[-1]), 'linear'))
  return np.clip(np.concatenate([np.asarray(fn(x[i:i + 1000]))
                                 for i in range(0, len(x), 1000)]), 0.0, 1.0)


def _read_images(paths: list[str], size: int, grey: bool) -> np.ndarray:
  from PIL import Image  # matplotlib's dependency
  out = []
  for path in paths:
    image = Image.open(path).convert('L' if grey else 'RGB')
    if size and image.size != (size, size):
      image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, np.float32) / 255.0
    out.append(array[..., None] if grey else array)
  return np.stack(out)


def _image_paths(directory: str) -> list[str]:
  return sorted(p for p in glob.glob(os.path.join(directory, '*'))
                if p.lower().endswith(_EXTENSIONS))


def load_folder(data: ml_collections.ConfigDict) -> images.ImageData:
  root = os.path.expanduser(data.folder_dir)
  parts = {name: _image_paths(os.path.join(root, *name.split('/')))
           for name in ('train', 'test/normal', 'test/anomaly')}
  empty = [name for name, paths in parts.items() if not paths]
  if empty:
    raise errors.DataError(
        f'{root}: no images in {", ".join(empty)} (data.folder_dir needs '
        'train/, test/normal/ and test/anomaly/ with PNG or JPEG files)')
  size = data.image_size
  loaded = {name: _read_images(paths, size, data.grey)
            for name, paths in parts.items()}
  shapes = {x.shape[1:] for x in loaded.values()}
  if len(shapes) > 1:
    raise errors.DataError(f'{root}: images differ in size {sorted(shapes)}; '
                           'set data.image_size, e.g. 64')
  train = {'image': loaded['train'],
           'label': np.zeros(len(loaded['train']), np.int32)}
  test = {'image': np.concatenate([loaded['test/normal'],
                                   loaded['test/anomaly']]),
          'label': np.repeat(np.int32([0, 1]), [len(loaded['test/normal']),
                                                len(loaded['test/anomaly'])])}
  train, val = splits.split_fraction(train, data.val_fraction, data.split_seed)
  return images.ImageData(train, val, test, 2, ('normal', 'anomaly'))


def load(config: ml_collections.ConfigDict) -> images.ImageData:
  if config.data.name == 'folder':
    return load_folder(config.data)
  return images.load_images(config.data)


def of_class(source: dict, label: int) -> dict:
  return splits.take(source, np.flatnonzero(source['label'] == label))


def binarized(source: dict, seed: int) -> dict:
  """A fixed Bernoulli draw of every pixel (the test set of a binarized VAE)."""
  rng = np.random.default_rng(seed)
  image = (rng.random(source['image'].shape) < source['image'])
  return {**source, 'image': image.astype(np.float32)}


def omniglot(path: str, count: int, size: int, seed: int) -> np.ndarray:
  """`count` Omniglot drawings as white strokes on black, size x size."""
  path = os.path.expanduser(path)
  if not os.path.exists(path):
    raise errors.DataError(f'{path} does not exist (data.omniglot_path)')
  with np.load(path) as arrays:
    background = arrays['images'].reshape(-1, 105, 105)
  chosen = np.sort(np.random.default_rng(seed).permutation(
      len(background))[:count])
  strokes = (~background[chosen]).astype(np.float32)[..., None]
  return resize(strokes, size)


def cifar10_grey(config: ml_collections.ConfigDict, count: int,
                 size: int) -> np.ndarray:
  """CIFAR-10's test images in grey (luma), resized to size x size."""
  cifar = images.load_images(images.config(
      'cifar10', cifar10_dir=config.data.cifar10_dir,
      cifar10_source=config.data.cifar10_source,
      cache_dir=config.data.cache_dir, max_train_examples=20,
      max_test_examples=count, val_fraction=0.5, image_size=size))
  rgb = cifar.test['image']
  return (rgb @ np.float32([0.299, 0.587, 0.114]))[..., None]


def ood_sets(config: ml_collections.ConfigDict,
             shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
  """The out-of-distribution images named in config.ood.sets, in `shape`."""
  size, _, channels = shape
  count, seed = config.ood.num_examples, config.ood.seed
  rng = np.random.default_rng(seed)
  out = {}
  for name in config.ood.sets:
    if name == 'gaussian':  # N(0.5, 1) clipped, as Hendrycks & Gimpel
      x = np.clip(rng.normal(0.5, 1.0, (count, *shape)), 0.0, 1.0)
    elif name == 'uniform':
      x = rng.random((count, *shape))
    elif name == 'omniglot':
      x = omniglot(config.data.omniglot_path, count, size, seed)
    else:
      x = cifar10_grey(config, count, size)
    if x.shape[-1] != channels:
      x = np.repeat(x, channels, -1)
    out[name] = x.astype(np.float32)
  return out
