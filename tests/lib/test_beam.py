"""lib.decoding.beam against exhaustive search on a tiny model with history."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.decoding import beam

V, EOS, T, PAD = 3, 2, 4, -1
KEYS = jax.random.split(jax.random.key(3), 2)
EMBED = jax.random.normal(KEYS[0], (V, V)) * 2.0
MIX = jax.random.normal(KEYS[1], (V, V))


def history_step(tokens, state, index):
  """Logits depend on the whole prefix through the carry h, so the search must
  reorder its rows with the beams; 'count' is a scalar leaf shared by all."""
  (embed, mix), rows = state
  h = 0.6 * rows['h'] + embed[tokens]
  logits = h @ mix + 0.1 * index
  return logits, ((embed, mix), {'h': h, 'count': rows['count'] + 1})


def exhaustive(first_token: int, h0: np.ndarray, alpha: float):
  """Every distinct finished sequence of at most T tokens with its score."""
  results = {}
  for seq in itertools.product(range(V), repeat=T):
    rows = {'h': jnp.asarray(h0)[None], 'count': jnp.int32(0)}
    token, logp, out = jnp.array([first_token]), 0.0, []
    for index, next_token in enumerate(seq):
      logits, (_, rows) = history_step(token, ((EMBED, MIX), rows), index)
      logp += float(jax.nn.log_softmax(logits[0])[next_token])
      out.append(next_token)
      token = jnp.array([next_token])
      if next_token == EOS:
        break
    length = len(out)
    key = tuple(out + [PAD] * (T - length))
    results[key] = logp / ((5.0 + length) / 6.0) ** alpha
  return sorted(results.items(), key=lambda kv: -kv[1])


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_a_wide_beam_finds_the_exhaustive_best(alpha):
  # 12 beams keep every candidate of a 3-token vocabulary over 4 steps
  # (at most 8 live prefixes, 24 continuations <= 2 * 12), so the search is
  # exact and must return the exhaustive top 12 in order.
  k = 12
  first = jnp.array([0, 1], jnp.int32)
  h0 = np.asarray(jax.random.normal(jax.random.key(5), (2, V)))
  rows = {'h': jnp.asarray(h0), 'count': jnp.int32(0)}
  tokens, scores = beam.beam_search(history_step, ((EMBED, MIX), rows), first,
                                    T, beam_size=k, eos_id=EOS,
                                    length_penalty=alpha, pad_id=PAD)
  chex.assert_shape(tokens, (2, k, T))
  chex.assert_shape(scores, (2, k))
  chex.assert_type(tokens, jnp.int32)
  for row in range(2):
    best = exhaustive(int(first[row]), h0[row], alpha)[:k]
    np.testing.assert_array_equal(tokens[row], [seq for seq, _ in best])
    np.testing.assert_allclose(scores[row], [s for _, s in best], rtol=1e-5)


def test_a_narrow_beam_returns_sorted_real_hypotheses_padded_after_eos():
  first = jnp.array([0, 1, 2], jnp.int32)
  rows = {'h': jnp.zeros((3, V)), 'count': jnp.int32(0)}
  tokens, scores = beam.beam_search(history_step, ((EMBED, MIX), rows), first,
                                    T, beam_size=2, eos_id=EOS,
                                    length_penalty=0.6, pad_id=PAD)
  tokens, scores = np.asarray(tokens), np.asarray(scores)
  assert np.all(np.diff(scores, axis=1) <= 0)
  assert np.all(scores > -1e29) and np.all(scores < 0)
  for seq in tokens.reshape(-1, T):
    ends = np.flatnonzero(seq == EOS)
    if ends.size:
      assert np.all(seq[ends[0] + 1:] == PAD)
    else:
      assert np.all(seq != PAD)
  for row in range(3):  # each is a real hypothesis with the score claimed
    scored = dict(exhaustive(int(first[row]), np.zeros(V), 0.6))
    for seq, score in zip(tokens[row], scores[row]):
      np.testing.assert_allclose(scored[tuple(seq)], score, rtol=1e-5)


def test_bad_arguments_are_refused():
  rows = {'h': jnp.zeros((1, V)), 'count': jnp.int32(0)}
  with pytest.raises(ValueError, match='beam_size'):
    beam.beam_search(history_step, ((EMBED, MIX), rows), jnp.zeros(1, jnp.int32),
                     T, beam_size=0, eos_id=EOS)
  with pytest.raises(ValueError, match='length_penalty'):
    beam.beam_search(history_step, ((EMBED, MIX), rows), jnp.zeros(1, jnp.int32),
                     T, beam_size=2, eos_id=EOS, length_penalty=-1.0)
