"""Subword vocabularies with sentencepiece (unigram or BPE), trained in memory.

`train_subword(sentences, directory, vocab_size)` learns a vocabulary from an
iterable of sentences (the training split only; chain two languages'
sentences for a shared vocabulary) and writes `directory/{name}.model`;
`SubwordTokenizer(path)` loads it. The special ids are fixed, the same as a
CharTokenizer with every special: <pad> 0, <bos> 1, <eos> 2, <unk> 3.
Training is deterministic for a given sentence order.
"""

from collections.abc import Iterable
import os

import numpy as np
import sentencepiece as spm

from lib.errors import DataError
from lib.text.tokenizers import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID

MODEL_TYPES = ('unigram', 'bpe')


def train_subword(sentences: Iterable[str], directory: str, vocab_size: int,
                  *, name: str = 'subword', model_type: str = 'unigram',
                  character_coverage: float = 1.0) -> 'SubwordTokenizer':
  """Trains a sentencepiece model on `sentences`; returns its tokenizer.

  `character_coverage` below 1 (0.9995 is sentencepiece's advice for
  Chinese or Japanese) maps the rarest characters to <unk>.
  """
  if model_type not in MODEL_TYPES:
    raise ValueError(f'model_type={model_type!r}: choose from {MODEL_TYPES}')
  os.makedirs(directory, exist_ok=True)
  prefix = os.path.join(directory, name)
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=prefix,
        vocab_size=vocab_size, model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        pad_piece=SPECIALS[PAD_ID], bos_piece=SPECIALS[BOS_ID],
        eos_piece=SPECIALS[EOS_ID], unk_piece=SPECIALS[UNK_ID],
        num_threads=min(os.cpu_count() or 1, 16), minloglevel=2)
  except RuntimeError as error:  # e.g. a vocab_size the text cannot fill
    raise DataError(f'sentencepiece training failed: {error}') from None
  return SubwordTokenizer(prefix + '.model')


class SubwordTokenizer:
  """A trained sentencepiece model: text <-> int32 subword ids."""

  def __init__(self, model_path: str):
    if not os.path.isfile(model_path):
      raise DataError(f'no sentencepiece model at {model_path}')
    self.model_path = model_path
    self._processor = spm.SentencePieceProcessor(model_file=model_path)
    ids = (self._processor.pad_id(), self._processor.bos_id(),
           self._processor.eos_id(), self._processor.unk_id())
    if ids != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
      raise DataError(f'{model_path}: special ids (pad, bos, eos, unk) = '
                      f'{ids}, not {(PAD_ID, BOS_ID, EOS_ID, UNK_ID)}; train '
                      'it with lib.text.subword.train_subword')

  @property
  def vocab_size(self) -> int:
    return self._processor.get_piece_size()

  def special_id(self, name: str) -> int:
    if name not in SPECIALS:
      raise KeyError(f'{name!r} is not a special token ({SPECIALS})')
    return SPECIALS.index(name)

  def encode(self, text: str) -> np.ndarray:
    return np.array(self._processor.encode(text), np.int32)

  def pieces(self, text: str) -> list[str]:
    """The subword strings of `text` ('▁' marks a word start)."""
    return self._processor.encode(text, out_type=str)

  def decode(self, ids) -> str:
    """The text of `ids`; specials are left out, <unk> shows as ' ⁇ '."""
    return self._processor.decode(np.asarray(ids, np.int64).tolist())
