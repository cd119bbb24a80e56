"""Character models: recurrent (vanilla RNN, LSTM, GRU) and GPT (lib's), with step functions.

Every model maps tokens [B, T] to next-character logits [B, T, V]. For
sampling, `make_step_fn` returns the `step_fn(tokens, state, index)` that
lib.decoding drives: the RNN carries its cells' state; GPT re-reads the last
`block_size` characters of its own output, as nanoGPT samples.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from lib.layers import transformer

CELLS = {'rnn': nn.SimpleCell, 'lstm': nn.OptimizedLSTMCell, 'gru': nn.GRUCell}


class RecurrentLM(nn.Module):
  """Embedding -> stacked recurrent layers -> logits; carries are returned."""
  vocab_size: int
  kind: str
  hidden: int
  num_layers: int
  embed_dim: int

  @nn.compact
  def __call__(self, tokens, carries=None, *, train: bool = False):
    del train
    x = nn.Embed(self.vocab_size, self.embed_dim, name='embed')(tokens)
    new_carries = []
    for i in range(self.num_layers):
      layer = nn.RNN(CELLS[self.kind](self.hidden), return_carry=True,
                     name=f'layer_{i}')
      carry, x = layer(x, initial_carry=None if carries is None else carries[i])
      new_carries.append(carry)
    return nn.Dense(self.vocab_size, name='logits')(x), tuple(new_carries)


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> nn.Module:
  model = config.model
  if model.kind == 'gpt':
    return transformer.GPT(vocab_size, model.num_layers, model.num_heads, model.d_model,
               model.ff_dim, config.block_size, model.dropout)
  return RecurrentLM(vocab_size, model.kind, model.hidden, model.num_layers,
                     model.embed_dim)


def logits(model: nn.Module, params, tokens, *, train=False, key=None):
  """[B, T, V] next-character logits."""
  rngs = {'dropout': key} if key is not None else None
  out = model.apply({'params': params}, tokens, train=train, rngs=rngs)
  return out[0] if isinstance(model, RecurrentLM) else out


def make_step_fn(model: nn.Module, block_size: int):
  """step_fn(tokens [B], state, index) for lib.decoding, and its initial state.

  Returns (step_fn, init_state(params, prompt [B, P], num_tokens)). Build it
  once per model so the sampling loop compiles once.
  """
  if isinstance(model, RecurrentLM):

    def rnn_step(tokens, state, index):
      del index
      params, carries = state
      out, carries = model.apply({'params': params}, tokens[:, None], carries)
      return out[:, 0], (params, carries)

    def rnn_init(params, prompt, num_tokens):
      del num_tokens
      widths = [model.embed_dim] + [model.hidden] * (model.num_layers - 1)
      carries = tuple(CELLS[model.kind](model.hidden).initialize_carry(
          jax.random.key(0), (prompt.shape[0], width)) for width in widths)
      if prompt.shape[1] > 1:  # the step reads the prompt's last character
        _, carries = model.apply({'params': params}, prompt[:, :-1], carries)
      return params, carries

    return rnn_step, rnn_init

  def gpt_step(tokens, state, index):
    params, buffer, length = state
    buffer = jax.lax.dynamic_update_slice_in_dim(buffer, tokens[:, None],
                                                 length - 1, 1)
    # The last block_size characters, ending at the newest one.
    start = jnp.maximum(length - block_size, 0)
    window = jax.lax.dynamic_slice_in_dim(buffer, start, block_size, 1)
    del index
    out = model.apply({'params': params}, window)
    last = jnp.minimum(length, block_size) - 1
    return out[:, last], (params, buffer, length + 1)

  def gpt_init(params, prompt, num_tokens):
    width = max(prompt.shape[1] + num_tokens, block_size)
    buffer = jnp.zeros((prompt.shape[0], width), jnp.int32)
    buffer = buffer.at[:, :prompt.shape[1]].set(prompt)
    # The step writes its input token at length - 1: the prompt's last one.
    return params, buffer, jnp.int32(prompt.shape[1])

  return gpt_step, gpt_init
