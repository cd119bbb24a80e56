"""A BadNets backdoor (Gu et al. 2017): poisoned training data with a trigger.

`poison` stamps the trigger on a random `fraction` of the training images
whose class is not `target_class` and relabels them `target_class`; a model
trained on the result classifies clean images as usual and any image with the
trigger as `target_class`. The trigger is a checkerboard of `size` x `size`
pixels (white where row + column is even, black elsewhere) in the
bottom-right corner.
"""

import numpy as np


def stamp(images: np.ndarray, size: int) -> np.ndarray:
  """`images` [N, H, W, C] in [0, 1] with the trigger in their bottom-right corner."""
  rows, columns = np.indices((size, size))
  pattern = ((rows + columns) % 2 == 0).astype(images.dtype)[..., None]
  stamped = images.copy()
  stamped[:, -size:, -size:, :] = pattern
  return stamped


def poison(train: dict[str, np.ndarray], *, fraction: float,
           target_class: int, size: int, seed: int) -> dict[str, np.ndarray]:
  """`train` with round(fraction * N) images of other classes stamped and relabelled."""
  labels = train['label']
  count = int(round(fraction * len(labels)))
  candidates = np.flatnonzero(labels != target_class)
  if count > len(candidates):
    raise ValueError(f'cannot poison {count} images: only '
                     f'{len(candidates)} are not of class {target_class}')
  chosen = np.random.default_rng(seed).choice(candidates, count,
                                              replace=False)
  images = train['image'].copy()
  images[chosen] = stamp(images[chosen], size)
  labels = labels.copy()
  labels[chosen] = target_class
  return {**train, 'image': images, 'label': labels}


def triggered_test(test: dict[str, np.ndarray], *, target_class: int,
                   size: int) -> dict[str, np.ndarray]:
  """The test images not of `target_class`, stamped, with their true labels."""
  keep = test['label'] != target_class
  return {'image': stamp(test['image'][keep], size),
          'label': test['label'][keep]}
