"""What the GAN learns to sample: 2-D mixtures of Gaussians or images.

  ring     8 Gaussians on a circle of radius 2 (the mode-collapse picture)
  grid     25 Gaussians on a 5x5 grid with spacing 2
  digits / mnist / cifar10 / tfds   images through lib.data.images
  stacked_mnist / stacked_digits   three independently drawn training digits
           as the R, G, B channels (Stacked MNIST, as in VEEGAN and PacGAN):
           1,000 modes, mode 100 d1 + 10 d2 + d3
  folder   every PNG/JPEG under `data.folder` (e.g. the homework's anime
           faces), resized to `data.image_size` (no labels)
Images are scaled to [-1, 1] for a tanh generator. Each step's real batch is
a pure function of (seed, step, process), so a resumed run draws the same.
"""

import os
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from lib import errors
from lib.data import images as images_lib

MIXTURES = ('ring', 'grid')
STACKED = ('stacked_mnist', 'stacked_digits')
IMAGE_SETS = (*images_lib.DATASETS, 'folder', *STACKED)
STACK = 3  # digits per stacked image, one per channel
_EXTENSIONS = ('.png', '.jpg', '.jpeg')


class Problem(NamedTuple):
  sample_shape: tuple
  num_classes: int
  train: np.ndarray  # images in [-1, 1]; None for a mixture
  train_labels: np.ndarray | None
  centers: np.ndarray | None  # mixture modes [K, 2]
  std: float
  images: images_lib.ImageData | None  # [0, 1] splits for the classifier
  stacked: bool = False  # train holds single digits, stacked per batch;
  # num_classes counts the stacked modes (10^3)


def base_image_set(name: str) -> str:
  """The single-digit data set under a stacked one (stacked_mnist -> mnist)."""
  return name.removeprefix('stacked_')


def stacked_modes(digits: np.ndarray, num_classes: int) -> np.ndarray:
  """The mode of stacked digits [..., STACK]: the digits read as a base
  `num_classes` number (100 d1 + 10 d2 + d3 for ten classes)."""
  return digits @ num_classes ** np.arange(STACK - 1, -1, -1)


def stack_digits(split: dict[str, np.ndarray], index: np.ndarray,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """The single-channel images [N, H, W, 1] of `split` picked by `index`
  [..., STACK] as the channels of images [..., H, W, STACK], and their modes."""
  stacked = np.moveaxis(split['image'][index][..., 0], -3, -1)
  return stacked, stacked_modes(split['label'][index], num_classes)


def stacked_test(problem: Problem, num: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
  """`num` stacked test images in [0, 1] (triplets drawn with `seed`) and
  their true modes: the reference a generator's modes are scored against."""
  test = problem.images.test
  index = np.random.default_rng(seed).integers(0, len(test['label']),
                                               (num, STACK))
  return stack_digits(test, index, problem.images.num_classes)


def mixture_centers(name: str) -> np.ndarray:
  if name == 'ring':
    angles = 2 * np.pi * np.arange(8) / 8
    return 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  if name == 'grid':
    axis = np.arange(-2, 3) * 2.0
    return np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
  raise errors.ConfigError(f'data.name={name!r} is not a mixture {MIXTURES}')


def sample_mixture(rng: np.random.Generator, centers: np.ndarray, std: float,
                   shape: tuple) -> np.ndarray:
  """Points of shape (*shape, 2), each from a uniformly drawn mode."""
  modes = rng.integers(0, len(centers), shape)
  return (centers[modes] + std * rng.standard_normal((*shape, 2))).astype(
      np.float32)


def load_image_folder(folder: str, image_size: int) -> np.ndarray:
  """Every image file under `folder`, RGB, resized, as float32 in [0, 1]."""
  from PIL import Image  # matplotlib's dependency
  folder = os.path.expanduser(folder)
  if not os.path.isdir(folder):
    raise errors.DataError(f'{folder} is not a folder of images (set '
                           '--config.data.folder)')
  paths = sorted(os.path.join(root, name)
                 for root, _, names in os.walk(folder) for name in names
                 if name.lower().endswith(_EXTENSIONS))
  if not paths:
    raise errors.DataError(f'{folder} holds no {_EXTENSIONS} images (set '
                           '--config.data.folder)')
  images = []
  for path in paths:
    with Image.open(path) as image:
      image = image.convert('RGB').resize((image_size, image_size),
                                          Image.Resampling.BILINEAR)
      images.append(np.asarray(image, np.float32) / 255.0)
  return np.stack(images)


def load_problem(config: ml_collections.ConfigDict) -> Problem:
  data = config.data
  if data.name in MIXTURES:
    return Problem((2,), 0, None, None, mixture_centers(data.name),
                   data.std, None)
  if data.name == 'folder':
    train = load_image_folder(data.folder, data.image_size)
    return Problem(train.shape[1:], 0, 2 * train - 1, None, None, 0.0, None)
  stacked = data.name in STACKED
  images = images_lib.load_images(ml_collections.ConfigDict(
      {**data.to_dict(), 'name': base_image_set(data.name)}))
  train = images.train['image']
  sample_shape = (*train.shape[1:-1], STACK) if stacked else train.shape[1:]
  num_classes = images.num_classes ** STACK if stacked else images.num_classes
  return Problem(sample_shape, num_classes, 2 * train - 1,
                 images.train['label'], None, 0.0, images, stacked)


def real_batch(config: ml_collections.ConfigDict, problem: Problem,
               step: int) -> dict[str, np.ndarray]:
  """This process's share of step `step`'s real batch: [n_critic, B/P, ...]."""
  rng = np.random.default_rng([config.seed, step, jax.process_index()])
  shape = (config.n_critic, config.batch_size // jax.process_count())
  if problem.centers is not None:
    return {'real': sample_mixture(rng, problem.centers, problem.std, shape)}
  if problem.stacked:
    index = rng.integers(0, len(problem.train), (*shape, STACK))
    real, _ = stack_digits({'image': problem.train,
                            'label': problem.train_labels}, index,
                           problem.images.num_classes)
    return {'real': real}
  index = rng.integers(0, len(problem.train), shape)
  batch = {'real': problem.train[index]}
  if config.conditional:
    batch['label'] = problem.train_labels[index]
  return batch


def real_chunk(config: ml_collections.ConfigDict, problem: Problem,
               loop_step: int) -> dict[str, np.ndarray]:
  """The real batches of loop step `loop_step`: GAN steps
  (loop_step - 1) * steps_per_call + 1 ... loop_step * steps_per_call,
  stacked [steps_per_call, n_critic, B/P, ...]."""
  first = (loop_step - 1) * config.steps_per_call + 1
  batches = [real_batch(config, problem, step)
             for step in range(first, first + config.steps_per_call)]
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}
