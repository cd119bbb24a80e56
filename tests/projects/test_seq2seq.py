"""HW5: the translation models' contracts, the loaders and splits, learning."""

import gzip
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import mesh as mesh_lib
from lib.errors import ConfigError
from lib.errors import DataError
from lib.text.tokenizers import BOS_ID, EOS_ID
from projects.seq2seq import config as config_lib
from projects.seq2seq import data
from projects.seq2seq import models
from projects.seq2seq import synthetic
from projects.seq2seq import train
from projects.seq2seq import training
from projects.seq2seq import translate

VOCAB = 13
MODELS = {
    'gru': models.GRUSeq2Seq(VOCAB, embed_dim=8, hidden=16, attention_dim=8,
                             dropout=0.1),
    'transformer': models.TransformerSeq2Seq(VOCAB, num_layers=2, d_model=16,
                                             num_heads=2, ff_dim=32,
                                             dropout=0.1, max_length=16),
}
# Two sources of 5 and 3 tokens (EOS last, then padding), targets of 6.
BATCH = {'source': np.array([[5, 6, 7, 8, EOS_ID], [9, 4, EOS_ID, 0, 0]],
                            np.int32),
         'decoder_input': np.array([[BOS_ID, 5, 6, 7, 8, 9],
                                    [BOS_ID, 4, 4, 0, 0, 0]], np.int32)}


@pytest.fixture(scope='module', params=sorted(MODELS))
def model_and_params(request):
  model = MODELS[request.param]
  params = jax.jit(model.init)({'params': jax.random.key(0),
                                'dropout': jax.random.key(1)}, BATCH)['params']
  return model, params


def test_models_map_a_batch_to_logits_and_attention_over_the_source(
    model_and_params):
  model, params = model_and_params
  apply = jax.jit(model.apply)
  logits = apply({'params': params}, BATCH)
  chex.assert_shape(logits, (2, 6, VOCAB))
  chex.assert_tree_all_finite(logits)
  weights = translate.cross_attention(model, params, BATCH['source'],
                                      BATCH['decoder_input'][:, 1:])
  chex.assert_shape(weights, (2, 5, 5))
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  assert np.all(weights[1, :, 3:] < 1e-6)  # padding gets no attention
  # The source's padding changes nothing: the second row alone, unpadded.
  alone = apply({'params': params}, {
      'source': BATCH['source'][1:, :3],
      'decoder_input': BATCH['decoder_input'][1:]})
  np.testing.assert_allclose(alone[0], logits[1], atol=1e-5)


def test_scheduled_sampling_at_probability_zero_is_teacher_forcing(
    model_and_params):
  model, params = model_and_params
  teacher_forced = jax.jit(model.apply)({'params': params}, BATCH)
  noise = jax.random.uniform(jax.random.key(3), BATCH['decoder_input'].shape)
  apply = jax.jit(lambda p: model.apply({'params': params}, BATCH,
                                        sampling_probability=p,
                                        sampling_noise=noise),
                  static_argnums=0)
  np.testing.assert_allclose(apply(0.0), teacher_forced, atol=1e-6)
  # At probability 1 it reads its own tokens: position 0 (BOS) is the same.
  sampled = apply(1.0)
  np.testing.assert_allclose(sampled[:, 0], teacher_forced[:, 0], atol=1e-6)
  assert np.abs(sampled - teacher_forced).max() > 1e-3


def test_scheduled_sampling_reads_predicted_tokens_where_noise_is_low():
  gold = jnp.array([[1, 5, 6, 7]])
  predicted = jnp.array([[1, 8, 9, 10]])
  noise = jnp.array([[0.0, 0.1, 0.9, 0.2]])
  np.testing.assert_array_equal(
      models.mixed_inputs(gold, predicted, noise, 0.5), [[1, 8, 6, 10]])


def _naive_greedy(model, params, source, steps):
  """Greedy by re-running the teacher-forced model on its own prefix."""
  apply = jax.jit(lambda tokens: model.apply(
      {'params': params}, {'source': source, 'decoder_input': tokens}))
  tokens = np.zeros((len(source), steps + 1), np.int32)
  tokens[:, 0] = BOS_ID
  for t in range(steps):
    tokens[:, t + 1] = np.argmax(apply(tokens[:, :-1])[:, t], -1)
  return tokens[:, 1:]


