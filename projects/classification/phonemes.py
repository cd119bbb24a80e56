"""The course's HW2 data: LibriSpeech MFCC frames with per-frame phoneme labels.

Layout of the course's `libriphone/` folder (the one that `phoneme_dir` names):
  train_split.txt     one utterance id per line
  train_labels.txt    `<id> <label> <label> ...`, one label per frame
  feat/train/<id>.pt  a torch tensor [T, 39] per utterance
Without a working torch, `<id>.npy` files (the same arrays) are read instead.
The course's test labels were never public, so validation is a random
`val_fraction` of the training utterances (split by utterance, as the course's
sample code does).
"""

import os

import numpy as np

from lib.errors import ConfigError
from lib.errors import DataError

NUM_CLASSES = 41


def _read_lines(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise DataError(f'{path} is missing: phoneme_dir must be the course\'s '
                    'libriphone folder (train_split.txt, train_labels.txt, '
                    'feat/train/)')
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def _torch_load():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except (ImportError, OSError):  # absent, or installed without its libraries
    return None
  return lambda path: torch.load(path, map_location='cpu').numpy()


def _load_features(folder: str, utterance: str, torch_load) -> np.ndarray:
  pt, npy = (os.path.join(folder, f'{utterance}.{ext}')
             for ext in ('pt', 'npy'))
  if torch_load and os.path.isfile(pt):
    frames = torch_load(pt)
  elif os.path.isfile(npy):
    frames = np.load(npy)
  elif os.path.isfile(pt):
    raise DataError(f'{pt} needs torch to read: install torch, or save each '
                    'tensor as <id>.npy beside it')
  else:
    raise DataError(f'no features for utterance {utterance!r}: {pt} and {npy} '
                    'are both missing')
  if frames.ndim != 2:
    raise DataError(f'features of {utterance!r} have shape {frames.shape}; '
                    'expected [frames, dims]')
  return frames.astype(np.float32)


def context_indices(lengths: list[int], n: int) -> np.ndarray:
  """Row indices into the joined frames: `concat_context` per utterance.

  The numpy counterpart of `context.concat_context` applied utterance by
  utterance, so that edges repeat each utterance's own first and last frame.
  """
  offsets = np.arange(n) - n // 2
  parts, start = [], 0
  for length in lengths:
    local = np.clip(np.arange(length)[:, None] + offsets, 0, length - 1)
    parts.append(start + local)
    start += length
  return np.concatenate(parts)


def load_phonemes(phoneme_dir: str, context_frames: int, val_fraction: float,
                  seed: int) -> tuple[dict, dict]:
  """Returns (train, val): {'input': [N, context_frames * 39], 'label': [N]}."""
  if context_frames < 1 or context_frames % 2 == 0:
    raise ConfigError(f'data.context_frames={context_frames} must be a '
                      'positive odd number')
  if not 0 < val_fraction < 1:
    raise ConfigError(f'data.val_fraction={val_fraction} must lie in (0, 1)')
  if not phoneme_dir or not os.path.isdir(phoneme_dir):
    raise DataError(f'phoneme folder {phoneme_dir!r} not found: set '
                    '--config.data.phoneme_dir to the course\'s libriphone '
                    'folder')
  utterances = _read_lines(os.path.join(phoneme_dir, 'train_split.txt'))
  labels = {}
  for line in _read_lines(os.path.join(phoneme_dir, 'train_labels.txt')):
    utterance, *values = line.split()
    labels[utterance] = np.asarray(values, np.int32)
  if not utterances:
    raise DataError(f'{phoneme_dir}/train_split.txt lists no utterances')

  rng = np.random.default_rng(seed)
  order = rng.permutation(len(utterances))
  num_val = max(1, int(round(val_fraction * len(utterances))))
  if num_val >= len(utterances):
    raise DataError(f'{len(utterances)} utterances are too few to hold out '
                    f'val_fraction={val_fraction} for validation')
  folder = os.path.join(phoneme_dir, 'feat', 'train')
  torch_load = _torch_load()

  def load(indices) -> dict:
    frames, frame_labels = [], []
    for i in sorted(indices):
      utterance = utterances[i]
      if utterance not in labels:
        raise DataError(f'utterance {utterance!r} has no line in '
                        'train_labels.txt')
      features = _load_features(folder, utterance, torch_load)
      if len(features) != len(labels[utterance]):
        raise DataError(f'utterance {utterance!r}: {len(features)} frames but '
                        f'{len(labels[utterance])} labels')
      frames.append(features)
      frame_labels.append(labels[utterance])
    index = context_indices([len(f) for f in frames], context_frames)
    inputs = np.concatenate(frames)[index].reshape(len(index), -1)
    label = np.concatenate(frame_labels)
    if label.min() < 0 or label.max() >= NUM_CLASSES:
      raise DataError(f'phoneme labels must lie in [0, {NUM_CLASSES}), got '
                      f'[{label.min()}, {label.max()}]')
    return {'input': inputs, 'label': label}

  return load(order[num_val:]), load(order[:num_val])
