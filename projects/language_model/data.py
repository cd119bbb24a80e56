"""Text for the character models: files, the embedded default, windows, baselines."""

import os

import ml_collections
import numpy as np

from lib.errors import DataError
from lib.text.tokenizers import CharTokenizer

_SUBJECTS = ('the cat', 'a dog', 'my sister', 'the old king', 'our teacher',
             'the small bird', 'every child', 'the farmer')
_VERBS = ('sees', 'finds', 'likes', 'follows', 'paints', 'calls', 'feeds')
_OBJECTS = ('the moon', 'a red ball', 'the river', 'some bread', 'the garden',
            'a green apple', 'the tall tower')
_ENDINGS = ('at night', 'in the morning', 'by the sea', 'every day',
            'with joy', '')


def embedded_text(num_sentences: int = 6000, seed: int = 0) -> str:
  """Sentences from a small grammar: learnable structure, offline, deterministic."""
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(num_sentences):
    parts = [_SUBJECTS[rng.integers(len(_SUBJECTS))],
             _VERBS[rng.integers(len(_VERBS))],
             _OBJECTS[rng.integers(len(_OBJECTS))],
             _ENDINGS[rng.integers(len(_ENDINGS))]]
    lines.append(' '.join(p for p in parts if p) + '.')
  return '\n'.join(lines) + '\n'


def read_text(data: ml_collections.ConfigDict) -> str:
  if data.source == 'embedded':
    return embedded_text()
  path = os.path.abspath(data.path)
  if not os.path.isfile(path):
    hint = (' (tiny Shakespeare: ../shared/data/text_tinyshakespeare/'
            'input.txt, or input.txt of karpathy/char-rnn)'
            if data.source == 'shakespeare' else '')
    raise DataError(f'config.data.path={data.path!r}: no such file '
                    f'({path}){hint}')
  with open(path, encoding='utf-8') as f:
    text = f.read()
  if len(text) < 100:
    raise DataError(f'{path} holds {len(text)} characters; a language model '
                    'needs at least a few hundred')
  return text


class Windows:
  """{'tokens': ids[start : start + length]} for every start (a batch source).

  `stride` 1 gives every window (nanoGPT's random offsets); `stride` =
  `length` gives disjoint windows that cover the text once (evaluation).
  `shard` (index, count) keeps this process's windows of a multi-host job.
  """

  def __init__(self, ids: np.ndarray, length: int, stride: int = 1,
               shard: tuple[int, int] = (0, 1)):
    if len(ids) < length + 1:
      raise DataError(f'the text has {len(ids)} characters, fewer than one '
                      f'window of {length} + 1; lower config.block_size')
    starts = np.arange(0, len(ids) - length + 1, stride)
    self._starts = starts[shard[0]::shard[1]]
    self._ids, self._length = ids, length

  def __len__(self):
    return len(self._starts)

  def __getitem__(self, index: int):
    start = self._starts[index]
    return {'tokens': self._ids[start:start + self._length]}


def load(config: ml_collections.ConfigDict):
  """(tokenizer, train ids, val ids), split at the last val_fraction."""
  text = read_text(config.data)
  tokenizer = CharTokenizer.fit(text)
  ids = tokenizer.encode(text)
  cut = int(len(ids) * (1.0 - config.data.val_fraction))
  return tokenizer, ids[:cut], ids[cut:]


def ngram_nats(train: np.ndarray, val: np.ndarray, vocab_size: int,
               order: int) -> float:
  """Val cross-entropy (nats/char) of an add-one-smoothed unigram or bigram."""
  if order == 1:
    counts = np.bincount(train, minlength=vocab_size) + 1.0
    return float(-np.mean(np.log(counts[val] / counts.sum())))
  pairs = np.zeros((vocab_size, vocab_size))
  np.add.at(pairs, (train[:-1], train[1:]), 1.0)
  pairs += 1.0
  probs = pairs / pairs.sum(1, keepdims=True)
  return float(-np.mean(np.log(probs[val[:-1], val[1:]])))
