"""Power and log-mel spectrograms in JAX, batched and jittable.

The mel filterbank is librosa's default: the Slaney mel scale (linear below
1 kHz, logarithmic above) with Slaney area normalisation, so each filter
has unit area; `htk=True` gives the HTK scale, 2595 log10(1 + f / 700).
Frames: frame t covers samples [t * frame_step, t * frame_step +
frame_length) (`center=False`); `center=True` first pads n_fft // 2
samples on each side (zeros, librosa's default since 0.10, or `pad_mode`
'reflect'), so frame t is centred on sample t * frame_step.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _hz_to_mel(hz, htk: bool):
  hz = np.asarray(hz, np.float64)
  if htk:
    return 2595.0 * np.log10(1.0 + hz / 700.0)
  linear = hz / (200.0 / 3)
  log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27)
  return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel, htk: bool):
  mel = np.asarray(mel, np.float64)
  if htk:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
  linear = mel * (200.0 / 3)
  log_part = 1000.0 * np.exp((np.log(6.4) / 27) * (mel - 15.0))
  return np.where(mel >= 15.0, log_part, linear)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, num_mels: int,
                   fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False) -> np.ndarray:
  """[n_fft // 2 + 1, num_mels] triangular filters, area-normalised (Slaney)."""
  fmax = sample_rate / 2 if fmax is None else fmax
  bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
  edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk),
                                 num_mels + 2), htk)
  widths = np.diff(edges)
  ramps = edges[:, None] - bins[None, :]
  lower = -ramps[:-2] / widths[:-1, None]
  upper = ramps[2:] / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(lower, upper))
  weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
  return weights.T.astype(np.float32)


def _window(frame_length: int, n_fft: int) -> np.ndarray:
  """A periodic Hann window of frame_length, zero-padded to n_fft, centred."""
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) /
                              frame_length)
  left = (n_fft - frame_length) // 2
  return np.pad(window, (left, n_fft - frame_length - left)).astype(np.float32)


def power_spectrogram(waves: jax.Array, *, frame_length: int, frame_step: int,
                      n_fft: int | None = None, center: bool = False,
                      pad_mode: str = 'constant') -> jax.Array:
  """|STFT|^2 [B, frames, n_fft // 2 + 1] of waves [B, samples]."""
  n_fft = n_fft or frame_length
  if frame_length > n_fft:
    raise ValueError(f'frame_length={frame_length} exceeds n_fft={n_fft}')
  if center:
    waves = jnp.pad(waves, ((0, 0), (n_fft // 2, n_fft // 2)), mode=pad_mode)
  num_frames = 1 + (waves.shape[-1] - n_fft) // frame_step
  if num_frames < 1:
    raise ValueError(f'{waves.shape[-1]} samples hold no frame of {n_fft}')
  starts = np.arange(num_frames)[:, None] * frame_step + np.arange(n_fft)
  frames = waves[:, starts] * _window(frame_length, n_fft)
  return jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2


def mel_spectrogram(waves: jax.Array, *, sample_rate: int, frame_length: int,
                    frame_step: int, num_mels: int, n_fft: int | None = None,
                    center: bool = False, pad_mode: str = 'constant',
                    fmin: float = 0.0, fmax: float | None = None,
                    htk: bool = False) -> jax.Array:
  """Mel power [B, frames, num_mels] of waves [B, samples] (librosa's
  melspectrogram with power=2)."""
  n_fft = n_fft or frame_length
  power = power_spectrogram(waves, frame_length=frame_length,
                            frame_step=frame_step, n_fft=n_fft, center=center,
                            pad_mode=pad_mode)
  return power @ mel_filterbank(sample_rate, n_fft, num_mels, fmin, fmax, htk)


def log_mel_spectrogram(waves: jax.Array, *, floor: float = 1e-6,
                        **mel_options) -> jax.Array:
  """log(max(mel power, floor)) [B, frames, num_mels] of waves [B, samples].

  The natural log of `mel_spectrogram(waves, **mel_options)`, floored so
  that silence stays finite.
  """
  return jnp.log(jnp.maximum(mel_spectrogram(waves, **mel_options), floor))


def power_to_db(power: jax.Array, *, amin: float = 1e-10,
                top_db: float | None = 80.0) -> jax.Array:
  """10 log10(max(power, amin)) of power [B, ...], each example floored at
  `top_db` below its own maximum: librosa.power_to_db with ref=1, per example.
  """
  db = 10.0 * jnp.log10(jnp.maximum(power, amin))
  if top_db is None:
    return db
  peak = jnp.max(db, axis=tuple(range(1, db.ndim)), keepdims=True)
  return jnp.maximum(db, peak - top_db)
