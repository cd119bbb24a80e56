"""Contracts of lib.layers.transformer and lib.layers.conformer."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.layers import conformer
from lib.layers import transformer

B, T, D, V = 2, 8, 16, 11
LENGTHS = jnp.array([[T], [5]])


def _inputs():
  x = jax.random.normal(jax.random.key(0), (B, T, D))
  valid = jnp.arange(T)[None] < LENGTHS
  return x, valid


def _padding_changes(module, **kwargs):
  """Largest change at real positions when padded positions are rewritten."""
  x, valid = _inputs()
  params = module.init(jax.random.key(1), x, valid=valid, **kwargs)
  out = module.apply(params, x, valid=valid, **kwargs)
  chex.assert_shape(out, (B, T, D))
  chex.assert_tree_all_finite(out)
  noisy = jnp.where(valid[..., None], x, 50.0)
  moved = module.apply(params, noisy, valid=valid, **kwargs)
  return float(jnp.max(jnp.abs(jnp.where(valid[..., None], moved - out, 0))))


@pytest.mark.parametrize('pre_norm', [True, False])
@pytest.mark.parametrize('kind', ['softmax', 'linear', 'linformer'])
def test_encoder_layer_ignores_padded_frames(pre_norm, kind):
  layer = transformer.EncoderLayer(2, 32, attention_kind=kind,
                                   pre_norm=pre_norm, max_length=T)
  assert _padding_changes(layer) < 1e-5


def test_conformer_block_ignores_padded_frames():
  assert _padding_changes(conformer.ConformerBlock(2, 32, kernel_size=5)) < 1e-5


def test_post_norm_outputs_are_normalised_and_pre_norm_are_not():
  x, valid = _inputs()
  for pre_norm, normalised in ((False, True), (True, False)):
    layer = transformer.EncoderLayer(2, 32, pre_norm=pre_norm)
    out = layer.apply(layer.init(jax.random.key(1), x), 3.0 * x)
    std = np.asarray(jnp.std(out, -1))
    assert np.allclose(std, 1.0, atol=1e-2) == normalised


def test_sinusoidal_positions_known_values_and_offset():
  table = transformer.sinusoidal_positions(6, 4)
  chex.assert_shape(table, (6, 4))
  expected_row = [np.sin(3), np.cos(3), np.sin(3 / 100), np.cos(3 / 100)]
  np.testing.assert_allclose(table[3], expected_row, rtol=1e-5)
  np.testing.assert_allclose(transformer.sinusoidal_positions(2, 4, offset=3),
                             table[3:5], rtol=1e-5)


def _decoder(**kwargs):
  return transformer.Decoder(num_layers=2, vocab_size=V, d_model=D,
                             num_heads=2, ff_dim=32, max_length=T, **kwargs)


@pytest.mark.parametrize('positions', ['sinusoidal', 'learned'])
def test_decoder_is_causal(positions):
  decoder = _decoder(positions=positions)
  tokens = jax.random.randint(jax.random.key(2), (B, T), 0, V)
  params = decoder.init(jax.random.key(1), tokens)
  logits = decoder.apply(params, tokens)
  chex.assert_shape(logits, (B, T, V))
  later = tokens.at[:, 5].set((tokens[:, 5] + 1) % V)
  moved = decoder.apply(params, later)
  np.testing.assert_allclose(moved[:, :5], logits[:, :5], atol=1e-5)
  assert float(jnp.max(jnp.abs(moved[:, 5:] - logits[:, 5:]))) > 1e-4


def test_tied_embeddings_are_the_output_projection():
  decoder = _decoder()
  tokens = jnp.zeros((B, T), jnp.int32)
  params = decoder.init(jax.random.key(1), tokens)['params']
  assert 'logits' not in params
  untied = _decoder(tie_embeddings=False).init(jax.random.key(1), tokens)
  chex.assert_shape(untied['params']['logits']['kernel'], (D, V))
  # Scaling one embedding row scales that token's logit at every position.
  table = params['embed']['embedding']
  scaled = {**params, 'embed': {'embedding': table.at[3].multiply(2.0)}}
  x = decoder.apply({'params': params}, tokens)
  y = decoder.apply({'params': scaled}, tokens)
  other = np.delete(np.arange(V), 3)
  np.testing.assert_allclose(x[..., other], y[..., other], atol=1e-5)
  np.testing.assert_allclose(y[..., 3], 2 * x[..., 3], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('with_memory', [False, True])
def test_cached_decoding_equals_the_full_pass(with_memory):
  tokens = jax.random.randint(jax.random.key(2), (B, T), 0, V)
  memory, memory_valid = _inputs() if with_memory else (None, None)
  full = _decoder()
  params = full.init(jax.random.key(1), tokens, memory,
                     memory_valid=memory_valid)
  expected = full.apply(params, tokens, memory, memory_valid=memory_valid)
  cached = _decoder(decode=True)
  cache = cached.init(jax.random.key(1), tokens, memory,
                      memory_valid=memory_valid)['cache']

  @jax.jit
  def step(cache, token):
    logits, variables = cached.apply(
        {'params': params['params'], 'cache': cache}, token[:, None], memory,
        memory_valid=memory_valid, mutable=['cache'])
    return variables['cache'], logits[:, 0]

  steps = []
  for t in range(T):
    cache, logits = step(cache, tokens[:, t])
    steps.append(logits)
  np.testing.assert_allclose(jnp.stack(steps, 1), expected, atol=1e-4)


def test_encoder_stack_shapes_and_padding():
  encoder = transformer.Encoder(num_layers=2, vocab_size=V, d_model=D,
                                num_heads=2, ff_dim=32)
  tokens = jax.random.randint(jax.random.key(2), (B, T), 0, V)
  _, valid = _inputs()
  params = encoder.init(jax.random.key(1), tokens, valid=valid)
  out = encoder.apply(params, tokens, valid=valid)
  chex.assert_shape(out, (B, T, D))
  repadded = jnp.where(valid, tokens, 0)
  moved = encoder.apply(params, repadded, valid=valid)
  np.testing.assert_allclose(jnp.where(valid[..., None], moved, 0),
                             jnp.where(valid[..., None], out, 0), atol=1e-5)
