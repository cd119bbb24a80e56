"""The data layer: deterministic batches, splits, and the file readers."""

import gzip
from pathlib import Path

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lib import errors
from lib.data import batches
from lib.data import embedded
from lib.data import mnist_files
from lib.data import splits
from lib.data import tabular
from lib.data import tfds_source

MNIST_DIR = Path(__file__).parents[2].parent / 'shared/data/mnist'


def _source(size=10):
  return {'x': np.arange(size, dtype=np.float32) * 10,
          'y': np.arange(size, dtype=np.int32)}


# Batches.


def test_train_batch_is_deterministic_and_full():
  source = _source(10)
  for step in range(7):
    batch = batches.train_batch(source, 3, step, seed=1)
    chex.assert_trees_all_equal(batch, batches.train_batch(source, 3, step, 1))
    chex.assert_shape([batch['x'], batch['y']], (3,))
    np.testing.assert_array_equal(batch['x'], batch['y'] * 10)
  assert not np.array_equal(batches.train_batch(source, 3, 0, seed=1)['y'],
                            batches.train_batch(source, 3, 0, seed=2)['y'])


def test_train_batch_covers_each_example_once_per_epoch():
  source = _source(12)
  epochs = [np.concatenate([batches.train_batch(source, 4, step, 0)['y']
                            for step in range(e * 3, e * 3 + 3)])
            for e in range(2)]
  for seen in epochs:
    np.testing.assert_array_equal(np.sort(seen), np.arange(12))
  assert not np.array_equal(epochs[0], epochs[1])  # Reshuffled per epoch.


def test_train_batches_resume_from_start_step():
  source = _source(10)
  full = batches.train_batches(source, 4, seed=3)
  first = [next(full)['y'] for _ in range(8)]
  resumed = batches.train_batches(source, 4, seed=3, start_step=5)
  for expected in first[5:]:
    np.testing.assert_array_equal(next(resumed)['y'], expected)


@pytest.mark.parametrize('batch_size', [0, -1, 11])
def test_bad_batch_size_is_a_config_error(batch_size):
  with pytest.raises(errors.ConfigError, match='batch_size'):
    batches.train_batch(_source(10), batch_size, 0, seed=0)


def test_eval_batches_cover_every_example_once_with_padding_masked():
  batch_list = list(batches.eval_batches(_source(10), 4))
  assert len(batch_list) == 3
  for batch in batch_list:
    chex.assert_shape([batch['x'], batch['y'], batch['mask']], (4,))
    chex.assert_type(batch['mask'], np.float32)
  mask = np.concatenate([b['mask'] for b in batch_list])
  labels = np.concatenate([b['y'] for b in batch_list])
  assert mask.sum() == 10
  np.testing.assert_array_equal(labels[mask == 1], np.arange(10))
  np.testing.assert_array_equal(batch_list[-1]['mask'], [1, 1, 0, 0])
  np.testing.assert_array_equal(batch_list[-1]['y'], [8, 9, 0, 0])


def test_eval_batches_pad_to_a_common_batch_count():
  source = {'x': np.arange(10)}
  padded = list(batches.eval_batches(source, 4, num_batches=5))
  assert len(padded) == 5
  assert sum(b['mask'].sum() for b in padded) == 10
  assert not padded[-1]['mask'].any()
  assert batches.eval_batch_count(source, 4) == 3


def test_local_batch_size_single_process():
  assert batches.local_batch_size(32) == 32
  with pytest.raises(errors.ConfigError):
    batches.local_batch_size(0)


# Splits.


def test_split_fraction_is_disjoint_covering_and_deterministic():
  source = _source(20)
  rest, held_out = splits.split_fraction(source, 0.25, seed=0)
  assert len(held_out['y']) == 5 and len(rest['y']) == 15
  assert not set(rest['y']) & set(held_out['y'])
  np.testing.assert_array_equal(
      np.sort(np.concatenate([rest['y'], held_out['y']])), np.arange(20))
  np.testing.assert_array_equal(rest['x'], rest['y'] * 10)
  chex.assert_trees_all_equal(
      (rest, held_out), splits.split_fraction(source, 0.25, seed=0))
  with pytest.raises(errors.ConfigError):
    splits.split_fraction(source, 1.0, seed=0)


def test_take_and_shard_for_process():
  np.testing.assert_array_equal(splits.take(_source(), [3, 1])['y'], [3, 1])
  chex.assert_trees_all_equal(splits.shard_for_process(_source()), _source())


# Embedded data sets.


def test_digits():
  digits = embedded.load_digits()
  chex.assert_shape(digits['image'], (1797, 8, 8, 1))
  chex.assert_shape(digits['label'], (1797,))
  chex.assert_type([digits['image'], digits['label']], [np.float32, np.int32])
  assert digits['image'].min() == 0 and digits['image'].max() == 1
  assert set(digits['label']) == set(range(10))


def test_diabetes():
  diabetes = embedded.load_diabetes()
  chex.assert_shape([diabetes['features'], diabetes['target']], [(442, 10),
                                                                 (442,)])
  chex.assert_type([diabetes['features'], diabetes['target']], np.float32)
  assert len(embedded.DIABETES_FEATURE_NAMES) == 10
  assert diabetes['target'].min() >= 25  # Raw disease progression scores.


# CSV.


def _write(tmp_path, text, name='data.csv'):
  path = tmp_path / name
  path.write_text(text)
  return path


