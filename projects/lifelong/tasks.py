"""Task sequences for continual learning: permuted, rotated and split digits.

A task is {'input': float32 [N, H*W], 'label': int32 [N], 'class_mask':
float32 [N, 10], 'task': int32 [N]}: the mask marks the classes the task's head
may predict (all ten for permuted and rotated tasks, the task's two for split
MNIST, where each task is its own two-way problem on a shared output layer);
'task' is the task's place in the run (PNN evaluates it with that column).
`tasks.order` (a permutation; empty for 0, 1, ...) says which task comes when.
Every transform is done once, at load time, in numpy.
"""

import ml_collections
import numpy as np

from lib.data import embedded
from lib.data import mnist_files
from lib.data import splits
from lib.data import tfds_source
from lib.errors import ConfigError

KINDS = ('permuted', 'rotated', 'split')
SOURCES = ('digits', 'mnist', 'tfds')
NUM_CLASSES = 10


def rotate_images(images: np.ndarray, degrees: float) -> np.ndarray:
  """Turns [N, H, W] images counter-clockwise about their centre.

  Bilinear interpolation; pixels from outside the image read as zero.
  """
  if degrees == 0:
    return images.copy()
  _, height, width = images.shape
  theta = np.deg2rad(degrees)
  cy, cx = (height - 1) / 2, (width - 1) / 2
  ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  # Each output pixel reads the input at its position turned back by theta.
  src_y = cy + (ys - cy) * np.cos(theta) + (xs - cx) * np.sin(theta)
  src_x = cx - (ys - cy) * np.sin(theta) + (xs - cx) * np.cos(theta)
  y0, x0 = np.floor(src_y).astype(int), np.floor(src_x).astype(int)
  wy, wx = src_y - y0, src_x - x0
  padded = np.pad(images, ((0, 0), (1, 2), (1, 2)))  # corners read zeros
  def pixel(y, x):
    return padded[:, np.clip(y, -1, height) + 1, np.clip(x, -1, width) + 1]
  return ((1 - wy) * (1 - wx) * pixel(y0, x0) + (1 - wy) * wx * pixel(y0, x0 + 1)
          + wy * (1 - wx) * pixel(y0 + 1, x0) + wy * wx * pixel(y0 + 1, x0 + 1)
          ).astype(images.dtype)


def _load_base(config: ml_collections.ConfigDict) -> tuple[dict, dict]:
  """(train, test) as {'image': float32 [N, H, W] in [0, 1], 'label'}."""
  tasks = config.tasks
  if tasks.source == 'digits':
    digits = embedded.load_digits()
    train, test = splits.split_fraction(digits, tasks.test_fraction,
                                        tasks.split_seed)
  elif tasks.source == 'mnist':
    mnist = mnist_files.load_mnist(tasks.mnist_dir)
    train, test = mnist['train'], mnist['test']
  elif tasks.source == 'tfds':
    data_dir = tasks.tfds_data_dir or None
    train, test = (tfds_source.to_arrays(
        tfds_source.load_tfds(tasks.tfds_name, split, data_dir),
        keys=('image', 'label')) for split in ('train', 'test'))
  else:
    raise ConfigError(f'tasks.source={tasks.source!r}: choose one of {SOURCES}')

  def prepare(split):
    image = np.asarray(split['image'], np.float32)[..., 0]
    if image.max() > 1.0:
      image = image / 255.0
    return {'image': image, 'label': np.asarray(split['label'], np.int32)}

  return prepare(train), prepare(test)


def _task(images: np.ndarray, labels: np.ndarray, classes) -> dict:
  mask = np.zeros((len(labels), NUM_CLASSES), np.float32)
  mask[:, list(classes)] = 1.0
  return {'input': images.reshape(len(images), -1).astype(np.float32),
          'label': labels.astype(np.int32), 'class_mask': mask}


def run_order(config: ml_collections.ConfigDict) -> list[int]:
  """The tasks' indices in the order the run trains them."""
  return list(config.tasks.order) or list(range(config.tasks.num_tasks))


def make_tasks(config: ml_collections.ConfigDict) -> tuple[list[dict],
                                                            list[dict]]:
  """(train tasks, test tasks), `config.tasks.num_tasks` of each, in run order.

  The config must have passed `config.validate`.
  """
  tasks = config.tasks
  train, test = _load_base(config)
  train = splits.random_subset(train, tasks.train_per_task, tasks.split_seed)
  test = splits.random_subset(test, tasks.test_per_task, tasks.split_seed + 1)
  all_classes = range(NUM_CLASSES)
  train_tasks, test_tasks = [], []
  rng = np.random.default_rng(tasks.split_seed)
  num_pixels = train['image'][0].size
  for t in range(tasks.num_tasks):
    if tasks.kind == 'permuted':
      # Task 0 keeps the original pixel order, as in the EWC paper.
      order = np.arange(num_pixels) if t == 0 else rng.permutation(num_pixels)
      make = lambda s, order=order: _task(
          s['image'].reshape(len(s['image']), -1)[:, order], s['label'],
          all_classes)
    elif tasks.kind == 'rotated':
      angle = t * tasks.rotation_step
      make = lambda s, angle=angle: _task(rotate_images(s['image'], angle),
                                          s['label'], all_classes)
    else:
      width = NUM_CLASSES // tasks.num_tasks
      classes = range(t * width, (t + 1) * width)
      def make(s, classes=classes):
        keep = np.isin(s['label'], classes)
        return _task(s['image'][keep], s['label'][keep], classes)
    train_tasks.append(make(train))
    test_tasks.append(make(test))
  order = run_order(config)

  def in_order(built):
    return [{**built[t], 'task': np.full(len(built[t]['label']), place,
                                         np.int32)}
            for place, t in enumerate(order)]

  return in_order(train_tasks), in_order(test_tasks)
