"""HW5's two translation models on one contract.

Both map a batch {'source': [B, S], 'decoder_input': [B, T]} (token ids, 0 =
padding; the target input starts with BOS) to next-token logits [B, T, V],
teacher-forced, and take scheduled sampling as `sampling_probability` with
`sampling_noise` [B, T] uniform in [0, 1): where the noise is below the
probability the model reads its own most likely token instead of the gold
one (never at position 0, the BOS). Probability 0 is teacher forcing.

  GRUSeq2Seq          the homework's first baseline: a bidirectional GRU
                      encoder and a GRU decoder with additive (Bahdanau)
                      attention, scheduled sampling step by step (Bengio et
                      al. 2015) inside the decoder's scan.
  TransformerSeq2Seq  lib.layers.transformer's Encoder and Decoder sharing one
                      embedding (a shared subword vocabulary), tied to the
                      output projection; scheduled sampling in two passes
                      (Mihaylova and Liu 2019): a teacher-forced pass, then
                      one that reads the mixed tokens.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib.layers import transformer

PAD_ID = 0


def mixed_inputs(gold: jax.Array, predicted: jax.Array, noise: jax.Array,
                 probability) -> jax.Array:
  """The gold inputs [B, T] with predicted tokens where noise < probability.

  `predicted[:, t]` is the model's token for position t (made at t - 1);
  position 0 (BOS) always stays gold.
  """
  use_predicted = (noise < probability).at[:, 0].set(False)
  return jnp.where(use_predicted, predicted, gold)


class BahdanauAttention(nn.Module):
  """score(s, h_j) = v^T tanh(W s + U h_j), softmax over the valid source."""
  features: int

  @nn.compact
  def __call__(self, query, memory, memory_keys, memory_valid):
    """query [B, H]; memory [B, S, M], its projection U h [B, S, A].

    Returns the context [B, M] and the weights [B, S].
    """
    hidden = jnp.tanh(memory_keys + nn.Dense(self.features, use_bias=False,
                                             name='query')(query)[:, None])
    scores = nn.Dense(1, use_bias=False, name='score')(hidden)[..., 0]
    weights = jax.nn.softmax(jnp.where(memory_valid, scores, -1e9), -1)
    return jnp.einsum('bs,bsm->bm', weights, memory), weights


class AttentionDecoderCell(nn.Module):
  """One decoder step: attend with the last state, then GRU on [y; context]."""
  vocab_size: int
  hidden: int
  attention_dim: int
  dropout: float
  embed: nn.Module

  @nn.compact
  def __call__(self, hidden, token, memory, memory_keys, memory_valid,
               train: bool = False):
    context, weights = BahdanauAttention(self.attention_dim, name='attention')(
        hidden, memory, memory_keys, memory_valid)
    x = nn.Dropout(self.dropout)(self.embed(token), deterministic=not train)
    hidden, _ = nn.GRUCell(self.hidden, name='gru')(
        hidden, jnp.concatenate([x, context], -1))
    features = jnp.concatenate([hidden, context, x], -1)
    features = nn.Dropout(self.dropout)(features, deterministic=not train)
    return hidden, nn.Dense(self.vocab_size, name='logits')(features), weights


def _decoder_scan(cell, carry, inputs, memory, memory_keys, memory_valid,
                  probability, train):
  """Teacher forcing or scheduled sampling over the target positions."""

  def step(cell, carry, inputs):
    hidden, previous_logits = carry
    gold, noise = inputs
    predicted = jnp.argmax(previous_logits, -1).astype(gold.dtype)
    token = jnp.where(noise < probability, predicted, gold)
    hidden, logits, weights = cell(hidden, token, memory, memory_keys,
                                   memory_valid, train)
    return (hidden, logits), (logits, weights)

  scan = nn.scan(step, variable_broadcast='params',
                 split_rngs={'params': False, 'dropout': True},
                 in_axes=1, out_axes=1)
  return scan(cell, carry, inputs)


class GRUSeq2Seq(nn.Module):
  """Bidirectional GRU encoder, GRU decoder with Bahdanau attention."""
  vocab_size: int
  embed_dim: int = 256
  hidden: int = 512
  attention_dim: int = 512
  dropout: float = 0.3

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.encoder = nn.Bidirectional(nn.RNN(nn.GRUCell(self.hidden)),
                                    nn.RNN(nn.GRUCell(self.hidden)),
                                    return_carry=True)
    self.bridge = nn.Dense(self.hidden)  # both final states -> the decoder's
    self.memory_keys = nn.Dense(self.attention_dim, use_bias=False)
    self.cell = AttentionDecoderCell(self.vocab_size, self.hidden,
                                     self.attention_dim, self.dropout,
                                     self.embed)
    self.embed_dropout = nn.Dropout(self.dropout)

  def encode(self, source, train: bool = False) -> dict:
    """The decoder's rows: memory, its keys and mask, the first state."""
    valid = source != PAD_ID
    x = self.embed_dropout(self.embed(source), deterministic=not train)
    (forward, backward), memory = self.encoder(
        x, seq_lengths=valid.sum(-1).astype(jnp.int32))
    hidden = jnp.tanh(self.bridge(jnp.concatenate([forward, backward], -1)))
    return {'hidden': hidden, 'memory': memory,
            'memory_keys': self.memory_keys(memory), 'memory_valid': valid}

  def decode_step(self, token, rows: dict):
    """(logits [B, V], rows with the new state, attention weights [B, S])."""
    hidden, logits, weights = self.cell(
        rows['hidden'], token, rows['memory'], rows['memory_keys'],
        rows['memory_valid'])
    return logits, {**rows, 'hidden': hidden}, weights

  def __call__(self, batch, *, train: bool = False, sampling_probability=0.0,
               sampling_noise=None):
    rows = self.encode(batch['source'], train)
    gold = batch['decoder_input']
    if sampling_noise is None:
      sampling_noise = jnp.ones(gold.shape)  # never below a probability <= 1
    sampling_noise = sampling_noise.at[:, 0].set(1.0)  # BOS stays gold
    carry = (rows['hidden'], jnp.zeros((gold.shape[0], self.vocab_size)))
    _, (logits, weights) = _decoder_scan(
        self.cell, carry, (gold, sampling_noise), rows['memory'],
        rows['memory_keys'], rows['memory_valid'], sampling_probability, train)
    self.sow('intermediates', 'cross_attention', weights)  # [B, T, S]
    return logits


