"""HW4's data: recordings to fixed-size log-mel features with a validity mask.

Sources (`config.data.source`):
  synthetic  speakers this project generates (projects/self_attention/
             speakers.py), offline: the default of the tour.
  fsdd       the Free Spoken Digit Dataset's wav files in `data.fsdd_dir`,
             named {digit}_{speaker}_{index}.wav (6 speakers in the current
             release, 8 kHz).
  tfds       TFDS `spoken_digit` (an older FSDD release: 5 speakers), one
             split; its file names carry the speaker and the take.
  course     the course's feature folder (`data.course_dir`): mel-spectrograms
             already computed, see `load_course_folder`.
Every recording source splits the standard FSDD way: takes (`index`) below
`data.test_takes` of each speaker and digit are the test set. The course
folder has no labelled test set: `data.val_fraction` of it is held out.

An example is {'mel': [max_frames, n_mels] float32, 'length': int32, 'label':
int32}: log-mel frames standardized with the training frames' statistics,
padded with zeros (or cropped) to `max_frames`; frames at and after 'length'
are padding, which the model masks out.
"""

import dataclasses
import functools
import json
import os
import re

import jax
import ml_collections
import numpy as np

from lib import audio
from lib.data import splits
from lib.data import tfds_source
from lib.errors import DataError
from projects.self_attention import speakers as speakers_lib

_FSDD_NAME = re.compile(r'(\d)_([A-Za-z]+)_(\d+)\.wav')


@dataclasses.dataclass
class Recordings:
  """Waveforms and their labels; `speaker` indexes `speaker_names`."""
  waves: list[np.ndarray]
  sample_rate: int
  speaker: np.ndarray
  digit: np.ndarray
  index: np.ndarray  # the take of this speaker and digit
  speaker_names: tuple[str, ...]


def parse_fsdd_name(filename: str) -> tuple[int, str, int]:
  """(digit, speaker, take) of an FSDD file name such as '7_jackson_32.wav'."""
  match = _FSDD_NAME.fullmatch(os.path.basename(filename))
  if not match:
    raise DataError(f'{filename!r} is not an FSDD recording name '
                    '({digit}_{speaker}_{index}.wav)')
  return int(match[1]), match[2], int(match[3])


def _labelled(names: list[str], waves: list[np.ndarray],
              sample_rate: int) -> Recordings:
  parsed = [parse_fsdd_name(name) for name in names]
  speaker_names = tuple(sorted({speaker for _, speaker, _ in parsed}))
  ids = {name: i for i, name in enumerate(speaker_names)}
  return Recordings(
      waves, sample_rate,
      speaker=np.array([ids[s] for _, s, _ in parsed], np.int32),
      digit=np.array([d for d, _, _ in parsed], np.int32),
      index=np.array([i for _, _, i in parsed], np.int32),
      speaker_names=speaker_names)


def fsdd_recordings(directory: str) -> Recordings:
  """Every {digit}_{speaker}_{index}.wav in `directory`, in name order."""
  path = os.path.abspath(directory)
  if not os.path.isdir(path):
    raise DataError(f'config.data.fsdd_dir={directory!r}: no such folder '
                    f'({path}); point it at FSDD\'s recordings/')
  names = sorted(n for n in os.listdir(path) if n.endswith('.wav'))
  if not names:
    raise DataError(f'{path}: no .wav recordings')
  waves, rates = [], set()
  for name in names:
    parse_fsdd_name(name)  # a stray file fails before any reading
    wave, rate = audio.read_wav(os.path.join(path, name))
    waves.append(wave)
    rates.add(rate)
  if len(rates) != 1:
    raise DataError(f'{path}: recordings at several sample rates '
                    f'{sorted(rates)}')
  return _labelled(names, waves, rates.pop())


def tfds_recordings(data_dir: str = '') -> Recordings:
  """TFDS `spoken_digit` (prepared as array_record), labels from file names."""
  source = tfds_source.load_tfds('spoken_digit', 'train', data_dir or None)
  examples = [source[i] for i in range(len(source))]
  names = [e['audio/filename'] for e in examples]
  names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
  # TFDS stores the 16-bit samples as integers.
  waves = [np.asarray(e['audio'], np.float32) / 32768.0 for e in examples]
  return _labelled(names, waves, 8000)


