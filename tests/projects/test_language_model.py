"""The character language models: contracts, causality, learning, sampling, errors."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.errors import ConfigError
from lib.errors import DataError
from projects.language_model import config as config_lib
from projects.language_model import data as data_lib
from projects.language_model import models
from projects.language_model import train

SHAKESPEARE = os.path.join(os.path.dirname(__file__), '..', '..', '..',
                           'shared', 'data', 'text_tinyshakespeare',
                           'input.txt')


def _quick(kind='gpt'):
  config = config_lib.get_config('quick' if kind == 'gpt' else f'quick_{kind}')
  config.plots = False
  config.sample_tokens = 120
  config.num_devices = 2
  config.num_steps = 200  # the tour's 300 reach 0.33 nats/char; 200 reach 0.45-0.58
  return config


@pytest.mark.parametrize('kind', config_lib.KINDS)
def test_models_map_tokens_to_logits(kind):
  config = _quick(kind)
  model = models.make_model(config, vocab_size=13)
  tokens = jnp.zeros((2, config.block_size), jnp.int32)
  params = model.init(jax.random.key(0), tokens)['params']
  out = models.logits(model, params, tokens)
  chex.assert_shape(out, (2, config.block_size, 13))
  chex.assert_tree_all_finite(out)


@pytest.mark.parametrize('kind', ['gpt', 'lstm'])
def test_models_never_see_the_future(kind):
  config = _quick(kind)
  model = models.make_model(config, vocab_size=13)
  tokens = jax.random.randint(jax.random.key(1), (2, config.block_size), 0, 13)
  params = model.init(jax.random.key(0), tokens)['params']
  out = models.logits(model, params, tokens)
  later = tokens.at[:, 10].set((tokens[:, 10] + 1) % 13)
  moved = models.logits(model, params, later)
  np.testing.assert_allclose(moved[:, :10], out[:, :10], atol=1e-5)
  assert float(jnp.max(jnp.abs(moved[:, 10:] - out[:, 10:]))) > 1e-4


@pytest.mark.parametrize('kind', ['gpt', 'gru'])
def test_step_functions_agree_with_the_full_pass(kind):
  config = _quick(kind)
  model = models.make_model(config, vocab_size=13)
  tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, 13)
  params = model.init(jax.random.key(0), tokens)['params']
  expected = models.logits(model, params, tokens)
  step_fn, init_state = models.make_step_fn(model, config.block_size)
  state = init_state(params, tokens[:, :3], 9)
  for t in range(2, 12):  # the prompt's last character, then the rest
    out, state = step_fn(tokens[:, t], state, t)
    np.testing.assert_allclose(out, expected[:, t], atol=1e-4)


def test_windows_cover_the_text_and_shard_across_processes():
  ids = np.arange(20, dtype=np.int32)
  every = data_lib.Windows(ids, 5)
  assert len(every) == 16
  np.testing.assert_array_equal(every[3]['tokens'], [3, 4, 5, 6, 7])
  disjoint = data_lib.Windows(ids, 5, stride=4)
  np.testing.assert_array_equal(
      [disjoint[i]['tokens'][0] for i in range(len(disjoint))], [0, 4, 8, 12])
  halves = [data_lib.Windows(ids, 5, shard=(p, 2)) for p in range(2)]
  assert len(halves[0]) + len(halves[1]) == len(every)
  with pytest.raises(DataError, match='block_size'):
    data_lib.Windows(ids[:3], 5)


def test_ngram_baselines_are_exact_on_a_periodic_text():
  ids = np.tile(np.arange(4, dtype=np.int32), 500)
  unigram = data_lib.ngram_nats(ids, ids, 4, 1)
  bigram = data_lib.ngram_nats(ids, ids, 4, 2)
  np.testing.assert_allclose(unigram, np.log(4), rtol=1e-3)
  assert bigram < 0.01  # each character determines the next


@pytest.fixture(scope='module')
def quick_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('lm')
  return {kind: (train.train_and_evaluate(_quick(kind), str(root / kind)),
                 root / kind) for kind in ('gpt', 'lstm')}


@pytest.mark.parametrize('kind', ['gpt', 'lstm'])
def test_quick_configs_learn_far_below_the_bigram_model(quick_runs, kind):
  result, workdir = quick_runs[kind]
  metrics = result.metrics
  assert metrics['baseline/bigram_val_nats_per_char'] > 1.5
  assert metrics['val/nats_per_char'] < 0.75, metrics
  assert metrics['val/nats_per_char'] < (
      0.5 * metrics['baseline/bigram_val_nats_per_char'])
  samples = (workdir / 'samples.txt').read_text()
  vocab = set(data_lib.embedded_text())
  assert len(samples) > 100 and set(samples) <= vocab
  assert json.loads((workdir / 'summary.json').read_text())['num_params'] > 0


def test_a_rerun_resumes_the_finished_run(quick_runs):
  result, workdir = quick_runs['gpt']
  again = train.train_and_evaluate(_quick('gpt'), str(workdir))
  assert again.metrics['val/nats_per_char'] == result.metrics[
      'val/nats_per_char']


@pytest.mark.skipif(not os.path.isfile(SHAKESPEARE),
                    reason='tiny Shakespeare is not in ../shared/data')
def test_tiny_shakespeare_loads_with_the_90_10_split():
  config = config_lib.get_config()
  config.data.path = SHAKESPEARE
  tokenizer, train_ids, val_ids = data_lib.load(config)
  assert tokenizer.vocab_size == 65
  assert len(train_ids) == 1003854 and len(val_ids) == 111540


def test_bad_configs_and_missing_files_fail_clearly(tmp_path):
  config = _quick()
  config.model.kind = 'transformerxl'
  with pytest.raises(ConfigError, match='model.kind'):
    train.build(config)
  config = _quick()
  config.model.num_heads = 3
  with pytest.raises(ConfigError, match='multiple of'):
    train.build(config)
  config = _quick()
  config.data.source, config.data.path = 'file', str(tmp_path / 'none.txt')
  with pytest.raises(DataError, match='no such file'):
    train.build(config)
  with pytest.raises(ConfigError, match='unknown language_model config'):
    config_lib.get_config('huge')
