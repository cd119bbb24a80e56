"""Synthetic speakers: vowel-like recordings with each speaker's own voice.

A speaker is a pitch (80-260 Hz, spread evenly over the speakers), a vocal
tract length (all formants scaled by 0.85-1.2), a spectral tilt and a
breathiness. A word is a sequence of two vowels; a recording glides from the
first vowel's formants to the second's, voiced by the speaker's pitch (with
vibrato and a per-recording drift), between random silences. The waveform is
additive synthesis: harmonics of the pitch weighted by resonances at the
formants, plus noise. Both labels are learnable from log-mel features in
seconds, which makes these the embedded offline data.
"""

import itertools

import numpy as np

# (F1, F2, F3) in Hz of /a/, /e/, /i/, /o/, /u/ for an adult male voice
# (Peterson & Barney 1952).
VOWEL_FORMANTS = np.array([[730, 1090, 2440], [530, 1840, 2480],
                           [270, 2290, 3010], [570, 840, 2410],
                           [300, 870, 2240]], np.float64)
# The first 10 ordered pairs of distinct vowels: the words.
WORDS = tuple(pair for pair in itertools.permutations(range(5), 2))[:10]
_BANDWIDTHS = np.array([90.0, 110.0, 170.0])  # Hz, per formant


def speaker_voices(num_speakers: int, seed: int) -> dict[str, np.ndarray]:
  """Each speaker's pitch (Hz), formant scale, tilt (per octave) and noise."""
  rng = np.random.default_rng((seed, 1))
  # Evenly spread pitches, shuffled against the other traits, so that no
  # two speakers share a pitch and pitch alone need not decide.
  pitch = np.linspace(80.0, 260.0, num_speakers) * rng.uniform(
      0.97, 1.03, num_speakers)
  return {'pitch': pitch,
          'formant_scale': rng.permutation(np.linspace(0.85, 1.2,
                                                       num_speakers)),
          'tilt': rng.uniform(0.5, 0.85, num_speakers),
          'noise': rng.uniform(0.005, 0.03, num_speakers)}


def synthesize(voice: dict[str, float], word: int, rng: np.random.Generator,
               sample_rate: int) -> np.ndarray:
  """One recording (float32 in [-1, 1]) of `word` in `voice`."""
  voiced = int(rng.uniform(0.25, 0.6) * sample_rate)
  lead, trail = (int(rng.uniform(0.02, 0.12) * sample_rate) for _ in 'ab')
  t = np.arange(voiced) / sample_rate
  progress = np.clip((t / t[-1] - 0.35) / 0.3, 0.0, 1.0)[:, None]  # glide
  first, second = VOWEL_FORMANTS[list(WORDS[word])]
  formants = ((1 - progress) * first + progress * second) * (
      voice['formant_scale'] * rng.uniform(0.97, 1.03))  # [T, 3]
  pitch = voice['pitch'] * rng.uniform(0.95, 1.05) * (
      1 + 0.02 * np.sin(2 * np.pi * rng.uniform(4, 6) * t))
  phase = 2 * np.pi * np.cumsum(pitch) / sample_rate  # [T]
  harmonics = np.arange(1, int(sample_rate / 2 / pitch.min()) + 1)
  # Harmonic gains change slowly: computed every 5 ms, held in between.
  hold = sample_rate // 200
  frequency = pitch[::hold, None] * harmonics  # [T / hold, K]
  resonance = (1.0 / (1.0 + ((frequency[..., None] - formants[::hold, None]) /
                             _BANDWIDTHS)**2)).sum(-1)
  gain = resonance * voice['tilt']**np.log2(harmonics)
  gain = np.repeat(np.where(frequency < sample_rate / 2, gain, 0.0), hold,
                   axis=0)[:voiced]
  wave = np.einsum('tk,tk->t', gain.astype(np.float32), np.sin(
      (phase[:, None] * harmonics + rng.uniform(0, 2 * np.pi, len(harmonics))
       ).astype(np.float32)))
  envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.03)
  wave = wave * envelope / np.abs(wave).max()
  wave = np.concatenate([np.zeros(lead), wave, np.zeros(trail)])
  wave += voice['noise'] * rng.standard_normal(len(wave))
  return (0.8 * wave / np.abs(wave).max()).astype(np.float32)


def make_recordings(num_speakers: int, per_word: int, seed: int,
                    sample_rate: int = 8000
                    ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
  """`per_word` recordings of every word by every speaker.

  Returns (waveforms, {'speaker', 'digit', 'index'}): 'digit' is the word
  (as FSDD's digit), 'index' the take, 0 to per_word - 1.
  """
  voices = speaker_voices(num_speakers, seed)
  rng = np.random.default_rng((seed, 2))
  waves, labels = [], {'speaker': [], 'digit': [], 'index': []}
  for speaker in range(num_speakers):
    voice = {name: values[speaker] for name, values in voices.items()}
    for word in range(len(WORDS)):
      for index in range(per_word):
        waves.append(synthesize(voice, word, rng, sample_rate))
        for name, value in zip(labels, (speaker, word, index)):
          labels[name].append(value)
  return waves, {k: np.asarray(v, np.int32) for k, v in labels.items()}
