"""BERT's self-supervised objectives: masked language modelling and a sentence pair.

Instances are built once on the host (`make_instances`: two segments of a
document, `[CLS] A [SEP] B [SEP]`, with the pair label); masking is drawn
anew in every step from the step's key (`mask_tokens`, dynamic masking as
RoBERTa does), so a resumed run sees the same masks.

  mlm   15% of the non-special tokens of each sequence are predicted; of them
        80% become [MASK], 10% a random token, 10% stay as they are.
  pair  'sop' (ALBERT's sentence order: B follows A, or the two are swapped),
        'nsp' (BERT's next sentence: B follows A, or comes from another
        document), or 'none'.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PAIR_OBJECTIVES = ('sop', 'nsp', 'none')


class Masked(NamedTuple):
  tokens: jax.Array     # [B, T] the input, with the chosen tokens replaced
  positions: jax.Array  # [B, M] positions to predict (padded with 0)
  targets: jax.Array    # [B, M] the original tokens there
  weights: jax.Array    # [B, M] 1 for a real prediction, 0 for padding


def max_predictions(length: int, rate: float) -> int:
  """Predictions per sequence: room for `rate` of a full sequence."""
  return max(1, int(np.ceil(length * rate)))


def mask_tokens(key, tokens, candidates, *, mask_id: int, vocab_size: int,
                rate: float = 0.15, num_predictions: int,
                first_normal_id: int = 0) -> Masked:
  """Chooses round(rate * n) of each row's n candidate tokens and corrupts them.

  `candidates` [B, T] marks the tokens that may be chosen (not padding, not
  [CLS] or [SEP]). Random replacements are drawn from [first_normal_id,
  vocab_size), so they are never special tokens when those come first.
  """
  choose_key, kind_key, random_key = jax.random.split(key, 3)
  scores = jnp.where(candidates, jax.random.uniform(choose_key, tokens.shape),
                     -1.0)
  _, positions = jax.lax.top_k(scores, num_predictions)
  count = jnp.round(candidates.sum(-1) * rate).astype(jnp.int32)
  count = jnp.clip(count, jnp.minimum(1, candidates.sum(-1)), num_predictions)
  weights = jnp.arange(num_predictions)[None] < count[:, None]
  targets = jnp.take_along_axis(tokens, positions, axis=1)
  kind = jax.random.uniform(kind_key, positions.shape)
  random_tokens = jax.random.randint(random_key, positions.shape,
                                     first_normal_id, vocab_size)
  replacement = jnp.where(kind < 0.8, mask_id,
                          jnp.where(kind < 0.9, random_tokens, targets))
  replacement = jnp.where(weights, replacement, targets)
  rows = jnp.arange(tokens.shape[0])[:, None]
  corrupted = tokens.at[rows, positions].set(replacement)
  positions = jnp.where(weights, positions, 0)
  return Masked(corrupted, positions, jnp.where(weights, targets, 0),
                weights.astype(jnp.float32))


def mlm_loss(logits, masked: Masked):
  """Mean cross-entropy over the chosen positions only, and their accuracy."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           masked.targets)
  total = jnp.maximum(masked.weights.sum(), 1.0)
  correct = (logits.argmax(-1) == masked.targets) * masked.weights
  return (losses * masked.weights).sum() / total, correct.sum() / total


class Special(NamedTuple):
  pad: int
  cls: int
  sep: int


def make_instances(documents, length: int, special: Special, *,
                   objective: str, num_instances: int,
                   seed: int) -> dict[str, np.ndarray]:
  """`num_instances` pair instances from `documents` (lists of sentences of ids).

  Each instance is `[CLS] A [SEP] B [SEP]` padded to `length`: A is one or
  more whole sentences of a document and B the sentences after them, each
  side cut to fit. The pair label is 1 when B was swapped before A ('sop') or
  drawn from another document ('nsp'); 'none' keeps every pair in order.
  Documents need two sentences or more.
  """
  if objective not in PAIR_OBJECTIVES:
    raise ValueError(f'pair objective {objective!r}: choose one of '
                     f'{PAIR_OBJECTIVES}')
  documents = [d for d in documents if len(d) >= 2]
  if not documents:
    raise ValueError('pretraining needs documents of two sentences or more')
  rng = np.random.default_rng(seed)
  budget = length - 3
  tokens = np.full((num_instances, length), special.pad, np.int32)
  segments = np.zeros((num_instances, length), np.int32)
  labels = np.zeros(num_instances, np.int32)
  if objective == 'nsp' and len(documents) < 2:
    raise ValueError('next sentence prediction needs two documents or more')
  for i in range(num_instances):
    index = rng.integers(len(documents))
    doc = documents[index]
    split = rng.integers(1, len(doc))
    first = [t for s in doc[:split] for t in s]
    second = [t for s in doc[split:] for t in s]
    label = int(objective != 'none' and rng.random() < 0.5)
    if label and objective == 'sop':
      first, second = second, first
    elif label:
      other = documents[(index + rng.integers(1, len(documents))) %
                        len(documents)]
      second = [t for s in other[rng.integers(len(other)):] for t in s]
    # Keep the sentences next to the boundary: the end of A, the start of B.
    take_b = min(len(second), max(budget // 2, budget - len(first)))
    take_a = min(len(first), budget - take_b)
    a, b = first[len(first) - take_a:], second[:take_b]
    row = [special.cls, *a, special.sep, *b, special.sep]
    tokens[i, :len(row)] = row
    segments[i, len(a) + 2:len(row)] = 1
    labels[i] = label
  return {'tokens': tokens, 'segments': segments,
          'valid': tokens != special.pad, 'pair_label': labels}
