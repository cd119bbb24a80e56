"""Multi-head attention with composable masks, and the lecture's efficient variants.

Shapes: queries [B, T, N, H], keys and values [B, S, N, H] (N heads of H
features); masks are boolean, True where a query may attend to a key, and
broadcast to [B, N, T, S]. Compose them with `all_of` (every part allows) and
`any_of` (one part allows, e.g. BigBird's local | global | random).

Variants (`MultiHeadAttention.kind`) and the masks each supports:
  softmax             any mask (jax.nn.dot_product_attention; cuDNN on GPU
                      where the dtype and mask allow)
  linear              padding and causal (kernel feature map elu + 1, O(n))
  linformer           padding only: keys and values are projected to k rows
                      along the sequence, so no query-key pair survives to be
                      masked (it cannot be causal)
  synthesizer_dense   any mask (weights from each query token by an MLP)
  synthesizer_random  any mask (a learned [N, T, S] weight table)
"""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

KINDS = ('softmax', 'linear', 'linformer', 'synthesizer_dense',
         'synthesizer_random')
# Which masks each kind can apply.
SUPPORTS = {
    'softmax': ('padding', 'causal', 'local', 'strided', 'global'),
    'linear': ('padding', 'causal'),
    'linformer': ('padding',),
    'synthesizer_dense': ('padding', 'causal', 'local', 'strided', 'global'),
    'synthesizer_random': ('padding', 'causal', 'local', 'strided', 'global'),
}
_NEG = -1e30


# Masks: boolean [B or 1, 1, T, S].

def padding_mask(key_valid: jax.Array) -> jax.Array:
  """Keys where `key_valid` [B, S] is true."""
  return key_valid[:, None, None, :].astype(bool)


def _positions(length_q: int, length_k: int, offset: int):
  rows = jnp.arange(length_q)[:, None] + offset
  return rows, jnp.arange(length_k)[None, :]


def causal_mask(length_q: int, length_k: int | None = None,
                offset: int = 0) -> jax.Array:
  """Query i (at position offset + i) sees keys up to its own position."""
  rows, cols = _positions(length_q, length_k or length_q, offset)
  return (cols <= rows)[None, None]


def local_mask(length_q: int, length_k: int | None = None, *, window: int,
               offset: int = 0) -> jax.Array:
  """Truncated attention: keys within `window` positions of the query."""
  rows, cols = _positions(length_q, length_k or length_q, offset)
  return (jnp.abs(rows - cols) <= window)[None, None]


def strided_mask(length_q: int, length_k: int | None = None, *, stride: int,
                 offset: int = 0) -> jax.Array:
  """Keys a multiple of `stride` positions away (Sparse Transformer's strided)."""
  rows, cols = _positions(length_q, length_k or length_q, offset)
  return ((rows - cols) % stride == 0)[None, None]


def global_mask(length_q: int, length_k: int | None = None, *,
                tokens: Sequence[int], offset: int = 0) -> jax.Array:
  """Global tokens see every key, and every query sees them (Longformer)."""
  rows, cols = _positions(length_q, length_k or length_q, offset)
  tokens = jnp.asarray(tokens)
  is_row = jnp.isin(rows, tokens)
  is_col = jnp.isin(cols, tokens)
  return (is_row | is_col)[None, None]


def all_of(*masks) -> jax.Array | None:
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  out = masks[0]
  for m in masks[1:]:
    out = out & m
  return out


def any_of(*masks) -> jax.Array:
  out = masks[0]
  for m in masks[1:]:
    out = out | m
  return out


# Attention functions.

def softmax_attention(q, k, v, mask=None, *, implementation=None):
  """softmax(q k^T / sqrt(H) masked) v on jax.nn.dot_product_attention."""
  return jax.nn.dot_product_attention(q, k, v, mask=mask,
                                      implementation=implementation)


def attention_weights(q, k, mask=None) -> jax.Array:
  """[B, N, T, S] softmax weights, masked keys exactly zero (for plots, tests)."""
  logits = jnp.einsum('btnh,bsnh->bnts', q, k) / jnp.sqrt(q.shape[-1])
  return _masked_softmax(logits, mask)


def _masked_softmax(logits, mask):
  logits = logits.astype(jnp.float32)
  if mask is None:
    return jax.nn.softmax(logits, axis=-1)
  mask = jnp.broadcast_to(mask, logits.shape)
  weights = jax.nn.softmax(jnp.where(mask, logits, _NEG), axis=-1)
  return jnp.where(mask, weights, 0.0)


def _feature_map(x):
  return jax.nn.elu(x) + 1.0


