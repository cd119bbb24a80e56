"""Contracts of lib.text: tokenizers, subwords, bucketed batches, losses."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import mesh as mesh_lib
from lib.errors import ConfigError
from lib.errors import DataError
from lib.text import batching
from lib.text import losses
from lib.text import subword
from lib.text import tokenizers

WORDS = ('the cat dog bird sees likes chases a big red small tree under near '
         'with happy').split()


def _sentences(num, seed):
  rng = np.random.default_rng(seed)
  return [' '.join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(num)]


@pytest.fixture(scope='module')
def corpus():
  return _sentences(300, seed=0)


@pytest.fixture(scope='module')
def subword_tokenizer(corpus, tmp_path_factory):
  return subword.train_subword(corpus, str(tmp_path_factory.mktemp('spm')), 40)


@pytest.fixture(scope='module', params=['char', 'subword'])
def tokenizer(request, corpus, subword_tokenizer):
  if request.param == 'char':
    return tokenizers.CharTokenizer.fit(''.join(corpus),
                                        specials=tokenizers.SPECIALS)
  return subword_tokenizer


def test_tokenizers_round_trip_with_the_documented_special_ids(tokenizer,
                                                               corpus):
  assert isinstance(tokenizer, tokenizers.Tokenizer)
  assert [tokenizer.special_id(name) for name in tokenizers.SPECIALS] == [
      tokenizers.PAD_ID, tokenizers.BOS_ID, tokenizers.EOS_ID,
      tokenizers.UNK_ID] == [0, 1, 2, 3]
  for sentence in corpus[:20]:
    ids = tokenizer.encode(sentence)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert np.all((ids > tokenizers.UNK_ID) & (ids < tokenizer.vocab_size))
    assert tokenizer.decode(ids) == sentence
    # decoder output: <bos> ... <eos> then padding decodes to the sentence
    assert tokenizer.decode([1, *ids, 2, 0, 0]) == sentence
  assert tokenizers.UNK_ID in tokenizer.encode('the cat Zebra')


def test_subword_vocabulary_is_shared_reloadable_and_deterministic(
    corpus, subword_tokenizer, tmp_path):
  assert subword_tokenizer.vocab_size == 40
  # Fewer pieces than words' characters: the vocabulary learned subwords.
  pieces = subword_tokenizer.pieces('the cat sees a dog')
  assert len(pieces) < len('thecatseesadog')
  reloaded = subword.SubwordTokenizer(subword_tokenizer.model_path)
  retrained = subword.train_subword(corpus, str(tmp_path), 40, name='again')
  for sentence in corpus[:20]:
    np.testing.assert_array_equal(reloaded.encode(sentence),
                                  subword_tokenizer.encode(sentence))
    np.testing.assert_array_equal(retrained.encode(sentence),
                                  subword_tokenizer.encode(sentence))
  # Two languages, one vocabulary: both round-trip.
  other = [s.upper() for s in corpus]
  shared = subword.train_subword(corpus + other, str(tmp_path), 80,
                                 name='shared', model_type='bpe')
  for sentence in (corpus[0], other[1]):
    assert shared.decode(shared.encode(sentence)) == sentence
  with pytest.raises(DataError, match='Vocabulary size too high'):
    subword.train_subword(corpus, str(tmp_path), 5000, name='huge')
  with pytest.raises(DataError, match='no sentencepiece model'):
    subword.SubwordTokenizer(str(tmp_path / 'missing.model'))


def test_seq2seq_fields_shift_the_target_by_bos():
  fields = batching.seq2seq_examples([np.array([7, 8])], [np.array([5, 6, 9])])
  np.testing.assert_array_equal(fields['source'][0], [7, 8, 2])
  np.testing.assert_array_equal(fields['decoder_input'][0], [1, 5, 6, 9])
  np.testing.assert_array_equal(fields['target'][0], [5, 6, 9, 2])


@pytest.fixture(scope='module')
def pairs():
  rng = np.random.default_rng(1)
  lengths = np.concatenate([rng.integers(1, 7, 100), rng.integers(7, 15, 60),
                            [20, 30, 31]])  # 3 longest: too few for a batch
  # Each source starts with its own token: an example's identity.
  sources = [np.r_[4 + i, rng.integers(4, 50, n - 1)]
             for i, n in enumerate(lengths)]
  targets = [rng.integers(4, 50, max(1, n - 2)) for n in lengths]
  return batching.seq2seq_examples(sources, targets)


BUCKETS = (8, 16, 32)


def test_bucketed_batches_have_only_declared_shapes_and_exact_masks(pairs):
  data = batching.BucketedBatches(pairs, BUCKETS, batch_size=16)
  assert data.local_batch == 16 and data.local_batch % 8 == 0
  # 32's 3 examples cannot fill a batch: 32 takes 16's examples whole.
  assert data.train_lengths == (8, 32)
  assert data.num_truncated == 0
  seen = []
  for step in range(data.steps_per_epoch):
    batch = data.train_batch(step, seed=0)
    length = batch['source'].shape[1]
    assert length in BUCKETS
    chex.assert_shape(list(batch.values()), (16, length))
    assert batch['source'].dtype == np.int32
    assert batch['target_mask'].dtype == bool
    np.testing.assert_array_equal(batch['target_mask'],
                                  batch['decoder_input_mask'])
    for field in pairs:  # no real token is 0 here: mask is tokens != pad
      np.testing.assert_array_equal(batch[f'{field}_mask'], batch[field] != 0)
    # decoder_input is target shifted right by one, after <bos>
    np.testing.assert_array_equal(batch['decoder_input'][:, 1:],
                                  np.where(batch['target_mask'][:, 1:],
                                           batch['target'][:, :-1], 0))
    seen.extend(batch['source'][:, 0].tolist())
  assert len(set(seen)) == len(seen) == 16 * data.steps_per_epoch  # none twice
  # Sharded over the 8 devices, the loss counts the global batch's tokens.
  sharded = mesh_lib.shard_batch(batch, mesh_lib.make_mesh())
  loss, count = jax.jit(lambda b: losses.masked_cross_entropy(
      jnp.zeros((*b['target'].shape, 5)), b['target'] % 5, b['target_mask'],
      0.1))(sharded)
  np.testing.assert_allclose(loss, np.log(5), rtol=1e-6)
  assert count == batch['target_mask'].sum()
  again = data.train_batch(3, seed=0)
  chex.assert_trees_all_equal(again, data.train_batch(3, seed=0))
  next_epoch = data.train_batch(3 + data.steps_per_epoch, seed=0)
  assert not np.array_equal(next_epoch['source'], again['source'])
  with pytest.raises(ConfigError, match='multiple of the number of devices'):
    batching.BucketedBatches(pairs, BUCKETS, batch_size=12)


def test_underfull_buckets_merge_into_longer_ones():
  def examples(*length_counts):
    return {'tokens': [np.ones(n, np.int32) for n, count in length_counts
                       for _ in range(count)]}
  # 5 of length 6 cannot fill a batch of 8: they train in bucket 16.
  data = batching.BucketedBatches(examples((3, 20), (6, 5), (12, 20)),
                                  (4, 8, 16), batch_size=8)
  assert data.train_lengths == (4, 16) and data.steps_per_epoch == 2 + 3
  # The longest bucket underfull: it takes the shorter ones.
  data = batching.BucketedBatches(examples((3, 20), (12, 3)), (4, 16),
                                  batch_size=8)
  assert data.train_lengths == (16,) and data.steps_per_epoch == 2
  with pytest.raises(ConfigError, match='more than the data holds'):
    batching.BucketedBatches(examples((3, 7)), (4, 16), batch_size=8)


def test_eval_batches_cover_every_example_once(pairs):
  data = batching.BucketedBatches(pairs, (4, 8, 16, 32), batch_size=8)
  indices, lengths = [], set()
  for batch in data.eval_batches():
    lengths.add(batch['source'].shape[1])
    real = batch['mask'] > 0
    indices.extend(batch['index'][real].tolist())
    for row, i in zip(batch['source'][real], batch['index'][real]):
      source = pairs['source'][i]
      np.testing.assert_array_equal(row[:len(source)], source)
  assert sorted(indices) == list(range(len(pairs['source'])))
  assert lengths == {4, 8, 16, 32}
  # Cut to the largest bucket when too long.
  short = batching.BucketedBatches(pairs, (8, 16), batch_size=8)
  assert short.num_truncated == 3
  assert {b['source'].shape[1] for b in short.eval_batches()} == {8, 16}


def test_label_smoothed_loss_equals_hand_computed_and_ignores_padding():
  a = 0.1
  # Row 0: softmax [1/4, 1/2, 1/4], label 1; row 1: uniform, label 2.
  logits = jnp.log(jnp.array([[[1.0, 2.0, 1.0], [1.0, 1.0, 1.0],
                               [5.0, 0.1, 0.1]]]))
  targets = jnp.array([[1, 2, 0]])
  mask = jnp.array([[True, True, False]])
  row0 = -(2 * a / 3) * np.log(1 / 4) - (1 - a + a / 3) * np.log(1 / 2)
  loss, count = losses.masked_cross_entropy(logits, targets, mask, a)
  np.testing.assert_allclose(loss, (row0 + np.log(3)) / 2, rtol=1e-6)
  assert count == 2
  unsmoothed, _ = losses.masked_cross_entropy(logits, targets, mask)
  np.testing.assert_allclose(unsmoothed, (np.log(2) + np.log(3)) / 2, rtol=1e-6)
  # Any logits at the padded position, even Inf: the same loss, zero gradient.
  for padded in ([1e4, -1e4, 0.0], [np.inf, 0.0, 0.0]):
    changed = logits.at[0, 2].set(jnp.array(padded))
    np.testing.assert_array_equal(
        losses.masked_cross_entropy(changed, targets, mask, a)[0], loss)
  grads = jax.grad(lambda x: losses.masked_cross_entropy(
      x, targets, mask, a)[0])(logits)
  chex.assert_trees_all_equal(grads[0, 2], jnp.zeros(3))
  # Row 1 ties: its argmax is 0, not the label 2.
  assert losses.token_accuracy(logits, targets, mask) == 0.5
  empty, zero = losses.masked_cross_entropy(logits, targets, mask & False, a)
  assert empty == 0 and zero == 0