def test_decoding_through_lib_decoding_matches_a_naive_greedy_loop(
    model_and_params):
  model, params = model_and_params
  mesh = mesh_lib.make_mesh()
  source = np.tile(BATCH['source'], (4, 1))  # a batch for 8 devices
  translator = translate.Translator(model, mesh, max_tokens=6, beam_size=3)
  greedy = translator.tokens(params, source, 'greedy', batch_size=8)
  expected = _naive_greedy(model, params, source, 6)
  for row, want in zip(greedy, expected):  # equal up to the first EOS
    ends = np.flatnonzero(want == EOS_ID)
    stop = ends[0] + 1 if len(ends) else len(want)
    np.testing.assert_array_equal(row[:stop], want[:stop])
  beam = translator.tokens(params, source, 'beam', batch_size=8)
  chex.assert_shape(beam, greedy.shape)


def test_inverse_sqrt_schedule_warms_up_then_decays_as_one_over_sqrt_step():
  schedule = training.inverse_sqrt_schedule(1e-3, 100)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(50)), 5e-4, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(100)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(400)), 1e-3 * 0.5, rtol=1e-6)


def _write_tatoeba(path):
  """A small cmn.txt: a BOM, repeated English, a Chinese shared by two."""
  lines = []
  for i in range(60):
    lines.append(f'Sentence {i}.\t句子{i}。\tCC-BY 2.0 (France) #{i}')
    if i % 3 == 0:  # a second translation of the same English sentence
      lines.append(f'Sentence {i}.\t第{i}句。\tCC-BY 2.0 (France) #{i}b')
  # Different English, one Chinese: the two must stay in one split.
  lines.append('Hello there.\t你好。\tx')
  lines.append('Hi there.\t你好。\tx')
  path.write_text('\ufeff' + '\n'.join(lines) + '\n\n', encoding='utf-8')
  return len(lines)


def test_tatoeba_split_shares_no_sentence_across_splits(tmp_path):
  count = _write_tatoeba(tmp_path / 'cmn.txt')
  english, chinese = data.read_tatoeba(str(tmp_path / 'cmn.txt'))
  assert len(english) == count and english[0] == 'Sentence 0.'  # BOM gone
  corpus = data.load_tatoeba(str(tmp_path / 'cmn.txt'), 'en', 'zh',
                             val_fraction=0.2, test_fraction=0.2, seed=0)
  splits = corpus.splits
  assert sum(len(s['source']) for s in splits.values()) == count
  assert all(len(s['source']) for s in splits.values())
  for side in ('source', 'target'):
    sets = {name: set(s[side]) for name, s in splits.items()}
    assert not sets['train'] & sets['val'] and not sets['train'] & sets['test']
    assert not sets['val'] & sets['test']
  again = data.load_tatoeba(str(tmp_path / 'cmn.txt'), 'zh', 'en',
                            val_fraction=0.2, test_fraction=0.2, seed=0)
  assert again.splits['test']['target'] == splits['test']['source']
  assert again.source_language == 'zh'


def _write_multi30k(directory, sizes):
  for prefix, size in sizes.items():
    for lang in ('de', 'en'):
      with gzip.open(directory / f'{prefix}.{lang}.gz', 'wt',
                     encoding='utf-8') as f:
        f.write(''.join(f'{lang} Satz {prefix} {i} äöü\n' for i in range(size)))


def test_multi30k_loader_reads_each_split_in_either_direction(tmp_path):
  _write_multi30k(tmp_path, {'train': 5, 'val': 2, 'test_2016_flickr': 3})
  corpus = data.load_multi30k(str(tmp_path), 'de', 'en')
  assert {k: len(v['source']) for k, v in corpus.splits.items()} == {
      'train': 5, 'val': 2, 'test': 3}
  assert corpus.splits['test']['source'][2] == 'de Satz test_2016_flickr 2 äöü'
  assert corpus.splits['test']['target'][2] == 'en Satz test_2016_flickr 2 äöü'
  reverse = data.load_multi30k(str(tmp_path), 'en', 'de')
  assert reverse.splits == corpus.reversed().splits
  with gzip.open(tmp_path / 'val.en.gz', 'wt') as f:
    f.write('one line\n')
  with pytest.raises(DataError, match='2 de lines but 1 en'):
    data.load_multi30k(str(tmp_path), 'de', 'en')
  with pytest.raises(DataError, match='no such Multi30k'):
    data.load_multi30k(str(tmp_path / 'missing'), 'de', 'en')