def linear_attention(q, k, v, *, key_valid=None, causal: bool = False):
  """Katharopoulos et al.'s linear attention: phi(q) (phi(k)^T v), O(T) time.

  `key_valid` [B, S] drops padded keys; `causal` uses prefix sums (T == S).
  """
  q, k = _feature_map(q.astype(jnp.float32)), _feature_map(k.astype(jnp.float32))
  v = v.astype(jnp.float32)
  if key_valid is not None:
    k = k * key_valid[:, :, None, None]
  if causal:
    kv = jnp.cumsum(jnp.einsum('bsnh,bsnd->bsnhd', k, v), axis=1)
    norm = jnp.cumsum(k, axis=1)
    out = jnp.einsum('btnh,btnhd->btnd', q, kv)
    denom = jnp.einsum('btnh,btnh->btn', q, norm)
  else:
    kv = jnp.einsum('bsnh,bsnd->bnhd', k, v)
    out = jnp.einsum('btnh,bnhd->btnd', q, kv)
    denom = jnp.einsum('btnh,bnh->btn', q, k.sum(axis=1))
  return out / jnp.maximum(denom, 1e-6)[..., None]


class LoRADense(nn.Module):
  """A dense layer plus a trainable low-rank update, B A x * alpha / rank.

  Freeze 'kernel' and 'bias' (an optax mask on their names) to fine-tune only
  'lora_a' and 'lora_b'; 'lora_b' starts at zero, so the layer starts as the
  plain one.
  """
  features: Sequence[int]
  rank: int = 8
  alpha: float = 16.0

  @nn.compact
  def __call__(self, x):
    features = tuple(self.features)
    base = nn.DenseGeneral(features, name='base')(x)
    a = self.param('lora_a', nn.initializers.normal(1.0 / self.rank),
                   (x.shape[-1], self.rank))
    b = self.param('lora_b', nn.initializers.zeros,
                   (self.rank, *features))
    out_letters = 'fgh'[:len(features)]
    low = jnp.einsum(f'...i,ir,r{out_letters}->...{out_letters}', x, a, b)
    return base + low * (self.alpha / self.rank)


def tokenwise(layer: Callable, x: jax.Array) -> jax.Array:
  """`layer` (a dense map of the last axis) applied to x [..., d] as one
  [N, d] matrix. Same parameters and values; XLA's CPU backward of a dense
  layer contracting several leading axes runs about twice as slow."""
  y = layer(x.reshape(-1, x.shape[-1]))
  return y.reshape(*x.shape[:-1], *y.shape[1:])


def dense_projection(features, name):
  return nn.DenseGeneral(features, name=name)


