"""Contracts of lib.decoding.sampling on a tiny table 'model'."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from lib.decoding import sampling

V = 5
TABLE = jax.random.normal(jax.random.key(0), (V, V)) * 3.0  # next-token logits


def table_step(tokens, table, index):
  del index
  return table[tokens], table


def test_filter_logits_keeps_the_top_k_and_the_nucleus():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  kept = lambda **kw: np.asarray(sampling.filter_logits(logits, **kw) > -1e29)
  np.testing.assert_array_equal(kept(top_k=2), [[1, 1, 0, 0]])
  np.testing.assert_array_equal(kept(top_p=0.7), [[1, 1, 0, 0]])
  np.testing.assert_array_equal(kept(top_p=0.81), [[1, 1, 1, 0]])
  np.testing.assert_array_equal(kept(top_p=1e-6), [[1, 0, 0, 0]])
  np.testing.assert_array_equal(kept(), [[1, 1, 1, 1]])


def test_greedy_follows_the_argmax_chain():
  first = jnp.arange(V, dtype=jnp.int32)
  tokens = sampling.greedy(table_step, TABLE, first, 6)
  chex.assert_shape(tokens, (V, 6))
  chex.assert_type(tokens, jnp.int32)
  best = np.argmax(np.asarray(TABLE), -1)
  expected, last = [], np.arange(V)
  for _ in range(6):
    last = best[last]
    expected.append(last)
  np.testing.assert_array_equal(tokens, np.stack(expected, 1))


def test_top_k_one_and_a_tiny_nucleus_are_greedy():
  first = jnp.arange(V, dtype=jnp.int32)
  greedy = sampling.greedy(table_step, TABLE, first, 6)
  key = jax.random.key(3)
  np.testing.assert_array_equal(
      sampling.sample(table_step, TABLE, first, key, 6, top_k=1), greedy)
  np.testing.assert_array_equal(
      sampling.sample(table_step, TABLE, first, key, 6, top_p=1e-6), greedy)


def test_sampled_frequencies_follow_the_tempered_softmax():
  rows, temperature = 20000, 2.0
  first = jnp.zeros((rows,), jnp.int32)
  tokens = sampling.sample(table_step, TABLE, first, jax.random.key(1), 1,
                           temperature=temperature)
  counts = np.bincount(np.asarray(tokens[:, 0]), minlength=V) / rows
  expected = np.asarray(jax.nn.softmax(TABLE[0] / temperature))
  np.testing.assert_allclose(counts, expected, atol=0.015)


def test_rows_stop_at_eos_and_pad_afterwards():
  eos, pad = 1, 0
  table = jnp.full((V, V), -10.0).at[:, eos].set(0.0).at[3, 2].set(5.0)
  table = table.at[2, 4].set(5.0).at[4, eos].set(5.0)  # 3 -> 2 -> 4 -> eos
  first = jnp.array([3, 1], jnp.int32)
  tokens = sampling.greedy(table_step, table, first, 6, eos_id=eos, pad_id=pad)
  np.testing.assert_array_equal(tokens, [[2, 4, eos, pad, pad, pad],
                                         [eos, pad, pad, pad, pad, pad]])


def test_the_state_is_threaded_through_the_steps():
  def counting_step(tokens, count, index):
    logits = jax.nn.one_hot((count + index) % V, V) * 10.0
    return jnp.broadcast_to(logits, (tokens.shape[0], V)), count + 1

  tokens = sampling.greedy(counting_step, jnp.int32(0), jnp.zeros(2, jnp.int32),
                           4)
  np.testing.assert_array_equal(tokens, [[0, 2, 4, 1]] * 2)
