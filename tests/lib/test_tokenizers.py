"""Contracts of lib.text.tokenizers.CharTokenizer."""

import numpy as np
import pytest

from lib.errors import DataError
from lib.text.tokenizers import CharTokenizer


def test_round_trip_sorted_vocabulary_and_specials():
  text = 'To be, or not to be.\n'
  tokenizer = CharTokenizer.fit(text, specials=('<unk>', '<pad>', '<eos>'))
  assert tokenizer.vocab[:3] == ('<pad>', '<eos>', '<unk>')  # pad is 0
  assert tokenizer.special_id('<pad>') == 0
  assert list(tokenizer.chars) == sorted(set(text))
  ids = tokenizer.encode(text)
  assert ids.dtype == np.int32 and len(ids) == len(text)
  assert tokenizer.decode(ids) == text
  assert tokenizer.decode([0, *ids[:2], 1]) == text[:2]  # specials dropped
  assert tokenizer.encode('Toq')[-1] == tokenizer.special_id('<unk>')
  loaded = CharTokenizer.from_json(tokenizer.to_json())
  assert loaded.vocab == tokenizer.vocab


def test_unknown_characters_and_bad_specials_fail_clearly():
  tokenizer = CharTokenizer.fit('abc')
  assert tokenizer.vocab_size == 3
  with pytest.raises(DataError, match="'z' is not in the vocabulary"):
    tokenizer.encode('az')
  with pytest.raises(KeyError):
    tokenizer.special_id('<pad>')
  with pytest.raises(ValueError, match='special tokens'):
    CharTokenizer.fit('abc', specials=('<mask>',))
  with pytest.raises(DataError):
    CharTokenizer.fit('')
