"""Transformer encoder and decoder layers and stacks, on lib.layers.attention.

Shapes: inputs [B, T, D]; `valid` [B, T] is True at real (unpadded)
positions. `pre_norm=False` is the lecture's (and the 2017 paper's) post-LN
layer, LayerNorm(x + sublayer(x)); `pre_norm=True` is x + sublayer(LN(x)),
which trains without warm-up tricks, with one final LayerNorm in the stacks.

Decoding: build a `Decoder` with `decode=True`, initialise it on tokens of
the full length (that sizes the KV cache), then apply it one position at a
time with `mutable=['cache']`; each self-attention layer and the position
counter read and advance the cache.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lib.layers import attention


def sinusoidal_positions(length: int, features: int, offset=0) -> jax.Array:
  """The 2017 paper's encodings [length, features] of positions offset + i."""
  positions = jnp.arange(length)[:, None] + offset
  rates = np.exp(-np.log(10000.0) * np.arange(0, features, 2) / features)
  angles = positions * rates[None, :]
  table = jnp.zeros((length, features))
  table = table.at[:, 0::2].set(jnp.sin(angles))
  return table.at[:, 1::2].set(jnp.cos(angles[:, :features // 2]))


class LearnedPositions(nn.Module):
  """A learned [max_length, features] table; rows offset .. offset + length."""
  max_length: int
  features: int

  @nn.compact
  def __call__(self, length: int, offset=0) -> jax.Array:
    table = self.param('table', nn.initializers.normal(0.02),
                       (self.max_length, self.features))
    return jax.lax.dynamic_slice_in_dim(table, offset, length, 0)


class FeedForward(nn.Module):
  ff_dim: int
  dropout: float = 0.0
  activation: Callable = nn.relu

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    h = self.activation(attention.tokenwise(nn.Dense(self.ff_dim, name='hidden'), x))
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    return attention.tokenwise(nn.Dense(x.shape[-1], name='output'), h)


def residual(x, sublayer, norm, dropout: float, pre_norm: bool, train: bool):
  """x + dropout(sublayer(.)), normalised before (pre-LN) or after (post-LN)."""
  out = x + nn.Dropout(dropout)(sublayer(norm(x) if pre_norm else x),
                                deterministic=not train)
  return out if pre_norm else norm(out)


def _attention(layer, name, features, kind='softmax', decode=False):
  return attention.MultiHeadAttention(
      num_heads=layer.num_heads,
      head_dim=layer.head_dim or features // layer.num_heads,
      kind=kind, max_length=layer.max_length,
      linformer_rows=layer.linformer_rows, dropout=layer.attention_dropout,
      projection=layer.projection, decode=decode, name=name)


class EncoderLayer(nn.Module):
  """Self-attention (any lib.layers.attention kind) and a feed-forward block.

  `prefix` ((keys, values), [B or 1, P, N, H]) is passed to the attention
  (prefix tuning); `projection` builds its dense projections (e.g. LoRA);
  `adapter(name)` builds a module applied to each sublayer's output before
  its residual (Houlsby adapters, named 'adapter_attention' and 'adapter_ff').
  """
  num_heads: int
  ff_dim: int
  dropout: float = 0.0
  attention_dropout: float = 0.0
  attention_kind: str = 'softmax'
  pre_norm: bool = True
  max_length: int = 512  # linformer and synthesizer tables
  linformer_rows: int = 64
  head_dim: int | None = None  # default features // num_heads
  projection: Callable = attention.dense_projection
  activation: Callable = nn.relu
  layer_norm_epsilon: float = 1e-6
  ff_dropout: float | None = None  # inside the feed-forward; None: `dropout`
  adapter: Callable | None = None

  @nn.compact
  def __call__(self, x, *, valid=None, mask=None, prefix=None,
               train: bool = False):
    attend = _attention(self, 'attention', x.shape[-1], self.attention_kind)
    ff_dropout = self.dropout if self.ff_dropout is None else self.ff_dropout
    ff = FeedForward(self.ff_dim, ff_dropout, self.activation, name='ff')
    x = residual(x, self._adapted('adapter_attention', lambda h: attend(
        h, key_valid=valid, mask=mask, prefix=prefix, train=train)),
                 self._norm('attention_norm'), self.dropout, self.pre_norm,
                 train)
    return residual(x, self._adapted('adapter_ff',
                                     lambda h: ff(h, train=train)),
                    self._norm('ff_norm'), self.dropout, self.pre_norm, train)

  def _norm(self, name):
    return nn.LayerNorm(epsilon=self.layer_norm_epsilon, name=name)

  def _adapted(self, name, sublayer):
    if self.adapter is None:
      return sublayer
    adapter = self.adapter(name)
    return lambda h: adapter(sublayer(h))


class DecoderLayer(nn.Module):
  """Causal self-attention, cross-attention to `memory` (if given), feed-forward.

  Without `memory` it is a GPT layer. With `decode=True` the self-attention
  keeps a KV cache (cross-attention recomputes the memory's keys).
  """
  num_heads: int
  ff_dim: int
  dropout: float = 0.0
  attention_dropout: float = 0.0
  pre_norm: bool = True
  decode: bool = False
  max_length: int = 512
  linformer_rows: int = 64
  head_dim: int | None = None
  projection: Callable = attention.dense_projection

  @nn.compact
  def __call__(self, x, memory=None, *, valid=None, memory_valid=None,
               train: bool = False):
    attend = _attention(self, 'self_attention', x.shape[-1],
                        decode=self.decode)
    x = residual(x, lambda h: attend(
        h, key_valid=None if self.decode else valid, causal=True, train=train),
                  nn.LayerNorm(name='self_attention_norm'), self.dropout,
                  self.pre_norm, train)
    if memory is not None:
      cross = _attention(self, 'cross_attention', x.shape[-1])
      x = residual(x, lambda h: cross(h, memory, key_valid=memory_valid,
                                       train=train),
                    nn.LayerNorm(name='cross_attention_norm'), self.dropout,
                    self.pre_norm, train)
    ff = FeedForward(self.ff_dim, self.dropout, name='ff')
    return residual(x, lambda h: ff(h, train=train),
                     nn.LayerNorm(name='ff_norm'), self.dropout,
                     self.pre_norm, train)


class _Positions(nn.Module):
  kind: str
  max_length: int
  features: int

  @nn.compact
  def __call__(self, length, offset=0):
    if self.kind == 'sinusoidal':
      return sinusoidal_positions(length, self.features, offset)
    if self.kind == 'learned':
      return LearnedPositions(self.max_length, self.features, name='learned')(
          length, offset)
    raise ValueError(f"positions {self.kind!r}: choose 'sinusoidal' or "
                     "'learned'")


class Encoder(nn.Module):
  """Token ids [B, T] (and `valid` [B, T]) -> encodings [B, T, d_model]."""
  num_layers: int
  vocab_size: int
  d_model: int
  num_heads: int
  ff_dim: int
  dropout: float = 0.0
  attention_kind: str = 'softmax'
  pre_norm: bool = True
  positions: str = 'sinusoidal'
  max_length: int = 512
  embedding: nn.Module | None = None  # share one nn.Embed between stacks
  scale_embeddings: bool = True  # x sqrt(d_model) as in the 2017 paper

  @nn.compact
  def __call__(self, tokens, *, valid=None, train: bool = False):
    embed = self.embedding or nn.Embed(self.vocab_size, self.d_model,
                                       name='embed')
    scale = np.sqrt(self.d_model) if self.scale_embeddings else 1.0
    x = embed(tokens) * scale
    x = x + _Positions(self.positions, self.max_length, self.d_model,
                       name='positions')(tokens.shape[1])
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = EncoderLayer(self.num_heads, self.ff_dim, self.dropout,
                       attention_kind=self.attention_kind,
                       pre_norm=self.pre_norm, max_length=self.max_length,
                       name=f'layer_{i}')(x, valid=valid, train=train)
    return nn.LayerNorm(name='final_norm')(x) if self.pre_norm else x


class Decoder(nn.Module):
  """Token ids [B, T] -> next-token logits [B, T, vocab_size].

  Decoder-only (GPT) without `memory`; a seq2seq decoder with it. With
  `tie_embeddings` the output projection is the token embedding's transpose
  (`nn.Embed.attend`).
  """
  num_layers: int
  vocab_size: int
  d_model: int
  num_heads: int
  ff_dim: int
  dropout: float = 0.0
  pre_norm: bool = True
  positions: str = 'sinusoidal'
  max_length: int = 512
  tie_embeddings: bool = True
  decode: bool = False
  embedding: nn.Module | None = None
  scale_embeddings: bool = True  # GPT-2 does not scale (its init is small)

  @nn.compact
  def __call__(self, tokens, memory=None, *, valid=None, memory_valid=None,
               train: bool = False, return_hidden: bool = False):
    """Logits [B, T, vocab_size]; with `return_hidden`, (logits, the last
    layer's (final-normed) states [B, T, d_model])."""
    embed = self.embedding or nn.Embed(self.vocab_size, self.d_model,
                                       name='embed')
    offset = 0
    if self.decode:
      initialized = self.has_variable('cache', 'position')
      position = self.variable('cache', 'position',
                               lambda: jnp.zeros((), jnp.int32))
      if initialized:
        offset = position.value
        position.value = offset + tokens.shape[1]
    scale = np.sqrt(self.d_model) if self.scale_embeddings else 1.0
    x = embed(tokens) * scale
    x = x + _Positions(self.positions, self.max_length, self.d_model,
                       name='positions')(tokens.shape[1], offset)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = DecoderLayer(self.num_heads, self.ff_dim, self.dropout,
                       pre_norm=self.pre_norm, decode=self.decode,
                       max_length=self.max_length, name=f'layer_{i}')(
                           x, memory, valid=valid, memory_valid=memory_valid,
                           train=train)
    if self.pre_norm:
      x = nn.LayerNorm(name='final_norm')(x)
    if self.tie_embeddings:
      logits = embed.attend(x)
    else:
      logits = attention.tokenwise(nn.Dense(self.vocab_size, name='logits'), x)
    return (logits, x) if return_hidden else logits


class GPT(nn.Module):
  """`Decoder` without memory, as nanoGPT builds GPT-2.

  Pre-LN, learned positions, tied embeddings initialised N(0, 0.02) and not
  scaled by sqrt(d_model).
  """
  vocab_size: int
  num_layers: int
  num_heads: int
  d_model: int
  ff_dim: int
  block_size: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, tokens, *, train: bool = False,
               return_hidden: bool = False):
    return Decoder(
        num_layers=self.num_layers, vocab_size=self.vocab_size,
        d_model=self.d_model, num_heads=self.num_heads, ff_dim=self.ff_dim,
        dropout=self.dropout, pre_norm=True, positions='learned',
        max_length=self.block_size, tie_embeddings=True,
        scale_embeddings=False, embedding=nn.Embed(
            self.vocab_size, self.d_model,
            embedding_init=nn.initializers.normal(0.02), name='embed'),
        name='decoder')(tokens, train=train, return_hidden=return_hidden)
