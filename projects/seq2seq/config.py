"""Configs for HW5: machine translation, GRU with attention and transformer.

Variants (`--config=projects/seq2seq/config.py:VARIANT`):
  (none)          the synthetic language pair (synthetic.py), generated
                  offline: GRU + attention against the transformer.
  quick           the same pair, one small transformer (1 layer, no dropout,
                  150 steps): the tour.
  multi30k        Multi30k German -> English (files in data.multi30k_dir;
                  test = test_2016_flickr), a 3-layer transformer of width
                  256 as in bentrevett/pytorch-seq2seq; --config.data.
                  direction=en-de for the other way.
  tatoeba         Tatoeba English -> Chinese (data.tatoeba_path), a fixed
                  held-out split with no sentence in two splits.
  tfds            a TFDS translation set by name (data.tfds_name, e.g.
                  'wmt14_translate/de-en'), prepared as array_record.

`systems` names what is trained and compared, each '<model>' or
'<model>+<change>+...': model gru | transformer; changes no_smoothing (label
smoothing off), scheduled_sampling (the schedule in `scheduled_sampling`),
back_translation (a reverse model translates the monolingual target side,
the forward model trains on the union; needs data.monolingual_fraction > 0).
Every system is evaluated with greedy and beam search on the test split.
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from projects.seq2seq import data as data_lib

VARIANTS = ('quick', 'multi30k', 'tatoeba', 'tfds')
MODELS = ('gru', 'transformer')
CHANGES = ('no_smoothing', 'scheduled_sampling', 'back_translation')
BACK_TRANSLATION_DECODING = ('greedy', 'beam', 'sample')
POSITIONS = ('sinusoidal', 'learned')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('seq2seq', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'seq2seq'
  config.systems = ('gru', 'transformer', 'transformer+no_smoothing',
                    'transformer+scheduled_sampling',
                    'transformer+back_translation')
  config.data = ml_collections.ConfigDict(dict(
      name='synthetic',  # synthetic | multi30k | tatoeba | tfds
      direction='en-toy',  # SOURCE-TARGET
      multi30k_dir='../shared/data/translation_multi30k',
      tatoeba_path='../shared/data/translation_cmn_eng/cmn.txt',
      val_fraction=0.05,  # tatoeba: of the sentence groups
      test_fraction=0.1,
      split_seed=0,
      tfds_name='wmt14_translate/de-en',
      tfds_splits=ml_collections.ConfigDict(dict(
          train='train', val='validation', test='test')),
      tfds_dir='',  # '' = ~/tensorflow_datasets
      max_train_examples=0,  # 0 = all; a seeded subsample of the pairs
      # Training pairs held out as the monolingual target-side corpus that
      # back-translation translates (kept out of every system's training).
      monolingual_fraction=0.8,
      buckets=(12, 18),  # padded lengths in tokens; longer ones are cut
      synthetic=ml_collections.ConfigDict(dict(train=6000, val=300,
                                               test=500)),
  ))
  # One sentencepiece vocabulary shared by both languages, trained on the
  # training split and kept in WORKDIR/vocab/ (a rerun reads it back).
  config.vocab = ml_collections.ConfigDict(dict(
      size=200,  # the synthetic pair: about one piece per word
      model_type='bpe',  # bpe | unigram
      character_coverage=1.0))  # 0.9995 for Chinese
  config.gru = ml_collections.ConfigDict(dict(
      embed_dim=64, hidden=128, attention_dim=128, dropout=0.1))
  config.transformer = ml_collections.ConfigDict(dict(
      num_layers=2, d_model=64, num_heads=4, ff_dim=128, dropout=0.1,
      positions='sinusoidal', pre_norm=True))
  config.label_smoothing = 0.1
  # The probability of reading the model's own token rises linearly from 0
  # at start_step to max_probability over ramp_steps (optax.linear_schedule).
  config.scheduled_sampling = ml_collections.ConfigDict(dict(
      max_probability=0.25, start_step=200, ramp_steps=400))
  config.back_translation = ml_collections.ConfigDict(dict(
      decoding='beam',  # greedy | beam | sample (Edunov et al. 2018)
      temperature=1.0))  # sample
  config.decoding = ml_collections.ConfigDict(dict(
      beam_size=5, length_penalty=0.6,
      max_length=20))  # generated tokens at most
  # Greedy BLEU on the first eval_bleu_examples validation pairs at every
  # evaluation (0: none); the teacher-forced loss uses the whole split.
  config.eval_bleu_examples = 300
  config.report = ml_collections.ConfigDict(dict(
      samples=5,  # test translations written to samples.md
      heatmaps=4))  # cross-attention heatmaps of test sentences
  config.batch_size = 64
  config.num_steps = 800
  config.log_every = 50
  config.eval_every = 400
  config.checkpoint_every = 400
  # Adam (0.9, 0.98, 1e-9) with the inverse-square-root schedule of
  # Vaswani et al.: linear warm-up to learning_rate, then
  # learning_rate * sqrt(warmup_steps / step).
  config.optimizer.update(name='adam', learning_rate=3e-3,
                          schedule='inverse_sqrt', warmup_steps=100,
                          grad_clip_norm=1.0)
  config.optimizer.b2 = 0.98
  config.optimizer.eps = 1e-9
  config.tour.metric = 'transformer/test/bleu_greedy'
  config.tour.mode = 'max'
  config.tour.target = 60.0
  config.tour.baseline = 'baseline/test/word_by_word_bleu'

  if arg == 'quick':
    config.systems = ('transformer',)
    config.data.monolingual_fraction = 0.0
    # One layer, one bucket, no dropout: each compiles once and quickly.
    config.transformer.update(num_layers=1, dropout=0.0)
    config.data.buckets = (18,)
    config.num_steps = 150
    config.eval_every = 150
    config.checkpoint_every = 0
    config.eval_bleu_examples = 0
    config.data.synthetic.update(train=2000, test=300)
  elif arg == 'multi30k':
    config.systems = ('transformer',)
    config.data.update(name='multi30k', direction='de-en',
                       monolingual_fraction=0.0,
                       buckets=(16, 24, 32, 48, 64))
    _small_real_corpus(config, max_length=64)
    config.gru.update(embed_dim=256, hidden=512, attention_dim=512,
                      dropout=0.3)
    config.eval_bleu_examples = 500
  elif arg == 'tatoeba':
    config.systems = ('transformer',)
    config.data.update(name='tatoeba', direction='en-zh',
                       monolingual_fraction=0.0,
                       buckets=(12, 16, 24, 32, 48))
    _small_real_corpus(config, max_length=48)
    config.vocab.character_coverage = 0.9995
  elif arg == 'tfds':
    config.systems = ('transformer',)
    config.data.update(name='tfds', direction='de-en',
                       monolingual_fraction=0.0,
                       buckets=(16, 32, 48, 64, 96, 128))
    config.vocab.update(size=32000, model_type='unigram')
    config.transformer.update(num_layers=6, d_model=512, num_heads=8,
                              ff_dim=2048, dropout=0.1)
    config.decoding.max_length = 128
    config.batch_size = 256
    config.num_steps = 100000
    config.eval_every = 5000
    config.checkpoint_every = 5000
    config.optimizer.update(learning_rate=7e-4, warmup_steps=4000)
  return config


def _small_real_corpus(config: ml_collections.ConfigDict, max_length: int):
  """Multi30k's and Tatoeba's setting: an 8k unigram vocabulary and the
  tutorial's 3-layer transformer of width 256."""
  config.vocab.update(size=8000, model_type='unigram')
  config.transformer.update(num_layers=3, d_model=256, num_heads=8,
                            ff_dim=512, dropout=0.1)
  config.decoding.max_length = max_length
  config.batch_size = 128
  config.num_steps = 20000
  config.eval_every = 2000
  config.checkpoint_every = 2000
  config.optimizer.update(learning_rate=7e-4, warmup_steps=4000)
  config.scheduled_sampling.update(start_step=4000, ramp_steps=10000)


