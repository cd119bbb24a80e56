"""The shared subword vocabulary and the token fields of a corpus.

One sentencepiece model (lib.text.subword) serves both languages, trained on
the training split's sentences and kept in WORKDIR/vocab/subword.model, so a
rerun, a resumed run and every process of a multi-host job read the same
vocabulary: the chief trains it, the others wait and read it back.
"""

import tempfile

from etils import epath
from jax.experimental import multihost_utils
import numpy as np

from lib import loop
from lib.text import batching
from lib.text import subword
from lib.text.tokenizers import EOS_ID

FILE = 'subword.model'


def _train(sentences, vocab_config, path: epath.Path):
  with tempfile.TemporaryDirectory() as local:
    subword.train_subword(sentences, local, vocab_config.size,
                          model_type=vocab_config.model_type,
                          character_coverage=vocab_config.character_coverage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(epath.Path(local, FILE).read_bytes())


def load_or_train(sentences, vocab_config, workdir: str
                  ) -> subword.SubwordTokenizer:
  """WORKDIR/vocab's tokenizer, trained on `sentences` if absent.

  `sentences` is a callable giving the training sentences (only called when
  the vocabulary has to be trained).
  """
  path = epath.Path(workdir) / 'vocab' / FILE
  if not path.exists() and loop.is_chief():
    _train(sentences(), vocab_config, path)
  multihost_utils.sync_global_devices('seq2seq vocabulary')
  if '://' not in str(path):
    return subword.SubwordTokenizer(str(path))
  # sentencepiece reads local files: a local copy of one at a URL (gs://...).
  local = epath.Path(tempfile.mkdtemp()) / FILE
  local.write_bytes(path.read_bytes())
  return subword.SubwordTokenizer(str(local))


def encode_pairs(tokenizer, pairs: dict) -> dict[str, list[np.ndarray]]:
  """The teacher-forcing fields (lib.text.batching.seq2seq_examples)."""
  return batching.seq2seq_examples([tokenizer.encode(s) for s in pairs['source']],
                                   [tokenizer.encode(t) for t in pairs['target']])


def encode_sources(tokenizer, sentences, length: int) -> np.ndarray:
  """int32 [N, length]: each sentence's ids and EOS, padded (or cut)."""
  ids = [np.append(tokenizer.encode(s), EOS_ID) for s in sentences]
  return batching.pad_to_length(ids, length)[0]