def test_tfds_translation_set_through_mock_data():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_config = config_lib.get_config('tfds').data
  with tfds.testing.mock_data(num_examples=6,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    corpus = data.load_corpus(data_config)
  assert corpus.local and corpus.source_language == 'de'
  assert {k: len(v['source']) for k, v in corpus.splits.items()} == {
      'train': 6, 'val': 6, 'test': 6}
  assert all(isinstance(s, str) for s in corpus.splits['train']['target'])


def test_synthetic_pair_reorders_and_baselines_are_low():
  splits = synthetic.make_splits({'train': 200, 'test': 100}, seed=0)
  assert not set(splits['train']['source']) & set(splits['test']['source'])
  source, target = splits['train']['source'][0], splits['train']['target'][0]
  assert target.split()[-1] == synthetic.VERBS[source.split()[
      next(i for i, w in enumerate(source.split()) if w in synthetic.VERBS)]]
  corpus = data.Corpus(splits, 'en', 'toy')
  scores = train.baselines(corpus)
  assert scores['baseline/test/copy_source_bleu'] == 0.0
  assert scores['baseline/test/word_by_word_bleu'] < 10.0


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('seq2seq'))
  config = config_lib.get_config('quick')
  config.data.synthetic.update(val=64, test=64)
  config.num_devices = 2
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_quick_config_learns_far_above_the_trivial_baselines(quick_run):
  config, workdir, result = quick_run
  metrics = result.metrics
  assert metrics[config.tour.metric] > 60.0
  assert metrics['transformer/test/bleu_beam'] > 60.0
  assert metrics[config.tour.baseline] < 10.0
  assert metrics['baseline/test/copy_source_bleu'] == 0.0
  for name in ('results.md', 'summary.json', 'vocab/subword.model',
               'transformer/samples.md', 'transformer/cross_attention.png'):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, 'summary.json')) as f:
    assert json.load(f)[config.tour.metric] == metrics[config.tour.metric]


def test_a_rerun_restores_the_finished_run(quick_run):
  config, workdir, result = quick_run
  again = train.train_and_evaluate(config, workdir)
  assert again.metrics == result.metrics


def test_bad_configs_fail_with_one_clear_error(tmp_path):
  with pytest.raises(ConfigError, match='unknown seq2seq'):
    config_lib.get_config('nope')
  bad_fields = [
      ('systems', ('transformer+magic',), 'not <model>'),
      ('systems', ('lstm',), 'not <model>'),
      ('systems', ('gru', 'gru'), 'distinct'),
      ('data.direction', 'de', 'SOURCE-TARGET'),
      ('data.monolingual_fraction', 0.0, 'monolingual_fraction > 0'),
      ('data.buckets', (24, 12), 'increasing'),
      ('data.name', 'wmt', 'data.name'),
      ('transformer.num_heads', 3, 'multiple of'),
      ('label_smoothing', 1.0, 'label_smoothing'),
      ('scheduled_sampling.max_probability', 2.0, 'max_probability'),
      ('back_translation.decoding', 'top_k', 'back_translation.decoding'),
      ('optimizer.schedule', 'cosine', 'inverse_sqrt'),
  ]
  for field, value, message in bad_fields:
    config = config_lib.get_config()
    config.systems = ('gru', 'transformer+back_translation')
    section, _, name = field.rpartition('.')
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=message):
      config_lib.validate(config)
  config = config_lib.get_config('quick')
  config.data.direction = 'de-en'
  with pytest.raises(ConfigError, match='en-toy in either direction'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  config = config_lib.get_config('multi30k')
  config.data.multi30k_dir = str(tmp_path / 'missing')
  with pytest.raises(DataError, match='no such Multi30k'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')  # nothing written
