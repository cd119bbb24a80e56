"""HW7's BERT-against-GPT: the GPT's causal contracts, its prompts, a run."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import mesh as mesh_lib
from lib.errors import ConfigError
from projects.bert import config as config_lib
from projects.bert import gpt
from projects.bert import model as model_lib
from projects.bert import tasks
from projects.bert import train


def test_token_log_likelihoods_and_next_token_metrics_known_answers():
  vocab = 7
  tokens = jnp.array([[1, 2, 3, 0]])
  valid = jnp.array([[True, True, True, False]])
  uniform = jnp.zeros((1, 4, vocab))
  np.testing.assert_allclose(gpt.token_log_likelihoods(uniform, tokens),
                             [[0, -np.log(vocab), -np.log(vocab),
                               -np.log(vocab)]], rtol=1e-6)
  # Certain of the right next token at positions 0 and 1: the padding's
  # target (position 2 predicting 0) does not count.
  sure = uniform.at[0, 0, 2].set(50.0).at[0, 1, 3].set(50.0)
  loss, accuracy = gpt.next_token_metrics(sure, tokens, valid)
  np.testing.assert_allclose(loss, [0.0], atol=1e-6)
  np.testing.assert_allclose(accuracy, [1.0])
  wrong = uniform.at[0, 1, 4].set(50.0)
  loss, accuracy = gpt.next_token_metrics(wrong, tokens, valid)
  np.testing.assert_allclose(accuracy, [0.0])
  np.testing.assert_allclose(loss, [(np.log(vocab) + 50.0) / 2], rtol=1e-3)


def _tiny_config(vocab_size=30):
  return model_lib.BertConfig(vocab_size=vocab_size, hidden=16, num_layers=2,
                              num_heads=2, ff_dim=32, max_length=12,
                              dropout=0.0, attention_dropout=0.0)


def test_gpt_is_causal_and_its_head_reads_the_last_valid_token():
  model = gpt.GPTClassifier(_tiny_config(), num_labels=3)
  tokens = jax.random.randint(jax.random.key(0), (2, 12), 5, 30)
  params = model.init(jax.random.key(1), tokens)['params']
  out = model.apply({'params': params}, tokens)
  chex.assert_shape(out['logits'], (2, 12, 30))
  chex.assert_shape(out['class_logits'], (2, 3))
  chex.assert_tree_all_finite(out)
  # Later tokens never change earlier positions' predictions.
  changed = tokens.at[:, 7:].set(4)
  later = model.apply({'params': params}, changed)['logits']
  np.testing.assert_allclose(later[:, :7], out['logits'][:, :7], atol=1e-5)
  assert not np.allclose(later[:, 7:], out['logits'][:, 7:])
  # The head reads position valid - 1: padding after it changes nothing.
  valid = jnp.arange(12)[None] < jnp.array([[7], [12]])
  head = model.apply({'params': params}, changed, valid)['class_logits']
  short = model.apply({'params': params}, tokens[:, :7])['class_logits']
  np.testing.assert_allclose(head[0], short[0], atol=1e-5)
  full = model.apply({'params': params}, changed)['class_logits']
  np.testing.assert_allclose(head[1], full[1], atol=1e-5)


def test_prompt_scores_sum_the_span_log_likelihoods():
  """Both models score exactly the tokens in [score_from, score_to): GPT
  from the tokens before each, BERT with the whole span masked."""
  config = _tiny_config()
  tokens = jax.random.randint(jax.random.key(2), (2, 12), 5, 30)
  batch = {'tokens': tokens, 'valid': jnp.arange(12)[None] < 10,
           'score_from': jnp.array([6, 3]), 'score_to': jnp.array([9, 5])}
  span = [np.arange(6, 9), np.arange(3, 5)]
  decoder = gpt.GPTClassifier(config)
  params = decoder.init(jax.random.key(1), tokens)['params']
  log_probs = jax.nn.log_softmax(decoder.apply({'params': params}, tokens,
                                               batch['valid'])['logits'])
  expected = [sum(log_probs[r, t - 1, tokens[r, t]] for t in span[r])
              for r in range(2)]
  np.testing.assert_allclose(gpt.gpt_scores(decoder)(params, batch),
                             expected, rtol=1e-5)
  bert = model_lib.Bert(config, head='pretraining')
  params = bert.init(jax.random.key(1), tokens)['params']
  expected = []
  for r in range(2):
    masked = tokens[r:r + 1].at[0, span[r]].set(4)
    out = bert.apply({'params': params}, masked, valid=batch['valid'])
    log_probs = jax.nn.log_softmax(out['mlm_logits'][0])
    expected.append(sum(log_probs[t, tokens[r, t]] for t in span[r]))
  scores = gpt.bert_scores(bert, mask_id=4)(params, batch)
  np.testing.assert_allclose(scores, expected, rtol=1e-5)


def _few_shot(tmp_path, **pretrain):
  config = config_lib.get_config('few_shot')
  config.data.update(num_documents=1500, num_test=150)
  config.model.update(hidden=32, num_layers=1, ff_dim=64)
  config.pretrain.update(num_instances=3000, **pretrain)
  config.num_devices = 1  # batches of 3 labels
  config.plots = False
  task = tasks.load(config)
  tokenizer = train.make_tokenizer(config, str(tmp_path),
                                   task.tokenizer_texts())
  return config, task, tokenizer


def test_prompt_features_score_the_value_and_its_full_stop(tmp_path):
  config, task, tokenizer = _few_shot(tmp_path)
  features = gpt.prompt_features(tokenizer, task.test, config.data.max_length)
  num = len(task.test['label'])
  chex.assert_shape(features['tokens'], (3 * num, config.data.max_length))
  for row in range(0, 3 * num, 40):
    value = task.test['value'][row // 3]
    span = features['tokens'][row, features['score_from'][row]:
                              features['score_to'][row]]
    assert list(span) == tokenizer.encode(f'{value} .',
                                          add_special_tokens=False).ids
    assert tokenizer.id_to_token(int(span[-1])) == '.'
    assert features['tokens'][row, features['score_to'][row]] == (
        tokenizer.token_to_id('[SEP]'))
  # The three wordings of an example end alike: only the kind's words differ.
  ends = [tuple(features['tokens'][r, features['score_from'][r]:
                                   features['score_to'][r]])
          for r in range(3)]
  assert len(set(ends)) == 1
  with pytest.raises(ValueError, match='longer than data.max_length=8'):
    gpt.prompt_features(tokenizer, task.test, 8)


def test_gpt_config_needs_the_kind_task_and_pretraining():
  config = config_lib.get_config('embedded')
  config.gpt = True
  with pytest.raises(ConfigError, match="config.gpt needs config.task='kind'"):
    config_lib.validate(config)


def test_pretrained_gpt_prompted_zero_shot_tells_the_held_out_words_kinds(
    tmp_path):
  """Pretraining on the world's paragraphs alone (no label) lets the prompt
  tell the kinds of words no label ever showed; at initialisation it is
  chance. (300 steps: 0.95-1.0 over seeds 0-2; 150 steps still gave chance.)"""
  config, task, tokenizer = _few_shot(tmp_path, num_steps=300,
                                      learning_rate=1e-2, warmup_steps=30)
  # One held-out evaluation, and batches of 30 to score (no fine-tuning).
  config.update(eval_every=300, batch_size=30)
  mesh = mesh_lib.make_mesh(config.num_devices)
  bert_config = train.encoder_config(config, tokenizer)
  params, metrics = gpt.pretrain(config, str(tmp_path), bert_config,
                                 tokenizer, task.documents, mesh)
  assert metrics['val/next_token_accuracy'] > 0.5
  model = gpt.GPTClassifier(bert_config)
  prompts = gpt.prompt_features(tokenizer, task.test, config.data.max_length)
  accuracy = lambda p: gpt.prompted_accuracy(
      gpt.gpt_scores(model), p, prompts, task.test['label'],
      config.batch_size, mesh)
  assert accuracy(params) > 0.8
  init = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))['params']
  assert accuracy(init) < 0.6