class MultiHeadAttention(nn.Module):
  """Multi-head attention of one of `KINDS`, with prefix keys and a KV cache.

  `projection(features, name)` builds the q/k/v/out projections: pass a
  factory of `LoRADense` or an adapter-wrapped layer to adapt a pretrained
  model. `prefix` ((keys, values), each [B or 1, P, N, H]) prepends learned
  keys and values that every query may attend to (prefix tuning). With
  `decode=True` the module keeps a 'cache' collection of past keys and values
  (initialise it with an input of the full length) and attends causally from
  the cache's position. Applied with mutable=['intermediates'], the softmax
  and synthesizer kinds sow their [B, N, T, S] weights as 'attention_weights'
  (for attention-map plots).
  """
  num_heads: int
  head_dim: int
  kind: str = 'softmax'
  max_length: int = 512  # linformer and synthesizer tables
  linformer_rows: int = 64
  dropout: float = 0.0
  projection: Callable = dense_projection
  implementation: str | None = None  # 'cudnn' on GPU, None for XLA
  decode: bool = False

  @nn.compact
  def __call__(self, inputs_q, inputs_kv=None, *, mask=None, key_valid=None,
               causal: bool = False, prefix=None, train: bool = False):
    if self.kind not in KINDS:
      raise ValueError(f'attention kind {self.kind!r}: choose one of {KINDS}')
    inputs_kv = inputs_q if inputs_kv is None else inputs_kv
    shape = (self.num_heads, self.head_dim)
    q = tokenwise(self.projection(shape, 'query'), inputs_q)
    k = tokenwise(self.projection(shape, 'key'), inputs_kv)
    v = tokenwise(self.projection(shape, 'value'), inputs_kv)
    offset = 0
    if self.decode:
      k, v, offset, cache_valid = self._cached(k, v)
      key_valid = cache_valid if key_valid is None else key_valid & cache_valid
    length_q, length_k = q.shape[1], k.shape[1]
    parts = [padding_mask(key_valid) if key_valid is not None else None,
             causal_mask(length_q, length_k, offset) if causal else None]
    if prefix is not None:
      pk, pv = (jnp.broadcast_to(p, (k.shape[0], *p.shape[1:])) for p in prefix)
      k, v = jnp.concatenate([pk, k], 1), jnp.concatenate([pv, v], 1)
      parts = [None if m is None else jnp.concatenate(
          [jnp.ones((*m.shape[:3], pk.shape[1]), bool),
           jnp.broadcast_to(m, (*m.shape[:3], length_k))], -1) for m in parts]
      if mask is not None:
        mask = jnp.concatenate([jnp.ones((*mask.shape[:3], pk.shape[1]), bool),
                                jnp.broadcast_to(mask, (*mask.shape[:3],
                                                        length_k))], -1)
    out = self._attend(q, k, v, mask, parts, key_valid, causal, train)
    out = out.astype(inputs_q.dtype)
    return tokenwise(self.projection((inputs_q.shape[-1],), 'out'),
                     out.reshape(*out.shape[:2], -1))

  def _attend(self, q, k, v, mask, parts, key_valid, causal, train):
    full = all_of(mask, *parts)
    if self.kind == 'softmax' and self.is_mutable_collection('intermediates'):
      # Only when asked (mutable=['intermediates']): plots of attention maps.
      self.sow('intermediates', 'attention_weights',
               attention_weights(q, k, full))
    if self.kind == 'softmax':
      if self.dropout and train:
        weights = attention_weights(q, k, full)
        weights = nn.Dropout(self.dropout)(weights, deterministic=False)
        return jnp.einsum('bnts,bsnh->btnh', weights, v)
      return softmax_attention(q, k, v, full,
                               implementation=self.implementation)
    if self.kind == 'linear':
      if mask is not None:
        raise ValueError('linear attention supports padding and causal masks '
                         'only')
      return linear_attention(q, k, v, key_valid=key_valid, causal=causal)
    if self.kind == 'linformer':
      if mask is not None or causal:
        raise ValueError('Linformer supports padding masks only (it cannot '
                         'be causal)')
      length = k.shape[1]
      if length > self.max_length:
        raise ValueError(f'Linformer sequence length {length} exceeds '
                         f'max_length={self.max_length}')
      project = self.param('linformer_e', nn.initializers.lecun_normal(),
                           (self.max_length, self.linformer_rows))[:length]
      if key_valid is not None:
        k = k * key_valid[:, :, None, None]
        v = v * key_valid[:, :, None, None]
      k = jnp.einsum('bsnh,sr->brnh', k, project)
      v = jnp.einsum('bsnh,sr->brnh', v, project)
      return softmax_attention(q, k, v, implementation=self.implementation)
    length_q, length_k = q.shape[1], k.shape[1]
    if max(length_q, length_k) > self.max_length:
      raise ValueError(f'Synthesizer lengths ({length_q}, {length_k}) exceed '
                       f'max_length={self.max_length}')
    if self.kind == 'synthesizer_dense':
      hidden = nn.relu(jnp.einsum('btnh,nhd->btnd', q, self.param(
          'synth_w1', nn.initializers.lecun_normal(),
          (self.num_heads, self.head_dim, self.head_dim))))
      logits = jnp.einsum('btnd,nds->bnts', hidden, self.param(
          'synth_w2', nn.initializers.lecun_normal(),
          (self.num_heads, self.head_dim, self.max_length))[..., :length_k])
    else:
      table = self.param('synth_table', nn.initializers.normal(0.02),
                         (self.num_heads, self.max_length, self.max_length))
      logits = jnp.broadcast_to(table[None, :, :length_q, :length_k],
                                (q.shape[0], self.num_heads, length_q,
                                 length_k))
    weights = _masked_softmax(logits, full)
    self.sow('intermediates', 'attention_weights', weights)
    return jnp.einsum('bnts,bsnh->btnh', weights, v.astype(jnp.float32))

  def _cached(self, k, v):
    """Writes this call's keys and values into the cache; all cached so far."""
    initialized = self.has_variable('cache', 'keys')
    keys = self.variable('cache', 'keys', jnp.zeros, k.shape, k.dtype)
    values = self.variable('cache', 'values', jnp.zeros, v.shape, v.dtype)
    index = self.variable('cache', 'index', lambda: jnp.zeros((), jnp.int32))
    if not initialized:  # the init call: full-length zeros
      return k, v, 0, jnp.ones(k.shape[:2], bool)
    position = index.value
    keys.value = jax.lax.dynamic_update_slice_in_dim(keys.value, k, position, 1)
    values.value = jax.lax.dynamic_update_slice_in_dim(values.value, v,
                                                       position, 1)
    index.value = position + k.shape[1]
    valid = jnp.arange(keys.value.shape[1]) < index.value
    valid = jnp.broadcast_to(valid, keys.value.shape[:2])
    return keys.value, values.value, position, valid
