"""Beam search with a GNMT length penalty and finished hypotheses kept apart.

The step function is the one lib.decoding.sampling takes,
  step_fn(tokens [B*K] int32, state, index) -> (logits [B*K, V], new state),
and `state` is a pair (shared, rows): `shared` (e.g. model parameters) is
passed through untouched; every leaf of `rows` (a KV cache, an RNN carry, an
encoder's memory) has the batch on axis 0 and is repeated beam_size times,
then reordered with the beams each step; scalar leaves of `rows` (cache
positions) are shared by every beam. So a step_fn written for beam search
also works for greedy decoding and sampling.

Each step expands the K live beams into their K * V continuations and keeps
the 2K best, so that K of them are still live after up to K end in `eos_id`.
Those that end go to a separate finished set (the K best by score), which
is how a finished beam is never pushed out by live ones; at the last step
every live beam is finished as it is. Score = log p(tokens) / lp(length) with
GNMT's penalty lp = ((5 + length) / 6) ** length_penalty (Wu et al. 2016),
length counting the EOS; length_penalty=0 ranks by log-probability. The loop
stops early once no live beam can beat the K-th finished one.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp

_NEG = -1e30


def length_penalty_factor(length, alpha: float) -> jax.Array:
  """GNMT's ((5 + length) / 6) ** alpha."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _repeat_rows(rows, beam_size: int):
  return jax.tree.map(
      lambda x: x if x.ndim == 0 else jnp.repeat(x, beam_size, axis=0), rows)


def _gather_rows(rows, parents: jax.Array):
  """Reorders every [B*K, ...] leaf by `parents` [B, K] (a beam within its row)."""
  batch, beam_size = parents.shape

  def gather(x):
    if x.ndim == 0:
      return x
    x = x.reshape(batch, beam_size, *x.shape[1:])
    index = parents.reshape(batch, beam_size, *([1] * (x.ndim - 2)))
    return jnp.take_along_axis(x, index, 1).reshape(batch * beam_size,
                                                    *x.shape[2:])

  return jax.tree.map(gather, rows)


def _take(x, index):
  """x [B, M, ...] at index [B, K] along axis 1."""
  return jnp.take_along_axis(
      x, index.reshape(*index.shape, *([1] * (x.ndim - 2))), 1)


@functools.partial(jax.jit, static_argnames=(
    'step_fn', 'num_tokens', 'beam_size', 'eos_id', 'length_penalty',
    'pad_id'))
def _search(step_fn, state, first_tokens, *, num_tokens, beam_size, eos_id,
            length_penalty, pad_id):
  shared, rows = state
  batch, k = first_tokens.shape[0], beam_size
  final_penalty = length_penalty_factor(num_tokens, length_penalty)

  def cond(carry):
    index, _, _, live_logp, _, _, finished_scores = carry
    # Log-probabilities only fall, and lp only grows (alpha >= 0).
    best_live = live_logp[:, 0] / final_penalty
    done = finished_scores[:, -1] >= best_live
    return (index < num_tokens) & ~jnp.all(done)

  def body(carry):
    (index, live_tokens, live_seqs, live_logp, rows, finished_seqs,
     finished_scores) = carry
    logits, (_, rows) = step_fn(live_tokens.reshape(batch * k),
                                (shared, rows), index)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    vocab = log_probs.shape[-1]
    flat = (live_logp[..., None] + log_probs.reshape(batch, k, vocab)).reshape(
        batch, k * vocab)
    cand_logp, cand_index = jax.lax.top_k(flat, 2 * k)
    parents, tokens = cand_index // vocab, (cand_index % vocab).astype(
        jnp.int32)
    cand_seqs = _take(live_seqs, parents).at[:, :, index].set(tokens)
    real = cand_logp > _NEG / 2  # not grown from an unused initial beam
    ends = (tokens == eos_id) if eos_id is not None else jnp.zeros_like(real)
    ended = ends | (index == num_tokens - 1)
    scores = cand_logp / length_penalty_factor(index + 1, length_penalty)
    scores = jnp.where(ended & real, scores, _NEG)
    all_scores = jnp.concatenate([finished_scores, scores], 1)
    finished_scores, best = jax.lax.top_k(all_scores, k)
    finished_seqs = _take(jnp.concatenate([finished_seqs, cand_seqs], 1), best)
    live_logp, keep = jax.lax.top_k(jnp.where(ends, _NEG, cand_logp), k)
    rows = _gather_rows(rows, _take(parents, keep))
    return (index + 1, _take(tokens, keep), _take(cand_seqs, keep), live_logp,
            rows, finished_seqs, finished_scores)

  seqs = jnp.full((batch, k, num_tokens), pad_id, jnp.int32)
  # One live beam at first: the others would only repeat it.
  live_logp = jnp.tile(jnp.array([0.0] + [_NEG] * (k - 1)), (batch, 1))
  carry = (jnp.int32(0),
           jnp.repeat(first_tokens.astype(jnp.int32)[:, None], k, 1), seqs,
           live_logp, _repeat_rows(rows, k), seqs,
           jnp.full((batch, k), _NEG))
  carry = jax.lax.while_loop(cond, body, carry)
  return carry[5], carry[6]


def beam_search(step_fn: Callable, state, first_tokens: jax.Array,
                num_tokens: int, *, beam_size: int, eos_id: int | None,
                length_penalty: float = 0.0, pad_id: int = 0):
  """The beam_size best continuations of `first_tokens` [B], best first.

  Returns tokens [B, beam_size, num_tokens] (pad_id after each EOS) and
  their scores [B, beam_size] (length-penalised log-probabilities; below
  -1e29 where fewer than beam_size sequences exist). `state` is
  (shared, rows) as the module docstring says; `step_fn` must be the same
  object across calls, so the search compiles once.
  """
  if beam_size < 1:
    raise ValueError(f'beam_size={beam_size} must be >= 1')
  if length_penalty < 0:
    raise ValueError(f'length_penalty={length_penalty} must be >= 0 (the '
                     'early stop assumes the penalty grows with length)')
  return _search(step_fn, state, first_tokens, num_tokens=num_tokens,
                 beam_size=beam_size, eos_id=eos_id,
                 length_penalty=float(length_penalty), pad_id=pad_id)