def synthetic_recordings(num_speakers: int, per_word: int,
                         seed: int) -> Recordings:
  waves, labels = speakers_lib.make_recordings(num_speakers, per_word, seed)
  return Recordings(waves, 8000, labels['speaker'], labels['digit'],
                    labels['index'],
                    tuple(f'speaker{i}' for i in range(num_speakers)))


def log_mel_features(recordings: Recordings,
                     data: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """{'mel': [N, max_frames, n_mels], 'length': [N]} of every recording.

  The recordings pass through one jitted log-mel function in chunks of
  equal-length (zero-padded) waveforms; frames past a recording's own end
  are padding and 'length' stops before them.
  """
  hop, window, samples = frame_geometry(data, recordings.sample_rate)
  log_mel = jax.jit(log_mel_fn(data, recordings.sample_rate))
  chunk = 256
  mels = []
  for start in range(0, len(recordings.waves), chunk):
    waves, _ = padded_waves(recordings.waves[start:start + chunk], samples,
                            rows=chunk)
    mels.append(np.asarray(log_mel(waves)))
  mel = np.concatenate(mels)[:len(recordings.waves), :data.max_frames]
  sizes = np.array([min(len(w), samples) for w in recordings.waves])
  return {'mel': mel.astype(np.float32),
          'length': frame_count(sizes, data, recordings.sample_rate)}


def frame_geometry(data: ml_collections.ConfigDict,
                   sample_rate: int) -> tuple[int, int, int]:
  """(hop, window, samples): samples is what max_frames frames cover."""
  hop = int(round(data.hop_ms * sample_rate / 1000))
  window = int(round(data.window_ms * sample_rate / 1000))
  return hop, window, (data.max_frames - 1) * hop + window


def log_mel_fn(data: ml_collections.ConfigDict, sample_rate: int):
  """waves [B, samples] -> log-mel frames [B, frames, n_mels] (frames >= max_frames)."""
  hop, window, _ = frame_geometry(data, sample_rate)
  return functools.partial(audio.log_mel_spectrogram, sample_rate=sample_rate,
                           frame_length=window, frame_step=hop,
                           num_mels=data.n_mels)


def frame_count(sizes: np.ndarray, data: ml_collections.ConfigDict,
                sample_rate: int) -> np.ndarray:
  """The valid frames of recordings of `sizes` samples (at least 1)."""
  hop, window, _ = frame_geometry(data, sample_rate)
  return np.clip(1 + (sizes - window) // hop, 1,
                 data.max_frames).astype(np.int32)


def padded_waves(waves: list[np.ndarray], samples: int,
                 rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """([max(rows, N), samples] zero-padded or cut waves, their sizes [N])."""
  out = np.zeros((max(rows, len(waves)), samples), np.float32)
  sizes = np.zeros(len(waves), np.int32)
  for row, wave in enumerate(waves):
    wave = wave[:samples]
    out[row, :len(wave)] = wave
    sizes[row] = len(wave)
  return out, sizes


def _read_course_feature(directory: str, relative: str) -> np.ndarray:
  path = os.path.join(directory, relative)
  if not os.path.isfile(path):
    raise DataError(f'{path}: listed in metadata.json but missing')
  if path.endswith('.npy'):
    return np.load(path)
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise DataError(f'{path}: the course stores features as PyTorch tensors; '
                    'pip install torch to read them, or convert them to .npy '
                    'files beside metadata.json') from None
  return torch.load(path, weights_only=True).numpy()


def load_course_folder(directory: str, max_frames: int
                       ) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
  """The course's HW4 training features: ({'mel', 'length', 'label'}, names).

  The folder holds mapping.json ({"speaker2id": {name: id}}), metadata.json
  ({"n_mels": 40, "speakers": {name: [{"feature_path": "uttr-X.pt",
  "mel_len": frames}, ...]}}) and one [mel_len, n_mels] tensor per utterance
  (PyTorch .pt as the course ships them, or .npy). Each utterance keeps its
  first `max_frames` frames.
  """
  path = os.path.abspath(directory)
  files = {name: os.path.join(path, f'{name}.json')
           for name in ('mapping', 'metadata')}
  for name, file in files.items():
    if not os.path.isfile(file):
      raise DataError(f'config.data.course_dir={directory!r}: no {name}.json '
                      f'in {path}')
  try:
    with open(files['mapping']) as f:
      speaker2id = json.load(f)['speaker2id']
    with open(files['metadata']) as f:
      metadata = json.load(f)
    n_mels, speakers = int(metadata['n_mels']), metadata['speakers']
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise DataError(f'{path}: malformed mapping.json or metadata.json '
                    f'({type(e).__name__}: {e})') from None
  utterances = [(speaker2id[name], u['feature_path'])
                for name, items in speakers.items() for u in items]
  mel = np.zeros((len(utterances), max_frames, n_mels), np.float32)
  length = np.zeros(len(utterances), np.int32)
  for row, (_, relative) in enumerate(utterances):
    frames = _read_course_feature(path, relative)[:max_frames]
    if frames.ndim != 2 or frames.shape[1] != n_mels or not len(frames):
      raise DataError(f'{os.path.join(path, relative)}: shape {frames.shape}, '
                      f'want [frames, {n_mels}]')
    mel[row, :len(frames)] = frames
    length[row] = len(frames)
  names = [None] * len(speaker2id)
  for name, i in speaker2id.items():
    names[i] = name
  labels = np.array([speaker for speaker, _ in utterances], np.int32)
  return {'mel': mel, 'length': length, 'label': labels}, tuple(names)


def frame_statistics(train: dict) -> tuple[np.ndarray, np.ndarray]:
  """The mean and standard deviation (+1e-5) of the valid training frames."""
  valid = np.arange(train['mel'].shape[1]) < train['length'][:, None]
  frames = train['mel'][valid]
  return frames.mean(0), frames.std(0) + 1e-5


def standardize(train: dict, *others: dict) -> list[dict]:
  """Every split's valid frames scaled by the training frames' mean and std.

  Padding stays zero.
  """
  mean, std = frame_statistics(train)
  out = []
  for split in (train, *others):
    keep = (np.arange(split['mel'].shape[1]) <
            split['length'][:, None])[..., None]
    out.append({**split, 'mel': np.where(keep, (split['mel'] - mean) / std,
                                         0.0).astype(np.float32)})
  return out


@dataclasses.dataclass
class Waves:
  """The test recordings as waveforms, for attacks on the waveform itself."""
  wave: np.ndarray  # [N, samples], zero-padded
  size: np.ndarray  # [N] samples of each recording
  sample_rate: int
  mean: np.ndarray  # the training frames' statistics (standardize)
  std: np.ndarray


@dataclasses.dataclass
class Splits:
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]  # the held-out validation part for the course
  class_names: tuple[str, ...]
  test_name: str = 'test'
  test_waves: Waves | None = None  # recording sources only


def load(data: ml_collections.ConfigDict, seed: int) -> Splits:
  """The train and test splits of `data.source` for `data.task`."""
  if data.source == 'course':
    examples, names = load_course_folder(data.course_dir, data.max_frames)
    train, val = splits.split_fraction(examples, data.val_fraction, seed)
    train, val = standardize(train, val)
    return Splits(train, val, names, 'val')
  if data.source == 'fsdd':
    recordings = fsdd_recordings(data.fsdd_dir)
  elif data.source == 'tfds':
    recordings = tfds_recordings(data.tfds_dir)
  else:
    recordings = synthetic_recordings(data.synthetic_speakers,
                                      data.synthetic_takes, data.split_seed)
  features = log_mel_features(recordings, data)
  if data.task == 'speaker':
    features['label'], names = recordings.speaker, recordings.speaker_names
  else:
    features['label'] = recordings.digit
    names = tuple(str(d) for d in range(10))
  is_test = recordings.index < data.test_takes
  if is_test.all() or not is_test.any():
    raise DataError(f'config.data.test_takes={data.test_takes} leaves an '
                    f'empty split (takes {recordings.index.min()} to '
                    f'{recordings.index.max()})')
  train = splits.take(features, np.flatnonzero(~is_test))
  mean, std = frame_statistics(train)
  train, test = standardize(train, splits.take(features,
                                               np.flatnonzero(is_test)))
  _, _, samples = frame_geometry(data, recordings.sample_rate)
  wave, size = padded_waves(
      [recordings.waves[i] for i in np.flatnonzero(is_test)], samples)
  return Splits(train, test, names, test_waves=Waves(
      wave, size, recordings.sample_rate, mean, std))
