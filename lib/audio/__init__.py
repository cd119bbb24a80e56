"""Audio input: wav reading and log-mel spectrograms in JAX."""

from lib.audio.features import log_mel_spectrogram
from lib.audio.features import mel_filterbank
from lib.audio.features import mel_spectrogram
from lib.audio.features import power_spectrogram
from lib.audio.features import power_to_db
from lib.audio.wav import read_wav

__all__ = ['log_mel_spectrogram', 'mel_filterbank', 'mel_spectrogram',
           'power_spectrogram', 'power_to_db', 'read_wav']