def parse_system(name: str) -> tuple[str, frozenset]:
  """'transformer+scheduled_sampling' -> ('transformer', {'scheduled_sampling'})."""
  model, *changes = name.split('+')
  require(model in MODELS and set(changes) <= set(CHANGES) and
          len(set(changes)) == len(changes),
          f'config.systems: {name!r} is not <model>[+<change>...] with model '
          f'one of {MODELS} and distinct changes from {CHANGES}')
  return model, frozenset(changes)


def _positive_int(value, field: str):
  require(isinstance(value, int) and value > 0,
          f'config.{field}={value!r} must be a positive integer')


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first unusable field."""
  config_lib.validate(config)
  systems = tuple(config.systems)
  require(bool(systems) and len(set(systems)) == len(systems),
          f'config.systems={systems!r} must name distinct systems')
  changes = set().union(*(parse_system(s)[1] for s in systems))
  d = config.data
  config_lib.require_choice(d.name, 'data.name', data_lib.NAMES)
  data_lib.parse_direction(d.direction)
  for name in ('val_fraction', 'test_fraction'):
    require(0 < d[name] < 1, f'config.data.{name}={d[name]} must lie in (0, 1)')
  require(d.val_fraction + d.test_fraction < 1,
          'config.data.val_fraction + test_fraction must be below 1')
  require(0 <= d.monolingual_fraction < 1,
          f'config.data.monolingual_fraction={d.monolingual_fraction} must '
          'lie in [0, 1)')
  require('back_translation' not in changes or d.monolingual_fraction > 0,
          'config.systems: back_translation translates the monolingual '
          'corpus; set config.data.monolingual_fraction > 0 (e.g. 0.5)')
  require(isinstance(d.max_train_examples, int) and d.max_train_examples >= 0,
          f'config.data.max_train_examples={d.max_train_examples!r} must be '
          'an integer >= 0')
  buckets = tuple(d.buckets)
  require(bool(buckets) and all(isinstance(b, int) and b > 1 for b in buckets)
          and list(buckets) == sorted(set(buckets)),
          f'config.data.buckets={buckets!r} must be increasing lengths > 1')
  for split in ('train', 'val', 'test'):
    _positive_int(d.synthetic[split], f'data.synthetic.{split}')
  _positive_int(config.vocab.size, 'vocab.size')
  config_lib.require_choice(config.vocab.model_type, 'vocab.model_type',
                            ('unigram', 'bpe'))
  require(0 < config.vocab.character_coverage <= 1,
          'config.vocab.character_coverage must lie in (0, 1]')
  for field in ('embed_dim', 'hidden', 'attention_dim'):
    _positive_int(config.gru[field], f'gru.{field}')
  t = config.transformer
  for field in ('num_layers', 'd_model', 'num_heads', 'ff_dim'):
    _positive_int(t[field], f'transformer.{field}')
  require(t.d_model % t.num_heads == 0,
          f'config.transformer.d_model={t.d_model} must be a multiple of '
          f'num_heads={t.num_heads}')
  config_lib.require_choice(t.positions, 'transformer.positions', POSITIONS)
  for field, value in (('gru.dropout', config.gru.dropout),
                       ('transformer.dropout', t.dropout)):
    require(0 <= value < 1, f'config.{field}={value} must lie in [0, 1)')
  require(0 <= config.label_smoothing < 1,
          f'config.label_smoothing={config.label_smoothing} must lie in [0, 1)')
  s = config.scheduled_sampling
  require(0 <= s.max_probability <= 1,
          f'config.scheduled_sampling.max_probability={s.max_probability} '
          'must lie in [0, 1]')
  require(s.start_step >= 0 and s.ramp_steps > 0,
          'config.scheduled_sampling: start_step must be >= 0 and ramp_steps '
          '> 0')
  config_lib.require_choice(config.back_translation.decoding,
                            'back_translation.decoding',
                            BACK_TRANSLATION_DECODING)
  require(config.back_translation.temperature > 0,
          'config.back_translation.temperature must be > 0')
  _positive_int(config.decoding.beam_size, 'decoding.beam_size')
  _positive_int(config.decoding.max_length, 'decoding.max_length')
  require(config.decoding.length_penalty >= 0,
          'config.decoding.length_penalty must be >= 0')
  require(config.optimizer.schedule in ('inverse_sqrt', 'constant'),
          f'config.optimizer.schedule={config.optimizer.schedule!r}: choose '
          "'inverse_sqrt' or 'constant'")
  require(config.optimizer.learning_rate > 0,
          'config.optimizer.learning_rate must be > 0')
  require(config.optimizer.warmup_steps >= 0,
          'config.optimizer.warmup_steps must be >= 0')
  require(isinstance(config.eval_bleu_examples, int) and
          config.eval_bleu_examples >= 0,
          'config.eval_bleu_examples must be an integer >= 0')
