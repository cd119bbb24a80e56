"""projects/bert analysis (layer probes, attention maps) and the
word-substitution attack, on a tiny random Bert and hand-made classifiers."""

import re

import chex
import jax
import numpy as np
import pytest

from projects.bert import analysis
from projects.bert import attack
from projects.bert import model
from projects.bert import tokenization

SENTENCES = ['the film is good .', 'the film is bad .',
             'the play is fine and the food is great .',
             'a good day for a walk in the park .', 'the cat sat on the mat .']
LENGTH = 16


@pytest.fixture(scope='module')
def tokenizer():
  return tokenization.train_wordpiece(SENTENCES * 3, 200, min_frequency=1)


@pytest.fixture(scope='module')
def bert(tokenizer):
  """A tiny classifier Bert and normal(0, 0.5) parameters (from NumPy: an
  init compiles every initialiser)."""
  config = model.BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden=16,
                            num_layers=2, num_heads=2, ff_dim=32,
                            max_length=LENGTH)
  bert = model.Bert(config, head='classification')
  shapes = jax.eval_shape(bert.init, jax.random.key(0),
                          np.zeros((1, LENGTH), np.int32))['params']
  rng = np.random.default_rng(0)
  return bert, jax.tree.map(
      lambda s: rng.normal(0.0, 0.5, s.shape).astype(s.dtype), shapes)


def test_layer_features_pool_every_hidden_state(tokenizer, bert):
  bert, params = bert
  inputs = tokenization.encode_batch(tokenizer, SENTENCES, LENGTH)
  hidden = np.stack(jax.jit(bert.apply)(
      {'params': params}, inputs['tokens'], inputs['segments'],
      inputs['valid'])['hidden_states'])
  # Batches of 2: the last one is padded, and rows must come back in order.
  # Another split of the same shapes compiles nothing new.
  compiled = analysis._pooled_hidden_states._cache_size()
  cls = analysis.layer_features(bert, params, inputs, 'cls', batch_size=2)
  mean = analysis.layer_features(bert, params, inputs, 'mean', batch_size=2)
  analysis.layer_features(bert, params, inputs, 'cls', batch_size=2)
  assert analysis._pooled_hidden_states._cache_size() == compiled + 2
  chex.assert_shape([cls, mean], (3, len(SENTENCES), 16))
  chex.assert_trees_all_close(cls, hidden[:, :, 0], atol=1e-5)
  valid = inputs['valid'][None, :, :, None]
  chex.assert_trees_all_close(
      mean, (hidden * valid).sum(2) / valid.sum(2), atol=1e-5)
  with pytest.raises(ValueError, match='pooling'):
    analysis.layer_features(bert, params, inputs, 'max')


def test_probe_finds_the_layer_that_carries_the_label():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 400)
  features = rng.normal(size=(2, 400, 8))
  features[1, :, 3] += 3.0 * labels  # layer 1 carries the label
  noise, signal = analysis.probe_layers(features[:, :200], labels[:200],
                                        features[:, 200:], labels[200:])
  assert signal > 0.9
  assert abs(noise - 0.5) < 0.1


def test_attention_maps_and_plot(tokenizer, bert, tmp_path):
  bert, params = bert
  inputs = tokenization.encode_batch(tokenizer, SENTENCES[:1], LENGTH)
  tokens, segments, valid = (inputs[k][0] for k in
                             ('tokens', 'segments', 'valid'))
  assert 0 < valid.sum() < LENGTH  # the example has padding
  maps = analysis.attention_maps(bert, params, tokens, segments, valid)
  chex.assert_shape(maps, (2, 2, LENGTH, LENGTH))
  chex.assert_trees_all_close(maps.sum(-1), np.ones((2, 2, LENGTH)),
                              atol=1e-5)
  assert np.all(maps[..., ~valid] == 0) and np.all(maps[..., valid] > 0)
  path = tmp_path / 'attention.png'
  strings = tokenizer.encode(SENTENCES[0]).tokens
  analysis.plot_attention(maps, strings, str(path), layers=[1])
  assert path.read_bytes()[:4] == b'\x89PNG'


