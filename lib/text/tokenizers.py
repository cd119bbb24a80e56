"""The tokenizer protocol, and character tokenizers.

Every tokenizer here (`CharTokenizer`, lib.text.subword.SubwordTokenizer)
maps text to int32 ids and back and names its special tokens by
`special_id`. With all four specials, the ids are the same in both:
<pad> 0, <bos> 1, <eos> 2, <unk> 3.

`CharTokenizer.fit(text)` gives every distinct character an id in sorted
order, after the special tokens it is asked for (pad is always 0 when
present), so the same text always gives the same vocabulary.
"""

import json
from typing import Protocol, runtime_checkable

import numpy as np

from lib.errors import DataError

SPECIALS = ('<pad>', '<bos>', '<eos>', '<unk>')
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)  # with all of SPECIALS


@runtime_checkable
class Tokenizer(Protocol):
  """What the sequence projects need of a tokenizer."""

  @property
  def vocab_size(self) -> int: ...

  def encode(self, text: str) -> np.ndarray:
    """int32 ids [length], without <bos> or <eos>."""

  def decode(self, ids) -> str:
    """The text of `ids`; <pad>, <bos> and <eos> are left out (<unk> shows
    as the tokenizer's own mark, or not at all)."""

  def special_id(self, name: str) -> int:
    """The id of '<pad>', '<bos>', '<eos>' or '<unk>'; KeyError if absent."""


class CharTokenizer:
  """Characters <-> int32 ids; unknown characters map to <unk> (if present)."""

  def __init__(self, chars, specials=()):
    unknown = set(specials) - set(SPECIALS)
    if unknown:
      raise ValueError(f'special tokens {sorted(unknown)}: choose from '
                       f'{SPECIALS}')
    self.specials = tuple(s for s in SPECIALS if s in specials)
    self.chars = tuple(chars)
    self.vocab = self.specials + self.chars
    self._ids = {c: i for i, c in enumerate(self.vocab)}

  @classmethod
  def fit(cls, text: str, specials=()) -> 'CharTokenizer':
    if not text:
      raise DataError('cannot build a character vocabulary from empty text')
    return cls(sorted(set(text)), specials)

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def special_id(self, name: str) -> int:
    """The id of '<pad>', '<bos>', '<eos>' or '<unk>'."""
    if name not in self._ids or name not in self.specials:
      raise KeyError(f'{name!r} is not in this vocabulary '
                     f'(specials {self.specials})')
    return self._ids[name]

  def encode(self, text: str) -> np.ndarray:
    unk = self._ids.get('<unk>') if '<unk>' in self.specials else None
    try:
      return np.array([self._ids[c] if unk is None else self._ids.get(c, unk)
                       for c in text], np.int32)
    except KeyError as error:
      raise DataError(f'character {error.args[0]!r} is not in the '
                      'vocabulary (fit with an <unk> token to map it)') from None

  def decode(self, ids) -> str:
    """Characters of `ids`; special tokens are left out."""
    first = len(self.specials)
    return ''.join(self.vocab[i] for i in np.asarray(ids).tolist()
                   if first <= i < len(self.vocab))

  def to_json(self) -> str:
    return json.dumps({'chars': ''.join(self.chars),
                       'specials': list(self.specials)})

  @classmethod
  def from_json(cls, text: str) -> 'CharTokenizer':
    fields = json.loads(text)
    return cls(fields['chars'], fields['specials'])
