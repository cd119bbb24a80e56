"""Extractive question answering (HW7 on DRCD): data, windows, spans, EM/F1.

`load_squad` reads SQuAD v1-format JSON (DRCD's format) into `Example`s.
`make_features` lays each question and its context out as the homework does:
`[CLS] question [SEP] window of context [SEP]`, the windows sliding over the
context's tokens with a doc stride, every row padded to one length
L = max_question + window + 3. A model predicts start and end logits per row;
`postprocess` picks each question's best span over all of its windows and
maps it back to the context's characters, and `evaluate` scores the answers
with DRCD's (CMRC 2018's) EM and F1.
"""

from collections.abc import Mapping, Sequence
import dataclasses
import json
import string
import unicodedata

import numpy as np
import tokenizers

from lib.errors import DataError
from projects.bert import tokenization

DRCD_DIR = '../shared/data/qa_drcd'


@dataclasses.dataclass(frozen=True)
class Example:
  """A question on a context; answers[i] is context[answer_starts[i]:][:len]."""
  id: str
  question: str
  context: str
  answers: tuple[str, ...]
  answer_starts: tuple[int, ...]


class MissingDataError(DataError, FileNotFoundError):
  """No data file; a DataError too, so the launcher reports it in one line."""


class MalformedDataError(DataError, ValueError):
  """A data file that is not SQuAD-format JSON, with what is wrong."""


def _field(record, key: str, kind: type, where: str):
  """record[key], checked to be a `kind`; `where` names record in errors."""
  if not isinstance(record, dict):
    raise MalformedDataError(f'{where} is {type(record).__name__}, not an '
                             'object')
  if key not in record:
    raise MalformedDataError(f'{where} has no {key!r}')
  value = record[key]
  if not isinstance(value, kind) or isinstance(value, bool):
    raise MalformedDataError(f'{where}.{key} is {type(value).__name__}, '
                             f'not {kind.__name__}')
  return value


def _example(qa: dict, context: str, where: str) -> Example:
  question_id = _field(qa, 'id', str, where)
  answers = qa.get('answers', [])  # a test set may come without answers
  if not isinstance(answers, list):
    raise MalformedDataError(f'{where}.answers is not a list')
  texts, starts = [], []
  for j, answer in enumerate(answers):
    text = _field(answer, 'text', str, f'{where}.answers[{j}]')
    start = _field(answer, 'answer_start', int, f'{where}.answers[{j}]')
    if context[start:start + len(text)] != text:
      raise MalformedDataError(
          f'{where} (id {question_id}): answer {text!r} is not at '
          f'answer_start={start} of its context, which has '
          f'{context[start:start + len(text)]!r} there')
    texts.append(text)
    starts.append(start)
  return Example(id=question_id, question=_field(qa, 'question', str, where),
                 context=context, answers=tuple(texts),
                 answer_starts=tuple(starts))


def load_squad(path: str, limit: int | None = None) -> list[Example]:
  """The questions of a SQuAD v1-format file (the first `limit` of them).

  Every answer is checked to be the context's text at its answer_start.
  """
  try:
    with open(path, encoding='utf-8-sig') as f:
      raw = f.read()
  except FileNotFoundError:
    raise MissingDataError(
        f'no QA data file at {path}: DRCD (DRCD_training.json, DRCD_dev.json, '
        f'DRCD_test.json) is expected in {DRCD_DIR}/ beside the repo; pass '
        'another SQuAD-format file with --config.data.train_path=PATH or '
        '--config.data.test_path=PATH') from None
  try:
    data = json.loads(raw)
  except json.JSONDecodeError as e:
    raise MalformedDataError(f'{path} is not valid JSON: {e}') from None
  where = f'{path}: the top level'
  examples = []
  for a, article in enumerate(_field(data, 'data', list, where)):
    where = f'{path}: data[{a}]'
    for p, paragraph in enumerate(_field(article, 'paragraphs', list, where)):
      where = f'{path}: data[{a}].paragraphs[{p}]'
      context = _field(paragraph, 'context', str, where)
      for q, qa in enumerate(_field(paragraph, 'qas', list, where)):
        if limit is not None and len(examples) >= limit:
          return examples
        examples.append(_example(qa, context, f'{where}.qas[{q}]'))
  return examples


def _answer_tokens(offsets: np.ndarray, example: Example) -> tuple[int, int]:
  """First and last context token of the first answer; (-1, -1) if none."""
  if not example.answers:
    return -1, -1
  begin = example.answer_starts[0]
  end = begin + len(example.answers[0])
  first = int(np.searchsorted(offsets[:, 1], begin, side='right'))
  last = int(np.searchsorted(offsets[:, 0], end, side='left')) - 1
  return (first, last) if first <= last else (-1, -1)