def test_candidates_are_cosine_neighbours_among_whole_words():
  vocab = {'[PAD]': 0, '[UNK]': 1, '[CLS]': 2, '[SEP]': 3, '[MASK]': 4,
           'cat': 5, 'dog': 6, 'car': 7, 'bus': 8, '##s': 9, '.': 10}
  embeddings = np.zeros((11, 2), np.float32)
  embeddings[:5] = embeddings[9:] = [1.0, 0.0]  # cat's direction: excluded
  # Nearest to cat by cosine: dog, bus, car; by dot product bus comes first,
  # by distance car.
  embeddings[5:9] = [[1.0, 0.0], [10.0, 1.0], [0.5, 0.6], [20.0, 15.0]]
  candidates = attack.substitution_candidates(embeddings, vocab, k=2)
  assert set(candidates) == {5, 6, 7, 8}
  assert candidates[5] == [6, 8]
  assert candidates[7] == [8, 6]
  assert all(word not in near for word, near in candidates.items())
  assert attack.substitution_candidates(embeddings, vocab, k=9)[5] == [6, 8, 7]


def _keyed(word: str, calls: list | None = None):
  """P(label 1) = 0.9 if `word` is in the text, else 0.1."""
  def predict_fn(texts):
    if calls is not None:
      calls.append(list(texts))
    has = np.array([word in re.findall(r'\w+', t.lower()) for t in texts])
    return np.stack([0.1 + 0.8 * ~has, 0.1 + 0.8 * has], 1)
  return predict_fn


def _ids(tokenizer, mapping):
  return {tokenizer.token_to_id(w): [tokenizer.token_to_id(c) for c in near]
          for w, near in mapping.items()}


def test_attack_flips_a_classifier_keyed_on_a_word(tokenizer):
  texts = ['The film is GOOD.', 'a good day for a walk', 'the film is bad .']
  candidates = _ids(tokenizer, {'good': ['great', 'bad'], 'bad': ['good']})
  calls = []
  result = attack.attack(_keyed('good', calls), tokenizer, texts, [1, 1, 0],
                         candidates)
  assert result['attacked'] == 3 and result['success_rate'] == 1.0
  assert result['examples'][0] == ('The film is GOOD.', 'The film is great.')
  assert result['examples'][2] == ('the film is bad .', 'the film is good .')
  # One call for the texts, then per text one for the deletions and one per
  # word tried, holding all of that word's candidates.
  assert len(calls) == 1 + 3 * 2 and calls[2] == ['The film is great.',
                                                  'The film is bad.']


def test_attack_fails_where_no_candidate_changes_the_prediction(tokenizer):
  texts = ['the film is good .', 'the film is good for a walk']
  candidates = _ids(tokenizer, {'good': ['good'], 'film': ['play'],
                                'walk': ['park']})
  calls = []
  result = attack.attack(_keyed('good', calls), tokenizer, texts, [1, 1],
                         candidates)
  assert result == {'success_rate': 0.0, 'attacked': 2, 'examples': []}
  # Every word was tried, and one that did not help was not kept.
  assert calls[-1] == ['the film is good for a park']
  assert not any('play' in t and 'park' in t for c in calls for t in c)


@pytest.mark.parametrize('max_substitutions', [2, 4, 5])
def test_attack_changes_at_most_max_substitutions_words(tokenizer,
                                                        max_substitutions):
  """Each 'cat' lowers P(label 1) by 0.1 from 0.95: five flip the label."""
  text = 'the film is good and the food is great and the play is fine'
  queried = []

  def predict_fn(texts):
    queried.extend(t for t in texts if len(t.split()) == 14)
    cats = np.array([t.split().count('cat') for t in texts])
    return np.stack([0.05 + 0.1 * cats, 0.95 - 0.1 * cats], 1)

  words = ['film', 'good', 'food', 'great', 'play', 'fine']
  result = attack.attack(predict_fn, tokenizer, [text], [1],
                         _ids(tokenizer, {w: ['mat', 'cat'] for w in words}),
                         max_substitutions=max_substitutions)
  assert max(t.split().count('cat') for t in queried) <= max_substitutions
  assert result['success_rate'] == float(max_substitutions == 5)
  if max_substitutions == 5:
    adversarial = result['examples'][0][1].split()
    assert sum(a != b for a, b in zip(adversarial, text.split())) == 5


def test_classifier_predict_fn_is_the_models_softmax(tokenizer, bert):
  bert, params = bert
  predict_fn = attack.classifier_predict_fn(bert, params, tokenizer, LENGTH,
                                            batch_size=2)
  inputs = tokenization.encode_batch(tokenizer, SENTENCES, LENGTH)
  logits = jax.jit(bert.apply)({'params': params}, inputs['tokens'],
                               inputs['segments'], inputs['valid'])['logits']
  chex.assert_trees_all_close(predict_fn(SENTENCES), jax.nn.softmax(logits),
                              atol=1e-5)
