"""lib.audio against librosa (the reference), and wav reading."""

import functools
import os
import wave

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import audio
from lib.errors import DataError

# librosa compiles numba kernels on first use in a fresh venv; unoptimized
# they compile faster (this file: 19 s instead of 27 s on 2 cores), and the
# test signals are short.
os.environ.setdefault('NUMBA_OPT', '0')
librosa = pytest.importorskip('librosa')

SETTINGS = [(8000, 256, 200, 80), (16000, 400, 400, 160),
            (16000, 512, 512, 128)]  # sr, n_fft, win, hop


def _signal(sr):
  t = np.arange(sr // 2) / sr
  rng = np.random.default_rng(0)
  return (0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t) +
          0.05 * rng.normal(size=t.size)).astype(np.float32)


@pytest.mark.parametrize('sr,n_fft,win,hop', SETTINGS)
@pytest.mark.parametrize('htk', [False, True])
def test_mel_filterbank_equals_librosa(sr, n_fft, win, hop, htk):
  del win, hop
  ours = audio.mel_filterbank(sr, n_fft, 40, htk=htk)
  reference = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=40, htk=htk)
  np.testing.assert_allclose(ours, reference.T, atol=1e-7)


@pytest.mark.parametrize('sr,n_fft,win,hop', SETTINGS)
@pytest.mark.parametrize('center,pad_mode', [(False, 'constant'),
                                             (True, 'constant'),
                                             (True, 'reflect')])
def test_log_mel_equals_librosa(sr, n_fft, win, hop, center, pad_mode):
  x = _signal(sr)
  log_mel = jax.jit(functools.partial(
      audio.log_mel_spectrogram, sample_rate=sr, frame_length=win,
      frame_step=hop, num_mels=40, n_fft=n_fft, center=center,
      pad_mode=pad_mode))
  ours = log_mel(jnp.stack([x, 0.5 * x]))
  mel = librosa.feature.melspectrogram(
      y=x, sr=sr, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=40,
      center=center, pad_mode=pad_mode)
  reference = np.log(np.maximum(mel, 1e-6)).T
  chex.assert_shape(ours, (2, *reference.shape))
  np.testing.assert_allclose(ours[0], reference, atol=1e-4)
  # Halving the wave quarters the power: log-mel falls by log 4.
  np.testing.assert_allclose(ours[0] - ours[1], np.log(4.0), atol=1e-3)


def test_power_to_db_equals_librosa_per_example():
  x = _signal(8000)
  options = dict(sample_rate=8000, frame_length=256, frame_step=80,
                 num_mels=40, center=True)
  # The second wave is 60 dB quieter: top_db floors each example on its own.
  waves = jnp.stack([x, 1e-3 * x])
  db = jax.jit(lambda w: audio.power_to_db(audio.mel_spectrogram(
      w, **options), top_db=40.0))(waves)
  for ours, wave_ in zip(db, waves):
    mel = librosa.feature.melspectrogram(
        y=np.asarray(wave_), sr=8000, n_fft=256, hop_length=80, n_mels=40)
    np.testing.assert_allclose(ours, librosa.power_to_db(mel, top_db=40.0).T,
                               atol=1e-3)
  assert np.ptp(db[1]) <= 40.0 + 1e-4


def test_wav_round_trip_and_bad_files(tmp_path):
  samples = (np.sin(np.arange(800) / 5) * 20000).astype('<i2')
  path = str(tmp_path / 'tone.wav')
  with wave.open(path, 'wb') as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(8000)
    f.writeframes(samples.tobytes())
  wave_, rate = audio.read_wav(path)
  assert rate == 8000 and wave_.dtype == np.float32
  np.testing.assert_allclose(wave_, samples / 32768.0)
  bad = tmp_path / 'bad.wav'
  bad.write_bytes(b'not a wav file at all')
  with pytest.raises(DataError, match='not a PCM wav'):
    audio.read_wav(str(bad))