def make_features(examples: Sequence[Example],
                  tokenizer: tokenizers.Tokenizer, *, max_question: int = 40,
                  window: int = 150, stride: int = 75,
                  train: bool = False) -> dict[str, np.ndarray]:
  """Fixed-length rows `[CLS] question [SEP] context window [SEP] [PAD]...`.

  The question keeps its first `max_question` tokens; windows of `window`
  context tokens start every `stride` tokens until one reaches the context's
  end. Returns, for N rows of length L = max_question + window + 3:
    tokens, segments (1 for the window and its [SEP]) int32 [N, L];
    valid bool [N, L];
    offsets int32 [N, L, 2]: a context token's characters [start, end) in
      its context, (-1, -1) at every other position;
    example_index int32 [N]: the row's position in `examples`;
    start_positions, end_positions int32 [N]: the first answer's first and
      last token in the row, 0 (the [CLS]) where the window lacks any of it.
  With train=True only the windows that hold the whole answer are kept (an
  example whose answer no window holds gives none).
  """
  if not 0 < stride <= window:
    raise ValueError(f'stride={stride} must be in [1, window={window}]')
  if max_question < 1:
    raise ValueError(f'max_question={max_question} must be positive')
  ids = tokenization.special_ids(tokenizer)
  length = max_question + window + 3
  # Questions on one paragraph share its context: tokenize each once.
  contexts = list(dict.fromkeys(e.context for e in examples))
  encoded = tokenizer.encode_batch(contexts, add_special_tokens=False)
  context_tokens = {
      c: (np.array(e.ids, np.int32),
          np.array(e.offsets, np.int32).reshape(-1, 2))
      for c, e in zip(contexts, encoded)}
  questions = tokenizer.encode_batch([e.question for e in examples],
                                     add_special_tokens=False)

  rows = []  # (example index, question ids, window begin and end, positions)
  for index, (example, question) in enumerate(zip(examples, questions)):
    question_ids = question.ids[:max_question]
    context_ids, offsets = context_tokens[example.context]
    first, last = _answer_tokens(offsets, example)
    count = 1 + max(0, -(-(len(context_ids) - window) // stride))
    for begin in range(0, count * stride, stride):
      end = min(begin + window, len(context_ids))
      if first >= begin and 0 <= last < end:
        shift = len(question_ids) + 2 - begin  # context token -> row position
        start_position, end_position = first + shift, last + shift
      elif train:
        continue
      else:
        start_position = end_position = 0
      rows.append((index, question_ids, begin, end, start_position,
                   end_position))

  n = len(rows)
  features = {
      'tokens': np.full((n, length), ids.pad, np.int32),
      'segments': np.zeros((n, length), np.int32),
      'valid': np.zeros((n, length), bool),
      'offsets': np.full((n, length, 2), -1, np.int32),
      'example_index': np.array([r[0] for r in rows], np.int32),
      'start_positions': np.array([r[4] for r in rows], np.int32),
      'end_positions': np.array([r[5] for r in rows], np.int32),
  }
  for row, (index, question_ids, begin, end, _, _) in enumerate(rows):
    context_ids, offsets = context_tokens[examples[index].context]
    q = len(question_ids) + 2  # the window's first position
    c = q + end - begin  # the final [SEP]'s position
    features['tokens'][row, :c + 1] = [
        ids.cls, *question_ids, ids.sep, *context_ids[begin:end], ids.sep]
    features['segments'][row, q:c + 1] = 1
    features['valid'][row, :c + 1] = True
    features['offsets'][row, q:c] = offsets[begin:end]
  return features


def postprocess(start_logits, end_logits, features: Mapping[str, np.ndarray],
                examples: Sequence[Example], *, max_answer_tokens: int = 30,
                n_best: int = 20) -> dict[str, str]:
  """Each example's answer text: its best span over all of its windows.

  A span is a start and end inside one window's context with
  start <= end < start + max_answer_tokens, scored by start + end logit;
  the candidates are the pairs of each row's `n_best` best starts and ends.
  An example without a valid span gets ''.
  """
  if n_best < 1 or max_answer_tokens < 1:
    raise ValueError(f'n_best={n_best} and max_answer_tokens='
                     f'{max_answer_tokens} must be positive')
  offsets = np.asarray(features['offsets'])
  in_context = offsets[..., 0] >= 0
  start_logits = np.asarray(start_logits, np.float32)
  end_logits = np.asarray(end_logits, np.float32)
  if not start_logits.shape == end_logits.shape == in_context.shape:
    raise ValueError(f'logits {start_logits.shape} and {end_logits.shape} '
                     f'do not match the features {in_context.shape}')
  start_logits = np.where(in_context, start_logits, -np.inf)
  end_logits = np.where(in_context, end_logits, -np.inf)
  k = min(n_best, in_context.shape[1])
  starts = np.argsort(-start_logits, axis=1, kind='stable')[:, :k]
  ends = np.argsort(-end_logits, axis=1, kind='stable')[:, :k]
  scores = (np.take_along_axis(start_logits, starts, 1)[:, :, None] +
            np.take_along_axis(end_logits, ends, 1)[:, None, :])
  span = ends[:, None, :] - starts[:, :, None]  # end - start, [N, k, k]
  scores = np.where((span >= 0) & (span < max_answer_tokens), scores, -np.inf)
  scores = np.nan_to_num(scores.reshape(len(scores), -1), nan=-np.inf)
  best = scores.argmax(1)
  rows = np.arange(len(scores))
  best_score = scores[rows, best]
  best_start, best_end = starts[rows, best // k], ends[rows, best % k]

  predictions = {e.id: '' for e in examples}
  top = {}  # example index -> its best row
  for row, index in enumerate(features['example_index']):
    if np.isfinite(best_score[row]) and (
        index not in top or best_score[row] > best_score[top[index]]):
      top[index] = row
  for index, row in top.items():
    begin = offsets[row, best_start[row], 0]
    end = offsets[row, best_end[row], 1]
    predictions[examples[index].id] = examples[index].context[begin:end]
  return predictions


# DRCD is scored with CMRC 2018's evaluation script (cmrc2018_evaluate.py):
# lowercase, drop punctuation, split into single CJK characters and runs of
# other characters, EM on the joined tokens and F1 from their longest common
# substring. Here full-width forms fold to ASCII (NFKC) and all Unicode and
# ASCII punctuation is dropped (the script lists about 30 marks), since
# neither should decide a match; whitespace separates runs and is dropped.
def _is_cjk(char: str) -> bool:
  """A CJK ideograph: the blocks BERT splits into single characters."""
  code = ord(char)
  return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or
          0x20000 <= code <= 0x2CEAF or 0xF900 <= code <= 0xFAFF or
          0x2F800 <= code <= 0x2FA1F)


def _is_punctuation(char: str) -> bool:
  return (unicodedata.category(char).startswith('P')
          or char in string.punctuation)


def _segments(text: str) -> list[str]:
  """Normalized tokens: single CJK characters and runs of the rest."""
  segments, run = [], ''
  for char in unicodedata.normalize('NFKC', text).lower():
    if _is_punctuation(char):
      continue  # dropped without splitting, as the script does
    if char.isspace() or _is_cjk(char):
      if run:
        segments.append(run)
      run = ''
      if not char.isspace():
        segments.append(char)
    else:
      run += char
  return segments + [run] if run else segments


def _longest_common_substring(a: list[str], b: list[str]) -> int:
  """Length of the longest run of tokens that a and b share."""
  best = 0
  previous = [0] * (len(b) + 1)
  for token in a:
    current = [0] * (len(b) + 1)
    for j, other in enumerate(b):
      if token == other:
        current[j + 1] = previous[j] + 1
        best = max(best, current[j + 1])
    previous = current
  return best


def exact_match(prediction: str, answers: Sequence[str]) -> float:
  """1.0 if the normalized prediction equals any normalized answer."""
  predicted = ''.join(_segments(prediction))
  return float(any(predicted == ''.join(_segments(a)) for a in answers))


def f1(prediction: str, answers: Sequence[str]) -> float:
  """CMRC 2018's F1 against the best of `answers`.

  Precision and recall are the longest common run of tokens' share of the
  prediction's and of the answer's tokens.
  """
  predicted = _segments(prediction)
  scores = [0.0]
  for answer in answers:
    truth = _segments(answer)
    if not predicted or not truth:  # both empty is a match, as in EM
      scores.append(float(predicted == truth))
      continue
    common = _longest_common_substring(truth, predicted)
    if common:
      precision, recall = common / len(predicted), common / len(truth)
      scores.append(2 * precision * recall / (precision + recall))
  return max(scores)


def evaluate(predictions: Mapping[str, str],
             examples: Sequence[Example]) -> dict[str, float]:
  """EM and F1 in percent over `examples`; an unanswered one scores 0."""
  if not examples:
    raise ValueError('no examples to evaluate')
  em = total_f1 = 0.0
  for example in examples:
    if not example.answers:
      raise ValueError(f'example {example.id} has no answers to score against')
    if example.id in predictions:
      em += exact_match(predictions[example.id], example.answers)
      total_f1 += f1(predictions[example.id], example.answers)
  return {'em': 100 * em / len(examples), 'f1': 100 * total_f1 / len(examples),
          'count': len(examples)}
