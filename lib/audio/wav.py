"""16-bit PCM wav files, read with the standard library."""

import wave

import numpy as np

from lib.errors import DataError


def read_wav(path: str) -> tuple[np.ndarray, int]:
  """(samples float32 in [-1, 1), sample rate) of a mono 16-bit PCM wav file.

  A stereo file is averaged to mono.
  """
  try:
    with wave.open(path, 'rb') as f:
      width, channels = f.getsampwidth(), f.getnchannels()
      rate, frames = f.getframerate(), f.readframes(f.getnframes())
  except (wave.Error, EOFError) as error:
    raise DataError(f'{path}: not a PCM wav file ({error})') from None
  if width != 2:
    raise DataError(f'{path}: {8 * width}-bit samples; only 16-bit PCM is '
                    'read')
  samples = np.frombuffer(frames, '<i2').astype(np.float32) / 32768.0
  if channels > 1:
    samples = samples.reshape(-1, channels).mean(1)
  return samples, rate
