"""Semi-supervised training with pseudo-labels (HW3 2021's unlabeled images).

A model trained on the labelled images labels the unlabeled ones; those it
classifies with softmax confidence above a threshold join the training set
with their predicted class, and a model is trained again on both.
The unlabeled images' true labels are never passed to any function here.
"""

import numpy as np

from lib.data import splits


def split_labelled(train: dict[str, np.ndarray], labelled_fraction: float,
                   seed: int) -> tuple[dict, dict, np.ndarray]:
  """(labelled set, unlabeled images {'image'}, their true labels).

  The true labels are returned apart, for reporting how good the
  pseudo-labels are; the unlabeled set itself has no 'label'.
  """
  unlabelled, labelled = splits.split_fraction(train, labelled_fraction, seed)
  return labelled, {'image': unlabelled['image']}, unlabelled['label']


def select_confident(probs: np.ndarray,
                     threshold: float) -> tuple[np.ndarray, np.ndarray]:
  """(indices, labels): the rows whose top probability exceeds `threshold`.

  The labels are those rows' most probable classes.
  """
  confidence = probs.max(axis=-1)
  indices = np.flatnonzero(confidence > threshold)
  return indices, np.argmax(probs[indices], axis=-1).astype(np.int32)


def with_pseudo_labels(labelled: dict[str, np.ndarray],
                       unlabelled: dict[str, np.ndarray], probs: np.ndarray,
                       threshold: float) -> tuple[dict, np.ndarray]:
  """(labelled + confidently pseudo-labelled images, the chosen indices)."""
  indices, labels = select_confident(probs, threshold)
  combined = {
      'image': np.concatenate([labelled['image'],
                               unlabelled['image'][indices]]),
      'label': np.concatenate([labelled['label'], labels]),
  }
  return combined, indices