def test_read_csv(tmp_path):
  path = _write(tmp_path, 'id,a,b,y\n0,1,2,3\n1,4,5.5,6\n')
  table = tabular.read_csv(path, 'y')
  np.testing.assert_array_equal(table.features, [[1, 2], [4, 5.5]])
  np.testing.assert_array_equal(table.target, [3, 6])
  chex.assert_type([table.features, table.target], np.float32)
  assert table.feature_names == ['a', 'b']
  no_target = tabular.read_csv(path, None, drop_columns=())
  assert no_target.target is None and no_target.feature_names[0] == 'id'


@pytest.mark.parametrize('text,target,message', [
    ('', 'y', 'empty'),
    ('a,y\n', 'y', 'only a header'),
    ('a,y\n1,2\n3\n', 'y', r'line 3: 1 fields'),
    ('a,y\n1,2\n3,x\n', 'y', r"line 3, column 2 \('y'\): 'x'"),
    ('a,b\n1,2\n', 'y', "target column 'y'"),
])
def test_read_csv_malformed(tmp_path, text, target, message):
  path = _write(tmp_path, text)
  with pytest.raises(errors.DataError, match=message) as info:
    tabular.read_csv(path, target)
  assert 'data.csv' in str(info.value)


def test_read_csv_repeated_names_take_the_last_as_target(tmp_path):
  path = _write(tmp_path, 'id,y,x,y\n0,1,2,3\n1,4,5,6\n')
  table = tabular.read_csv(path, 'y')
  np.testing.assert_array_equal(table.target, [3, 6])
  assert table.feature_names == ['y', 'x']
  np.testing.assert_array_equal(table.features, [[1, 2], [4, 5]])
  by_index = tabular.read_csv(path, -1, drop_columns=())
  np.testing.assert_array_equal(by_index.target, [3, 6])
  assert by_index.feature_names == ['id', 'y', 'x']
  with pytest.raises(errors.DataError, match='no column 7'):
    tabular.read_csv(path, 7)


def test_read_csv_missing_file(tmp_path):
  with pytest.raises(errors.DataError, match='nope.csv: no such file'):
    tabular.read_csv(tmp_path / 'nope.csv', 'y')


def test_standardize():
  train = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
  scaled_train, scaled_test = tabular.standardize(train, train + 2)
  np.testing.assert_allclose(scaled_train, [[-1, 0], [1, 0]])
  np.testing.assert_allclose(scaled_test, [[1, 2], [3, 2]])


# IDX / MNIST.


def _idx_bytes(array):
  codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
  header = bytes([0, 0, codes[array.dtype.type], array.ndim])
  header += np.array(array.shape, '>u4').tobytes()
  return header + array.astype(array.dtype.newbyteorder('>')).tobytes()


@pytest.mark.parametrize('compress', [False, True])
@pytest.mark.parametrize('dtype', [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, compress, dtype):
  array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(dtype)
  data = _idx_bytes(array)
  path = tmp_path / 'x.idx'
  path.write_bytes(gzip.compress(data) if compress else data)
  loaded = mnist_files.read_idx(path)
  np.testing.assert_array_equal(loaded, array)
  assert loaded.dtype == dtype


def test_idx_bad_files(tmp_path):
  data = _idx_bytes(np.zeros((5, 3), np.uint8))
  truncated = tmp_path / 'truncated.idx'
  truncated.write_bytes(data[:-2])
  with pytest.raises(errors.DataError, match='truncated.idx.*truncated'):
    mnist_files.read_idx(truncated)
  truncated_gzip = tmp_path / 'truncated.gz'
  truncated_gzip.write_bytes(gzip.compress(data)[:-10])
  with pytest.raises(errors.DataError, match='truncated.gz'):
    mnist_files.read_idx(truncated_gzip)
  bad_magic = tmp_path / 'bad.idx'
  bad_magic.write_bytes(b'\x01\x02' + data[2:])
  with pytest.raises(errors.DataError, match='bad magic'):
    mnist_files.read_idx(bad_magic)


def test_load_mnist_names_missing_files(tmp_path):
  with pytest.raises(errors.DataError, match='t10k-labels-idx1-ubyte.gz'):
    mnist_files.load_mnist(tmp_path)


@pytest.mark.skipif(not MNIST_DIR.is_dir(),
                    reason=f'real MNIST files not found in {MNIST_DIR}')
def test_load_real_mnist():
  mnist = mnist_files.load_mnist(MNIST_DIR)
  chex.assert_shape([mnist['train']['image'], mnist['train']['label']],
                    [(60000, 28, 28, 1), (60000,)])
  chex.assert_shape([mnist['test']['image'], mnist['test']['label']],
                    [(10000, 28, 28, 1), (10000,)])
  chex.assert_type([mnist['test']['image'], mnist['test']['label']],
                   [np.uint8, np.int32])
  assert set(mnist['test']['label']) == set(range(10))


# TFDS.


def test_tfds_source_through_train_batch():
  with tfds.testing.mock_data(num_examples=20,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    source = tfds_source.load_tfds('mnist', 'train')
    assert len(source) == 20
    batch = batches.train_batch(source, 8, step=3, seed=0)
    chex.assert_shape([batch['image'], batch['label']], [(8, 28, 28, 1), (8,)])
    chex.assert_type(batch['image'], np.uint8)
    arrays = tfds_source.to_arrays(source, keys=['label'], limit=5)
    assert list(arrays) == ['label'] and arrays['label'].shape == (5,)


def test_tfds_not_prepared_says_how_to_fetch(tmp_path):
  with pytest.raises(errors.DataError, match='tfds build mnist'):
    tfds_source.load_tfds('mnist', 'train', data_dir=str(tmp_path))
