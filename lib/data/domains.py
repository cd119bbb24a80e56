"""The domains a source/target pair is made of, as numpy image arrays.

Every loader returns {'train': {'image', 'label'}, 'test': {...}} with images
float32 [N, H, W, C] in [0, 1], light digits on a dark background for the
digit sets. `load_pair` brings two domains to one size and channel count.
Shared by the projects that map one domain to another (domain adaptation,
CycleGAN).

Domain names (config.data.source / config.data.target):
  digits          scikit-learn's bundled 8x8 digits (offline)
  digits_m        the same digits blended with darker random colour textures
  mnist           MNIST IDX files in data.mnist_dir
  mnist_m         MNIST blended with random colour textures (MNIST-M-like)
  usps            USPS digits from data.usps_path (an HDF5 file)
  tfds:NAME       a prepared TFDS data set with 'image' and 'label'
  folder:PATH     PATH/<class name>/*.png|jpg|bmp, one folder per class
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib.config import require
from lib.data import embedded
from lib.data import mnist_files
from lib.data import splits
from lib.data import tfds_source
from lib.errors import ConfigError
from lib.errors import DataError

NAMES = ('digits', 'digits_m', 'mnist', 'mnist_m', 'usps')
PREFIXES = ('tfds:', 'folder:')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')


def check_name(field: str, name: str):
  if name not in NAMES and not (name.startswith(PREFIXES) and
                                name.split(':', 1)[1]):
    raise ConfigError(f'data.{field}={name!r}: choose one of {NAMES} or '
                      "'tfds:NAME' or 'folder:PATH'")


def config(source: str = 'digits', target: str = 'digits_m',
           **overrides) -> ml_collections.ConfigDict:
  """The `data` block of a source/target pair (`load_pair`'s fields)."""
  fields = ml_collections.ConfigDict(dict(
      source=source,  # digits, digits_m, mnist, mnist_m, usps, tfds:NAME,
      target=target,  # folder:PATH
      image_size=16,  # both domains are resized to image_size x image_size
      mnist_dir='../shared/data/mnist',
      usps_path='../shared/data/usps/usps.h5',
      tfds_dir='',  # '' = ~/tensorflow_datasets
      test_fraction=0.2,  # digits and folders: held out as the test split
      split_seed=0,
      max_train_examples=0,  # 0 = all; per domain, a seeded subsample
      max_test_examples=0,
  ))
  fields.update(overrides)
  return fields


def validate(data: ml_collections.ConfigDict):
  """ConfigError naming the first unusable field of a `config()` block."""
  check_name('source', data.source)
  check_name('target', data.target)
  require(isinstance(data.image_size, int) and data.image_size >= 4,
          f'config.data.image_size={data.image_size!r} must be an integer '
          '>= 4')
  for name in ('max_train_examples', 'max_test_examples'):
    value = data[name]
    require(isinstance(value, int) and value >= 0,
            f'config.data.{name}={value!r} must be an integer >= 0')


def random_textures(count: int, size: int, seed) -> np.ndarray:
  """Colourful procedural textures, float32 [count, size, size, 3] in [0, 1].

  Stand-ins for the BSDS500 photo patches of Ganin et al.'s MNIST-M (no
  internet here): a random base colour, a smooth colour field (coarse noise
  upsampled), a random colour gradient and fine noise.
  """
  rng = np.random.default_rng(seed)
  base = rng.uniform(0.2, 0.8, size=(count, 1, 1, 3))
  coarse = rng.uniform(-0.3, 0.3, size=(count, 4, 4, 3)).astype(np.float32)
  field = np.asarray(jax.image.resize(coarse, (count, size, size, 3),
                                      'bicubic'))
  ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
  angle = rng.uniform(0, 2 * np.pi, size=(count, 1, 1, 1))
  direction = (np.cos(angle) * ramp[None, :, None, None] +
               np.sin(angle) * ramp[None, None, :, None])
  tint = rng.uniform(-0.6, 0.6, size=(count, 1, 1, 3))
  noise = rng.normal(scale=0.03, size=(count, size, size, 3))
  textures = base + field + direction * tint + noise
  return np.clip(textures, 0, 1).astype(np.float32)


def blend_with_textures(images: np.ndarray, seed: int,
                        brightness: float = 1.0) -> np.ndarray:
  """MNIST-M's recipe |texture - digit| per channel: digits invert the texture.

  `brightness` < 1 darkens the textures (to [0, brightness]), which keeps the
  digits lighter than their background.
  """
  count, height, width, _ = images.shape
  out = np.empty((count, height, width, 3), np.float32)
  for chunk, start in enumerate(range(0, count, 4096)):  # bounded memory
    part = images[start:start + 4096]
    textures = random_textures(len(part), max(height, width), (seed, chunk))
    out[start:start + len(part)] = np.abs(
        brightness * textures[:, :height, :width] - part)
  return out


def load_usps(path: str) -> dict:
  """USPS from HDF5: groups train and test, each 'data' [N, 256], 'target'."""
  import h5py  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    raise DataError(f'{path}: no such USPS file (data.usps_path).')
  result = {}
  try:
    with h5py.File(path, 'r') as f:
      for split in ('train', 'test'):
        pixels = np.asarray(f[split]['data'], np.float32)
        labels = np.asarray(f[split]['target'], np.int32)
        if pixels.ndim != 2 or pixels.shape[1] != 256 or (
            len(labels) != len(pixels)):
          raise DataError(f'{path}: {split}/data {pixels.shape} is not '
                          f'[N, 256] with N = len(target) = {len(labels)}.')
        result[split] = {'image': pixels.reshape(-1, 16, 16, 1),
                         'label': labels}
  except (OSError, KeyError) as e:
    raise DataError(f'{path}: not a USPS HDF5 file with train/test groups '
                    f'holding data and target ({e}).') from None
  return result


def _from_uint8(split: dict) -> dict:
  return {'image': split['image'].astype(np.float32) / 255.0,
          'label': split['label'].astype(np.int32)}


def load_tfds(name: str, data_dir: str | None, limit: int | None) -> dict:
  result = {}
  for split in ('train', 'test'):
    source = tfds_source.load_tfds(name, split, data_dir)
    arrays = tfds_source.to_arrays(source, ('image', 'label'), limit=limit)
    result[split] = _from_uint8(arrays)
  return result


def load_folder(path: str, test_fraction: float, seed: int) -> dict:
  """Images in one sub-folder per class (the classes are the sorted names)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(path):
    raise DataError(f'{path}: no such folder of class folders.')
  classes = sorted(d for d in os.listdir(path)
                   if os.path.isdir(os.path.join(path, d)))
  images, labels = [], []
  for label, name in enumerate(classes):
    folder = os.path.join(path, name)
    for file in sorted(os.listdir(folder)):
      if file.lower().endswith(IMAGE_SUFFIXES):
        with Image.open(os.path.join(folder, file)) as image:
          images.append(np.asarray(image.convert('RGB'), np.uint8))
        labels.append(label)
  if not images:
    raise DataError(f'{path}: no {"/".join(IMAGE_SUFFIXES)} images in class '
                    'sub-folders.')
  if len({im.shape for im in images}) > 1:
    raise DataError(f'{path}: images differ in size; resize them to one size.')
  data = _from_uint8({'image': np.stack(images), 'label': np.array(labels)})
  train, test = splits.split_fraction(data, test_fraction, seed)
  return {'train': train, 'test': test}


def load_domain(name: str, data: ml_collections.ConfigDict, *,
                half: int | None = None) -> dict:
  """One domain's train and test splits at its own size and channels.

  `half` (0 or 1) keeps one of two disjoint halves of the embedded digits, so
  that a digits -> digits_m pair shares no image.
  """
  if name in ('digits', 'digits_m'):
    digits = embedded.load_digits()
    order = np.random.default_rng(data.split_seed).permutation(
        len(digits['label']))
    if half is not None:
      order = np.array_split(order, 2)[half]
    train, test = splits.split_fraction(splits.take(digits, np.sort(order)),
                                        data.test_fraction, data.split_seed)
    result = {'train': train, 'test': test}
  elif name in ('mnist', 'mnist_m'):
    result = {k: _from_uint8(v)
              for k, v in mnist_files.load_mnist(data.mnist_dir).items()}
  elif name == 'usps':
    result = load_usps(data.usps_path)
  elif name.startswith('tfds:'):
    result = load_tfds(name[5:], data.tfds_dir or None,
                       data.max_train_examples or None)
  elif name.startswith('folder:'):
    result = load_folder(name[7:], data.test_fraction, data.split_seed)
  else:
    raise ConfigError(f'unknown domain {name!r}; choose one of {NAMES}')
  limits = {'train': data.max_train_examples, 'test': data.max_test_examples}
  for split, limit in limits.items():
    result[split] = splits.random_subset(result[split], limit,
                                         data.split_seed)
  if name in ('digits_m', 'mnist_m'):
    for offset, split in enumerate(('train', 'test')):
      images = result[split]['image']
      if data.image_size > images.shape[1]:  # textures at the final size
        images = resize(images, data.image_size)
      # 8x8 digits do not survive full-contrast textures: darker ones there.
      result[split]['image'] = blend_with_textures(
          images, data.split_seed + 1000 * offset,
          brightness=0.5 if name == 'digits_m' else 1.0)
  return result


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of [N, H, W, C] to [N, size, size, C], in chunks."""
  if images.shape[1:3] == (size, size):
    return images
  out = [np.asarray(jax.image.resize(
      jnp.asarray(chunk), (len(chunk), size, size, chunk.shape[-1]),
      'bilinear', antialias=True)) for chunk in np.array_split(
          images, max(1, len(images) // 4096))]
  return np.clip(np.concatenate(out), 0, 1).astype(np.float32)


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
  if images.shape[-1] == channels:
    return images
  if images.shape[-1] == 1:
    return np.repeat(images, channels, axis=-1)
  return images.mean(axis=-1, keepdims=True)  # colour to grey


def load_pair(data: ml_collections.ConfigDict) -> tuple[dict, dict]:
  """(source, target) domains at data.image_size and a shared channel count.

  Grey domains get three identical channels when the other one is colour
  (as Ganin et al. fed MNIST beside MNIST-M).
  """
  check_name('source', data.source)
  check_name('target', data.target)
  embedded_pair = {data.source, data.target} <= {'digits', 'digits_m'}
  source = load_domain(data.source, data, half=0 if embedded_pair else None)
  target = load_domain(data.target, data, half=1 if embedded_pair else None)
  channels = max(d['train']['image'].shape[-1] for d in (source, target))
  for domain in (source, target):
    for split in domain.values():
      split['image'] = _to_channels(resize(split['image'], data.image_size),
                                    channels)
      if split['image'].ndim != 4:
        raise DataError(f'images must be [N, H, W, C], got '
                        f'{split["image"].shape}')
  return source, target
