"""Tasks: sinusoid regression and N-way K-shot episodes from a pool of classes.

A class pool is a float32 array [classes, examples per class, H, W, 1] (ink 1,
background 0). Omniglot comes from the background-set npz on this machine or
from TFDS by name (`omniglot`: its 'train' split is the background set, its
'test' split the evaluation set); after loading, both take the same path.
"""

import os

import jax
import numpy as np

from lib import errors
from lib.data import tfds_source

# The MAML paper's sinusoid family.
AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, np.pi)
X_RANGE = (-5.0, 5.0)


def sinusoid_tasks(rng: np.random.Generator, num_tasks: int, shots: int,
                   query: int) -> dict[str, np.ndarray]:
  """y = A sin(x - phase) with A, phase per task and x uniform: [T, n, 1] arrays."""
  amplitude = rng.uniform(*AMPLITUDE, (num_tasks, 1, 1))
  phase = rng.uniform(*PHASE, (num_tasks, 1, 1))
  x = rng.uniform(*X_RANGE, (num_tasks, shots + query, 1))
  y = amplitude * np.sin(x - phase)
  x, y = x.astype(np.float32), y.astype(np.float32)
  return {'support_input': x[:, :shots], 'support_label': y[:, :shots],
          'query_input': x[:, shots:], 'query_label': y[:, shots:]}


def episodes(rng: np.random.Generator, pool: np.ndarray, num_tasks: int,
             ways: int, shots: int, query: int) -> dict[str, np.ndarray]:
  """`num_tasks` N-way K-shot episodes: `ways` distinct classes, each with
  `shots` support and `query` query examples (all distinct), labelled 0..N-1."""
  num_classes, per_class = pool.shape[:2]
  if ways > num_classes:
    raise errors.ConfigError(f'ways={ways} but the split has only '
                             f'{num_classes} classes')
  if shots + query > per_class:
    raise errors.ConfigError(f'shots + query = {shots + query} but each class '
                             f'has only {per_class} examples')
  classes = np.stack([rng.choice(num_classes, ways, replace=False)
                      for _ in range(num_tasks)])  # [T, N]
  examples = np.argsort(rng.random((num_tasks, ways, per_class)), -1)
  examples = examples[..., :shots + query]  # [T, N, K + Q]
  images = pool[classes[..., None], examples]  # [T, N, K + Q, H, W, C]
  labels = np.broadcast_to(np.arange(ways, dtype=np.int32)[None, :, None],
                           examples.shape)
  flat = lambda a: a.reshape(num_tasks, -1, *a.shape[3:])
  return {'support_input': flat(images[:, :, :shots]),
          'support_label': flat(labels[:, :, :shots]),
          'query_input': flat(images[:, :, shots:]),
          'query_label': flat(labels[:, :, shots:])}


def to_ink(images: np.ndarray, image_size: int) -> np.ndarray:
  """[..., H, W] images with white background (True/255) -> float ink [..., s, s, 1]."""
  shape = images.shape[:-2]
  white = images.astype(np.float32)
  if images.dtype == np.uint8:
    white = white / 255.0
  ink = 1.0 - white.reshape(-1, *images.shape[-2:])
  if ink.shape[-1] != image_size:
    ink = np.asarray(jax.image.resize(
        ink, (len(ink), image_size, image_size), 'linear', antialias=True))
  return ink.reshape(*shape, image_size, image_size, 1).astype(np.float32)


def load_omniglot_npz(path: str, image_size: int = 28) -> np.ndarray:
  """The class pool [characters, 20, s, s, 1] from an npz with `images`
  (characters, drawings, H, W), True or 255 = white background."""
  if not os.path.exists(path):
    raise errors.DataError(
        f'no Omniglot file at {path!r}; set data.omniglot_path, or use '
        "data.name='omniglot_tfds'")
  with np.load(path) as data:
    if 'images' not in data or data['images'].ndim != 4:
      raise errors.DataError(f'{path}: expected an array `images` of shape '
                             '(characters, drawings, height, width)')
    images = data['images']
  return to_ink(images, image_size)


def load_omniglot_tfds(split: str, data_dir: str | None = None,
                       image_size: int = 28) -> np.ndarray:
  """The class pool of TFDS `omniglot`'s `split`, classes in label order."""
  arrays = tfds_source.to_arrays(tfds_source.load_tfds(
      'omniglot', split, data_dir or None), keys=('image', 'label'))
  labels, counts = np.unique(arrays['label'], return_counts=True)
  if counts.min() != counts.max():
    raise errors.DataError(f'omniglot {split}: classes have {counts.min()} to '
                           f'{counts.max()} drawings; expected equal counts')
  order = np.argsort(arrays['label'], kind='stable')
  images = arrays['image'][order, ..., 0].reshape(
      len(labels), counts[0], *arrays['image'].shape[1:3])
  return to_ink(images, image_size)


def split_classes(pool: np.ndarray, num_val: int,
                  num_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train, val, test) pools: the last `num_test` classes are the test set,
  the `num_val` before them the validation set; no class is in two."""
  num_train = len(pool) - num_val - num_test
  if num_train < 1:
    raise errors.ConfigError(
        f'data.num_val_classes={num_val} + data.num_test_classes={num_test} '
        f'leave no meta-train classes out of {len(pool)}')
  return (pool[:num_train], pool[num_train:num_train + num_val],
          pool[num_train + num_val:])


def with_rotations(pool: np.ndarray) -> np.ndarray:
  """Each class rotated by 0, 90, 180 and 270 degrees, as four classes."""
  return np.concatenate([np.rot90(pool, k, axes=(2, 3)) for k in range(4)])
