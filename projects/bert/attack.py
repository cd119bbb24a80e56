"""A word-substitution attack on a text classifier (the adversarial-attack
lecture's text part).

  substitution_candidates  each whole word's k nearest whole words by cosine
                           similarity of the input (word) embeddings
  attack                   greedy substitution: the words in order of
                           importance (the drop in the true label's
                           probability when the word is deleted, as
                           TextFooler ranks them), at each the candidate that
                           most lowers that probability, until the prediction
                           flips or max_substitutions words are changed
  classifier_predict_fn    a fine-tuned Bert's `predict_fn`

The attack sees the model only through `predict_fn(texts) -> probabilities
[N, C]`, and changes only words that are one token of the vocabulary,
replacing them in the text in place (the rest of the text is kept as is).
"""

import collections
from collections.abc import Callable, Sequence

import jax
import numpy as np
import tokenizers

from projects.bert import analysis
from projects.bert import model as model_lib
from projects.bert import tokenization

PredictFn = Callable[[list[str]], np.ndarray]


def _is_word(token: str) -> bool:
  """A whole word: no '##' piece, no [special] and not only punctuation."""
  special = token.startswith('[') and token.endswith(']') and len(token) > 2
  return (not token.startswith('##') and not special
          and any(c.isalnum() for c in token))


def substitution_candidates(word_embeddings: np.ndarray, vocab: dict[str, int],
                            k: int, chunk: int = 1024) -> dict[int, list[int]]:
  """{word id: the ids of its k nearest words, nearest first}.

  `word_embeddings` [V, H] is the input embedding table, `vocab` token -> id
  (tokenizer.get_vocab()). Words are whole-word tokens (no specials, '##'
  pieces or punctuation); a word is never its own candidate.
  """
  if k < 1:
    raise ValueError(f'k={k}: at least one candidate is needed')
  ids = np.array(sorted(i for token, i in vocab.items() if _is_word(token)))
  vectors = np.asarray(word_embeddings, np.float32)[ids]
  vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
  k = min(k, len(ids) - 1)
  candidates = {}
  for start in range(0, len(ids), chunk):  # [chunk, words] at a time
    similarity = vectors[start:start + chunk] @ vectors.T
    rows = np.arange(len(similarity))
    similarity[rows, start + rows] = -np.inf
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(
        similarity, top, 1), axis=1, kind='stable'), 1)
    candidates.update({int(ids[start + r]): ids[top[r]].tolist()
                       for r in rows})
  return candidates


def _substitutable(tokenizer: tokenizers.Tokenizer, text: str,
                   candidates: dict[int, list[int]]) -> list[tuple[int, int,
                                                                   int]]:
  """(start, end, token id) of each word of `text` that is one token with
  candidates, in order; offsets are into `text` itself."""
  encoding = tokenizer.encode(text, add_special_tokens=False)
  words = collections.defaultdict(list)
  for word, token, offsets in zip(encoding.word_ids, encoding.ids,
                                  encoding.offsets):
    words[word].append((token, offsets))
  return [(start, end, token) for pieces in words.values()
          if len(pieces) == 1 for token, (start, end) in pieces
          if candidates.get(token)]


def _splice(text: str, spans, replacements: dict[int, str]) -> str:
  """`text` with span j replaced by replacements[j]."""
  for j in sorted(replacements, reverse=True):  # keeps earlier offsets valid
    start, end, _ = spans[j]
    text = text[:start] + replacements[j] + text[end:]
  return text


def _attack_one(predict_fn: PredictFn, tokenizer, text: str, label: int,
                probability: float, candidates, max_substitutions: int):
  """The adversarial text, or None where the prediction did not flip."""
  spans = _substitutable(tokenizer, text, candidates)
  if not spans:
    return None
  deleted = np.asarray(predict_fn([text[:start] + text[end:]
                                   for start, end, _ in spans]))[:, label]
  chosen = {}
  for j in np.argsort(deleted, kind='stable'):  # most important first
    if len(chosen) == max_substitutions:
      break
    words = [tokenizer.id_to_token(c) for c in candidates[spans[j][2]]]
    trials = [_splice(text, spans, {**chosen, j: w}) for w in words]
    probabilities = np.asarray(predict_fn(trials))
    best = int(probabilities[:, label].argmin())
    if probabilities[best, label] < probability:
      chosen[j], probability = words[best], probabilities[best, label]
      if probabilities[best].argmax() != label:
        return trials[best]
  return None


def attack(predict_fn: PredictFn, tokenizer: tokenizers.Tokenizer,
           texts: Sequence[str], labels: Sequence[int],
           candidates: dict[int, list[int]], max_substitutions: int = 2,
           num_examples: int = 5) -> dict:
  """Attacks each text `predict_fn` classifies correctly.

  Returns 'success_rate' (the share of those whose prediction flipped with at
  most `max_substitutions` words changed; 0 when none is correct),
  'attacked' (how many were) and 'examples': up to `num_examples`
  (original, adversarial) pairs. Each call of `predict_fn` gets one text's
  variants (every candidate of one word).
  """
  texts, labels = list(texts), np.asarray(labels)
  probabilities = np.asarray(predict_fn(texts))
  correct = np.flatnonzero(probabilities.argmax(-1) == labels)
  successes, examples = 0, []
  for i in correct:
    adversarial = _attack_one(predict_fn, tokenizer, texts[i], labels[i],
                              probabilities[i, labels[i]], candidates,
                              max_substitutions)
    if adversarial is not None:
      successes += 1
      if len(examples) < num_examples:
        examples.append((texts[i], adversarial))
  return {'success_rate': successes / max(len(correct), 1),
          'attacked': len(correct), 'examples': examples}


def classifier_predict_fn(model: model_lib.Bert, params,
                          tokenizer: tokenizers.Tokenizer, length: int,
                          batch_size: int = 64) -> PredictFn:
  """`predict_fn` of a 'classification' Bert: softmax of its logits on
  texts encoded to `length` tokens, compiled once for any number of texts."""

  @jax.jit
  def probabilities(params, batch):
    return jax.nn.softmax(model.apply(
        {'params': params}, batch['tokens'], batch['segments'],
        batch['valid'])['logits'])

  def predict_fn(texts):
    inputs = tokenization.encode_batch(tokenizer, texts, length)
    return analysis.map_batches(lambda b: probabilities(params, b), inputs,
                                batch_size)

  return predict_fn
