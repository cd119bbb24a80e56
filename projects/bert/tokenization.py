"""BERT's WordPiece tokenization with HF `tokenizers`, as BertTokenizerFast.

`from_vocab(vocab.txt)` rebuilds a released BERT's tokenizer (bert-base-chinese,
an uncased English BERT); `train_wordpiece(texts, vocab_size)` learns a
vocabulary with the same pipeline: BertNormalizer (clean text, a space around
every CJK character, lowercase and accent stripping together), BertPreTokenizer,
WordPiece ('##' continuations, '[UNK]'), and a `[CLS] A [SEP] B [SEP]`
post-processor giving segment (type) ids 0 for A and 1 for B. On Chinese text
every character is its own token, as bert-base-chinese has it.

A trained vocabulary starts with the specials, [PAD] 0, [UNK] 1, [CLS] 2,
[SEP] 3, [MASK] 4; a released one has its own ids, so code reads them with
`special_ids`. Tokenizers carry no padding or truncation: `encode_batch` and
`qa.make_features` lay out fixed-length rows themselves.
"""

from collections.abc import Iterable, Sequence
import copy
from typing import NamedTuple

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers

PAD, UNK, CLS, SEP, MASK = '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'
SPECIALS = (PAD, UNK, CLS, SEP, MASK)  # a trained vocabulary's ids 0..4


class SpecialIds(NamedTuple):
  pad: int
  unk: int
  cls: int
  sep: int
  mask: int


def _bert_pipeline(model: models.Model,
                   lowercase: bool) -> tokenizers.Tokenizer:
  """`model` behind BERT's normalizer, pre-tokenizer and decoder."""
  tokenizer = tokenizers.Tokenizer(model)
  tokenizer.normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=True, strip_accents=lowercase,
      lowercase=lowercase)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.decoder = decoders.WordPiece(prefix='##')
  return tokenizer


def _finish(tokenizer: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
  """Marks the specials (never split or normalized) and adds the template."""
  missing = [t for t in SPECIALS if tokenizer.token_to_id(t) is None]
  if missing:
    raise ValueError(f'the vocabulary lacks the special tokens {missing}')
  tokenizer.add_special_tokens(list(SPECIALS))
  ids = special_ids(tokenizer)
  tokenizer.post_processor = processors.TemplateProcessing(
      single=f'{CLS} $A {SEP}', pair=f'{CLS} $A {SEP} $B:1 {SEP}:1',
      special_tokens=[(CLS, ids.cls), (SEP, ids.sep)])
  return tokenizer


def from_vocab(vocab_path: str, lowercase: bool = True) -> tokenizers.Tokenizer:
  """A released BERT's tokenizer from its vocab.txt (one token a line)."""
  model = models.WordPiece.from_file(
      str(vocab_path), unk_token=UNK, continuing_subword_prefix='##')
  return _finish(_bert_pipeline(model, lowercase))


def train_wordpiece(texts: Iterable[str], vocab_size: int,
                    lowercase: bool = True,
                    min_frequency: int = 2) -> tokenizers.Tokenizer:
  """A WordPiece vocabulary of at most `vocab_size` learned from `texts`.

  Every character seen is kept (each CJK character is a token); merges of
  Latin letters and digits need `min_frequency` occurrences.
  """
  tokenizer = _bert_pipeline(
      models.WordPiece(unk_token=UNK, continuing_subword_prefix='##'),
      lowercase)
  trainer = trainers.WordPieceTrainer(
      vocab_size=vocab_size, min_frequency=min_frequency,
      special_tokens=list(SPECIALS), continuing_subword_prefix='##',
      show_progress=False)
  tokenizer.train_from_iterator(texts, trainer)
  # The trainer's ids vary from run to run: number the tokens in sorted order
  # (the specials first), so the same vocabulary gives the same ids.
  learned = sorted(set(tokenizer.get_vocab()) - set(SPECIALS))
  vocab = {token: i for i, token in enumerate([*SPECIALS, *learned])}
  return _finish(_bert_pipeline(
      models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix='##'),
      lowercase))


def special_ids(tokenizer: tokenizers.Tokenizer) -> SpecialIds:
  """The specials' ids, looked up by token (a released vocab has its own)."""
  ids = [tokenizer.token_to_id(token) for token in SPECIALS]
  if None in ids:
    raise ValueError('the tokenizer lacks the special tokens '
                     f'{[t for t, i in zip(SPECIALS, ids) if i is None]}')
  return SpecialIds(*ids)


def save(tokenizer: tokenizers.Tokenizer, path: str):
  """Writes the whole pipeline as one tokenizer.json."""
  tokenizer.save(str(path))


def load(path: str) -> tokenizers.Tokenizer:
  return tokenizers.Tokenizer.from_file(str(path))


def encode_batch(tokenizer: tokenizers.Tokenizer, texts: Sequence[str],
                 length: int,
                 pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
  """`[CLS] text [SEP]` (or `[CLS] text [SEP] pair [SEP]`) rows of `length`.

  Longer inputs are cut (a pair longest-first, as BERT does) and shorter ones
  padded with [PAD]. Returns tokens int32 [N, length], segments int32
  [N, length] (1 for the pair and its [SEP]) and valid bool [N, length].
  """
  if pairs is not None and len(pairs) != len(texts):
    raise ValueError(f'{len(texts)} texts but {len(pairs)} pairs')
  if length < (3 if pairs is not None else 2):
    raise ValueError(f'length={length} leaves no room for the special tokens')
  # A copy, so the caller's tokenizer keeps no padding or truncation.
  tokenizer = copy.deepcopy(tokenizer)
  tokenizer.enable_truncation(length, strategy='longest_first')
  tokenizer.enable_padding(length=length, pad_id=special_ids(tokenizer).pad,
                           pad_token=PAD)
  inputs = list(texts) if pairs is None else list(zip(texts, pairs))
  encodings = tokenizer.encode_batch(inputs)
  rows = lambda field: np.array([getattr(e, field) for e in encodings],
                                np.int32).reshape(len(inputs), length)
  return {'tokens': rows('ids'), 'segments': rows('type_ids'),
          'valid': rows('attention_mask').astype(bool)}
