"""Configs for the character-level language models (RNN, LSTM, GRU, GPT).

Variants (`--config=projects/language_model/config.py:VARIANT`):
  (none)       GPT at nanoGPT's CPU configuration on tiny Shakespeare.
  nanogpt_cpu  the same, named: nanoGPT's train_shakespeare_char CPU settings
               (4 layers, 4 heads, 128 wide, block 64, batch 12, 2,000
               iterations, dropout 0, AdamW lr 1e-3 cosine to 1e-4 over the
               run, 100 warm-up steps, betas (0.9, 0.99), grad clip 1).
  rnn, lstm, gru, gpt
               each model family on tiny Shakespeare, sized to about the same
               parameter count (~0.8M), on the same data, loss and budget.
  quick        GPT on the embedded text, a few seconds (the tour).
  quick_rnn, quick_lstm, quick_gru
               the recurrent families on the embedded text.

Data fields:
  source       'shakespeare' (`path` is tiny Shakespeare's input.txt), 'file'
               (any UTF-8 text file at `path`) or 'embedded' (text the
               project generates, offline).
  val_fraction the last share of the characters is the validation text
               (nanoGPT's 90/10 split).
Model fields: kind ('rnn', 'lstm', 'gru', 'gpt'); GPT: num_layers,
  num_heads, d_model, ff_dim, dropout; RNNs: num_layers, hidden, embed_dim.
Sampling: sample_tokens characters after `sample_prompt`, at temperature
  with top_k / top_p, written to WORKDIR/samples.txt.
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from lib.config import require_choice

KINDS = ('rnn', 'lstm', 'gru', 'gpt')
SOURCES = ('shakespeare', 'file', 'embedded')
VARIANTS = ('nanogpt_cpu', *KINDS, 'quick', 'quick_rnn', 'quick_lstm',
            'quick_gru')
SHAKESPEARE = '../shared/data/text_tinyshakespeare/input.txt'
# Sized to ~0.8M parameters each on tiny Shakespeare's 65 characters.
RNN_SIZES = {'rnn': 512, 'lstm': 256, 'gru': 288}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('language_model', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'language_model'
  config.data = ml_collections.ConfigDict(dict(
      source='shakespeare', path=SHAKESPEARE, val_fraction=0.1))
  config.block_size = 64
  config.model = ml_collections.ConfigDict(dict(
      kind='gpt', num_layers=4, num_heads=4, d_model=128, ff_dim=512,
      dropout=0.0, hidden=256, embed_dim=128))
  config.batch_size = 12
  config.num_steps = 2000
  config.log_every = 100
  config.eval_every = 250
  config.checkpoint_every = 500
  config.optimizer.update(dict(
      name='adamw', learning_rate=1e-3, schedule='cosine', warmup_steps=100,
      min_learning_rate=1e-4, weight_decay=0.1, b2=0.99, grad_clip_norm=1.0))
  config.sample_prompt = '\n'
  config.sample_tokens = 500
  config.temperature = 0.8
  config.top_k = 0
  config.top_p = 1.0
  config.tour.metric = 'val/nats_per_char'
  config.tour.mode = 'min'
  config.tour.baseline = 'baseline/bigram_val_nats_per_char'
  config.tour.target = 1.3

  kind = arg.removeprefix('quick_') if arg and arg.startswith('quick_') else arg
  if kind in RNN_SIZES:
    config.model.kind = kind
    config.model.num_layers = 2
    config.model.hidden = RNN_SIZES[kind]
  if arg and arg.startswith('quick'):
    config.data.source = 'embedded'
    config.batch_size = 32
    config.block_size = 32
    config.num_steps = 300
    config.log_every = 50
    config.eval_every = 150
    config.checkpoint_every = 0
    config.optimizer.warmup_steps = 20
    config.optimizer.learning_rate = 3e-3
    config.optimizer.min_learning_rate = 3e-4
    config.model.update(dict(num_layers=2, num_heads=2, d_model=64,
                             ff_dim=256, hidden=128, embed_dim=32))
    if kind in RNN_SIZES:
      config.model.num_layers = 1
    config.sample_tokens = 200
    # The grammar's own entropy is about 0.22 nats/char and the bigram
    # model's 1.69: a model that learned words and sentence structure is
    # far below 0.6.
    config.tour.target = 0.6
  return config


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError for a project field no run could use."""
  data, model = config.data, config.model
  require_choice(data.source, 'data.source', SOURCES)
  require(data.source == 'embedded' or bool(data.path),
          f'config.data.path is empty but data.source={data.source!r}')
  require(0.0 < data.val_fraction < 1.0,
          f'config.data.val_fraction={data.val_fraction} must lie in (0, 1)')
  require_choice(model.kind, 'model.kind', KINDS)
  require(config.block_size >= 2,
          f'config.block_size={config.block_size} must be >= 2')
  for name in ('num_layers', 'num_heads', 'd_model', 'ff_dim', 'hidden',
               'embed_dim'):
    require(isinstance(model[name], int) and model[name] > 0,
            f'config.model.{name}={model[name]!r} must be a positive integer')
  require(model.d_model % model.num_heads == 0,
          f'config.model.d_model={model.d_model} must be a multiple of '
          f'model.num_heads={model.num_heads}')
  require(0.0 <= model.dropout < 1.0,
          f'config.model.dropout={model.dropout} must lie in [0, 1)')
  require(config.temperature > 0,
          f'config.temperature={config.temperature} must be > 0')
  require(config.top_k >= 0 and 0.0 < config.top_p <= 1.0,
          f'config.top_k={config.top_k} must be >= 0 and config.top_p='
          f'{config.top_p} in (0, 1]')
  require(config.sample_tokens >= 0 and bool(config.sample_prompt),
          'config.sample_tokens must be >= 0 and config.sample_prompt '
          'non-empty')