class TransformerSeq2Seq(nn.Module):
  """lib.layers.transformer's encoder-decoder with one shared, tied embedding."""
  vocab_size: int
  num_layers: int = 3
  d_model: int = 256
  num_heads: int = 8
  ff_dim: int = 512
  dropout: float = 0.1
  positions: str = 'sinusoidal'
  pre_norm: bool = True
  max_length: int = 256

  def _stack_fields(self) -> dict:
    return dict(num_layers=self.num_layers, vocab_size=self.vocab_size,
                d_model=self.d_model, num_heads=self.num_heads,
                ff_dim=self.ff_dim, dropout=self.dropout,
                pre_norm=self.pre_norm, positions=self.positions,
                max_length=self.max_length)

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.d_model)
    self.encoder = transformer.Encoder(**self._stack_fields(),
                                       embedding=self.embed)
    self.decoder = transformer.Decoder(**self._stack_fields(),
                                       embedding=self.embed)

  def encode(self, source, train: bool = False) -> dict:
    valid = source != PAD_ID
    return {'memory': self.encoder(source, valid=valid, train=train),
            'memory_valid': valid}

  def __call__(self, batch, *, train: bool = False, sampling_probability=0.0,
               sampling_noise=None):
    rows = self.encode(batch['source'], train)
    gold = batch['decoder_input']

    def decode(tokens):
      return self.decoder(tokens, rows['memory'],
                          memory_valid=rows['memory_valid'], train=train)

    logits = decode(gold)
    if sampling_noise is None:
      return logits
    predicted = jnp.argmax(jax.lax.stop_gradient(logits), -1).astype(
        gold.dtype)
    # The prediction made at t - 1 stands for the input at t.
    predicted = jnp.concatenate([gold[:, :1], predicted[:, :-1]], 1)
    return decode(mixed_inputs(gold, predicted, sampling_noise,
                               sampling_probability))


def standalone_decoder(model: TransformerSeq2Seq) -> transformer.Decoder:
  """`model`'s decoder as its own module (for lib.decoding.cached), with its
  own embedding; its parameters are `decoder_params(params)`."""
  return transformer.Decoder(**model._stack_fields(),  # pylint: disable=protected-access
                             embedding=nn.Embed(model.vocab_size,
                                                model.d_model, parent=None))


def decoder_params(params: dict) -> dict:
  """A TransformerSeq2Seq's parameters as its standalone decoder's."""
  return {**params['decoder'], 'embedding': params['embed']}
