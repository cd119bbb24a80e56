"""Drives a lib.layers.transformer.Decoder through its KV cache, one token a step.

    step_fn, init_state = cached.make_step_fn(decoder)  # once per model
    state = init_state(params, prompt, max_length, memory, memory_valid)
    tokens = sampling.greedy(step_fn, state, prompt[:, -1], num_tokens)

The state is (params, rows) with rows = {'cache', 'memory', 'memory_valid'}
batched on axis 0, so lib.decoding.beam repeats and reorders the cache and
the encoder's memory with the beams.
"""

from typing import Callable

import jax
import jax.numpy as jnp


def make_step_fn(decoder) -> tuple[Callable, Callable]:
  """(step_fn, init_state) for `decoder` (its decode=True clone reads the cache).

  init_state(params, prompt [B, P], max_length, memory=None,
  memory_valid=None) sizes the cache for max_length positions (prompt and
  generated tokens) and runs prompt[:, :-1] through it in one call; the
  decoding loop then starts from prompt[:, -1] (a seq2seq decoder's prompt
  is its start token alone).
  """
  model = decoder.clone(decode=True)

  def apply(params, rows, tokens):
    logits, variables = model.apply(
        {'params': params, 'cache': rows['cache']}, tokens, rows['memory'],
        memory_valid=rows['memory_valid'], mutable=['cache'])
    return logits, {**rows, 'cache': variables['cache']}

  def step_fn(tokens, state, index):
    del index  # the cache keeps its own position
    params, rows = state
    logits, rows = apply(params, rows, tokens[:, None])
    return logits[:, 0], (params, rows)

  def init_state(params, prompt, max_length: int, memory=None,
                 memory_valid=None):
    if prompt.shape[1] > max_length:
      raise ValueError(f'prompt length {prompt.shape[1]} exceeds '
                       f'max_length={max_length}')
    full = jnp.zeros((prompt.shape[0], max_length), jnp.int32)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), full, memory,
                           memory_valid=memory_valid))['cache']
    rows = {'cache': jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  shapes),
            'memory': memory, 'memory_valid': memory_valid}
    if prompt.shape[1] > 1:
      _, rows = apply(params, rows, prompt[:, :-1])
    return params, rows

  return step_fn, init_state
