"""Attention: each variant against a naive reference; masks, causality, cache, prefix, LoRA."""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.layers import attention

B, T, N, H, D = 2, 7, 2, 4, 8


def _qkv(seed=0, length=T):
  keys = jax.random.split(jax.random.key(seed), 3)
  return [jax.random.normal(k, (B, length, N, H)) for k in keys]


def _naive(q, k, v, mask):
  logits = np.einsum('btnh,bsnh->bnts', q, k) / np.sqrt(q.shape[-1])
  logits = np.where(np.broadcast_to(mask, logits.shape), logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum('bnts,bsnh->btnh', weights, v), weights


def test_masks_compose():
  chex.assert_shape(attention.causal_mask(4), (1, 1, 4, 4))
  np.testing.assert_array_equal(attention.causal_mask(3)[0, 0],
                                [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
  local = attention.local_mask(5, window=1)[0, 0]
  assert local[2].tolist() == [False, True, True, True, False]
  strided = attention.strided_mask(5, stride=2)[0, 0]
  assert strided[4].tolist() == [True, False, True, False, True]
  glob = attention.global_mask(4, tokens=[0])[0, 0]
  assert glob[:, 0].all() and glob[0].all() and not glob[2, 3]
  both = attention.all_of(attention.causal_mask(5),
                          attention.any_of(attention.local_mask(5, window=1),
                                           attention.global_mask(5, tokens=[0])))
  assert both[0, 0, 4].tolist() == [True, False, False, True, True]
  assert attention.causal_mask(2, 5, offset=3)[0, 0, 0].tolist() == [
      True, True, True, True, False]


@pytest.mark.parametrize('mask_name', ['none', 'padding', 'causal', 'local',
                                       'strided', 'global'])
def test_softmax_matches_naive_and_masked_weights_are_zero(mask_name):
  q, k, v = _qkv()
  valid = jnp.arange(T)[None, :] < jnp.array([[T], [4]])
  mask = {'none': jnp.ones((1, 1, T, T), bool),
          'padding': attention.padding_mask(valid),
          'causal': attention.causal_mask(T),
          'local': attention.local_mask(T, window=2),
          'strided': attention.strided_mask(T, stride=3),
          'global': attention.any_of(attention.global_mask(T, tokens=[0, 5]),
                                     attention.local_mask(T, window=0))}[
                                         mask_name]
  expected, weights = _naive(np.asarray(q), np.asarray(k), np.asarray(v),
                             np.asarray(mask))
  out = attention.softmax_attention(q, k, v, mask)
  np.testing.assert_allclose(out, expected, atol=1e-5)
  ours = attention.attention_weights(q, k, mask)
  np.testing.assert_allclose(ours, weights, atol=1e-6)
  assert np.all(np.asarray(ours)[~np.broadcast_to(mask, ours.shape)] == 0.0)


def _linear_naive(q, k, v, valid, causal):
  phi = lambda x: np.where(x > 0, x + 1, np.exp(x))
  q, k = phi(np.asarray(q)), phi(np.asarray(k))
  scores = np.einsum('btnh,bsnh->bnts', q, k)
  scores = scores * np.asarray(valid)[:, None, None, :]
  if causal:
    scores = scores * np.tril(np.ones((T, T)))
  return np.einsum('bnts,bsnh->btnh', scores / scores.sum(-1, keepdims=True),
                   np.asarray(v))


@pytest.mark.parametrize('causal', [False, True])
def test_linear_attention_matches_its_quadratic_form(causal):
  q, k, v = _qkv(1)
  valid = jnp.arange(T)[None, :] < jnp.array([[T], [5]])
  out = attention.linear_attention(q, k, v, key_valid=valid, causal=causal)
  np.testing.assert_allclose(out, _linear_naive(q, k, v, valid, causal),
                             rtol=1e-4, atol=1e-5)


def _module(kind, **kwargs):
  return attention.MultiHeadAttention(num_heads=N, head_dim=H, kind=kind,
                                      max_length=16, linformer_rows=16,
                                      **kwargs)


def _x(seed=0, length=T):
  return jax.random.normal(jax.random.key(seed), (B, length, D))


@pytest.mark.parametrize('kind', attention.KINDS)
def test_padded_keys_do_not_matter(kind):
  model = _module(kind)
  x = _x()
  valid = jnp.arange(T)[None, :] < 5
  params = model.init(jax.random.key(0), x, key_valid=valid)
  out = model.apply(params, x, key_valid=valid)
  chex.assert_shape(out, (B, T, D))
  chex.assert_tree_all_finite(out)
  changed = x.at[:, 5:].add(10.0)
  np.testing.assert_allclose(
      model.apply(params, changed, key_valid=valid)[:, :5], out[:, :5],
      atol=1e-5)


@pytest.mark.parametrize('kind', [k for k in attention.KINDS
                                  if 'causal' in attention.SUPPORTS[k]])
def test_causal_outputs_never_see_the_future(kind):
  model = _module(kind)
  x = _x()
  params = model.init(jax.random.key(0), x, causal=True)
  out = model.apply(params, x, causal=True)
  later = x.at[:, 4].add(5.0)
  changed = model.apply(params, later, causal=True)
  np.testing.assert_allclose(changed[:, :4], out[:, :4], atol=1e-5)
  assert not np.allclose(changed[:, 4:], out[:, 4:])


def test_linformer_cannot_be_causal():
  model = _module('linformer')
  x = _x()
  params = model.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='cannot be causal'):
    model.apply(params, x, causal=True)


def test_linformer_with_identity_projection_is_softmax_attention():
  x = _x()
  lin = attention.MultiHeadAttention(num_heads=N, head_dim=H, kind='linformer',
                                     max_length=T, linformer_rows=T)
  soft = _module('softmax')
  params = flax.core.unfreeze(lin.init(jax.random.key(0), x))
  params['params']['linformer_e'] = jnp.eye(T)
  soft_params = {'params': {k: v for k, v in params['params'].items()
                            if k != 'linformer_e'}}
  np.testing.assert_allclose(lin.apply(params, x), soft.apply(soft_params, x),
                             atol=1e-5)


def test_cached_decoding_equals_a_full_causal_pass():
  model, decoder = _module('softmax'), _module('softmax', decode=True)
  x = _x(3)
  params = model.init(jax.random.key(0), x, causal=True)
  full = model.apply(params, x, causal=True)
  cache = decoder.init(jax.random.key(0), x)['cache']
  outputs = []
  for t in range(T):
    out, mutated = decoder.apply({**params, 'cache': cache}, x[:, t:t + 1],
                                 causal=True, mutable=['cache'])
    cache = mutated['cache']
    outputs.append(out)
  np.testing.assert_allclose(jnp.concatenate(outputs, 1), full, atol=1e-5)


def test_prefix_keys_and_values_are_attended():
  model = _module('softmax')
  x = _x()
  params = model.init(jax.random.key(0), x)
  pk, pv = (jax.random.normal(jax.random.key(s), (1, 3, N, H)) for s in (1, 2))
  out = model.apply(params, x, prefix=(pk, pv), causal=True)
  p = params['params']
  proj = lambda name: jnp.einsum('btd,dnh->btnh', x, p[name]['kernel']) + p[
      name]['bias']
  k = jnp.concatenate([jnp.broadcast_to(pk, (B, 3, N, H)), proj('key')], 1)
  v = jnp.concatenate([jnp.broadcast_to(pv, (B, 3, N, H)), proj('value')], 1)
  mask = jnp.concatenate([jnp.ones((1, 1, T, 3), bool),
                          attention.causal_mask(T)], -1)
  expected, _ = _naive(np.asarray(proj('query')), np.asarray(k), np.asarray(v),
                       np.asarray(mask))
  expected = expected.reshape(B, T, N * H) @ p['out']['kernel'] + p['out'][
      'bias']
  np.testing.assert_allclose(out, expected, atol=1e-4)


def test_lora_starts_as_the_plain_layer_and_learns_a_low_rank_update():
  lora = lambda features, name: attention.LoRADense(features, rank=2,
                                                    name=name)
  model, plain = _module('softmax', projection=lora), _module('softmax')
  x = _x()
  params = model.init(jax.random.key(0), x)
  base = {'params': {name: layer['base'] for name, layer in
                     params['params'].items()}}
  np.testing.assert_allclose(model.apply(params, x), plain.apply(base, x),
                             atol=1e-6)
  chex.assert_shape(params['params']['query']['lora_a'], (D, 2))
  chex.assert_shape(params['params']['query']['lora_b'], (2, N, H))
  grads = jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))(params)
  assert float(jnp.abs(grads['params']['query']['lora_b']).sum()) > 0
