"""Greedy decoding and sampling with temperature, top-k and top-p (nucleus).

A model is driven by a step function
  step_fn(tokens [B] int32, state, index) -> (logits [B, V], new state)
that reads the last tokens and returns the next token's logits, so a
KV-cached transformer, a transformer that re-reads a window of its own
output, and an RNN's carry all fit. The loop is a `lax.while_loop`, jitted
once per (num_tokens, settings); it stops early when every row has emitted
`eos_id`, and rows that have finished emit `pad_id` from then on.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp

_NEG = -1e30


def filter_logits(logits: jax.Array, *, top_k: int = 0,
                  top_p: float = 1.0) -> jax.Array:
  """Logits with every token outside the top-k and the top-p nucleus at -inf.

  top_k=0 and top_p=1 keep every token; the most likely token always stays.
  """
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, _NEG, logits)
  if top_p < 1.0:
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, -1)
    probs = jax.nn.softmax(sorted_logits, -1)
    # Keep a token while the mass before it is below top_p.
    keep_sorted = jnp.cumsum(probs, -1) - probs < top_p
    keep = jnp.zeros_like(keep_sorted).at[
        jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
    logits = jnp.where(keep, logits, _NEG)
  return logits


@functools.partial(jax.jit, static_argnames=(
    'step_fn', 'num_tokens', 'greedy', 'top_k', 'top_p', 'eos_id', 'pad_id'))
def _decode(step_fn, state, first_tokens, key, temperature, *, num_tokens,
            greedy, top_k, top_p, eos_id, pad_id):
  batch = first_tokens.shape[0]

  def cond(carry):
    index, _, _, finished, _, _ = carry
    return (index < num_tokens) & ~jnp.all(finished)

  def body(carry):
    index, last, state, finished, out, key = carry
    logits, state = step_fn(last, state, index)
    logits = logits.astype(jnp.float32)
    if greedy:
      token = jnp.argmax(logits, -1)
    else:
      key, draw = jax.random.split(key)
      logits = filter_logits(logits / temperature, top_k=top_k, top_p=top_p)
      token = jax.random.categorical(draw, logits, -1)
    token = jnp.where(finished, pad_id, token).astype(jnp.int32)
    out = out.at[:, index].set(token)
    if eos_id is not None:
      finished = finished | (token == eos_id)
    return index + 1, token, state, finished, out, key

  out = jnp.full((batch, num_tokens), pad_id, jnp.int32)
  carry = (jnp.int32(0), first_tokens.astype(jnp.int32), state,
           jnp.zeros((batch,), bool), out, key)
  return jax.lax.while_loop(cond, body, carry)[4]


def sample(step_fn: Callable, state, first_tokens: jax.Array, key: jax.Array,
           num_tokens: int, *, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, eos_id: int | None = None,
           pad_id: int = 0) -> jax.Array:
  """[B, num_tokens] tokens drawn after `first_tokens` [B].

  `step_fn` must be hashable and the same object across calls (a module-level
  function or one built once), so the loop compiles once.
  """
  if not temperature > 0:
    raise ValueError(f'temperature={temperature} must be > 0 (use greedy)')
  if top_k < 0 or not 0.0 < top_p <= 1.0:
    raise ValueError(f'top_k={top_k} must be >= 0 and top_p={top_p} in (0, 1]')
  return _decode(step_fn, state, first_tokens, key, jnp.float32(temperature),
                 num_tokens=num_tokens, greedy=False, top_k=top_k,
                 top_p=float(top_p), eos_id=eos_id, pad_id=pad_id)


def greedy(step_fn: Callable, state, first_tokens: jax.Array, num_tokens: int,
           *, eos_id: int | None = None, pad_id: int = 0) -> jax.Array:
  """[B, num_tokens] most likely tokens, one at a time, after `first_tokens`."""
  return _decode(step_fn, state, first_tokens, jax.random.key(0),
                 jnp.float32(1.0), num_tokens=num_tokens, greedy=True,
                 top_k=0, top_p=1.0, eos_id=eos_id, pad_id=pad_id)
