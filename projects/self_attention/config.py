"""Configs for HW4: speaker identification with self-attention.

Variants (`--config=projects/self_attention/config.py:VARIANT`):
  (none)             FSDD speaker identification (6 speakers, the wav files
                     in data.fsdd_dir), the course's sample model: linear
                     40 -> 80, one transformer encoder layer (2 heads, ff
                     256), mean pooling, a linear classifier.
  quick              the sample model on synthetic speakers (offline, a few
                     seconds: the tour).
  digits             FSDD spoken digit recognition (10 classes), the same model.
  attention_pooling  self-attention pooling instead of mean pooling.
  conformer          the course's strong baseline: a conformer block instead
                     of the transformer layer.
  am_softmax         the course's boss: conformer, self-attention pooling and
                     additive-margin softmax.
  tfds               TFDS `spoken_digit` (5 speakers; prepared with `tfds
                     build spoken_digit --file_format=array_record`).
  course             the course's VoxCeleb feature folder (data.course_dir,
                     600 speakers, 40 mels, segments of 128 frames) with its
                     schedule: AdamW 1e-3, 1000 warm-up steps, cosine, 70k
                     steps of 32.
Any variant takes `--config.data.task=digit` and
`--config.model.attention_kind=linear` (or linformer, synthesizer_dense,
synthesizer_random: lib/layers/attention.py).
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from lib.config import require_choice
from lib.layers import attention

VARIANTS = ('quick', 'digits', 'attention_pooling', 'conformer', 'am_softmax',
            'tfds', 'course')
SOURCES = ('fsdd', 'tfds', 'synthetic', 'course')
TASKS = ('speaker', 'digit')
ENCODERS = ('transformer', 'conformer')
POOLINGS = ('mean', 'attention')
LOSSES = ('softmax', 'am_softmax')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('self_attention', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'self_attention'
  config.data = ml_collections.ConfigDict(dict(
      source='fsdd',  # fsdd | tfds | synthetic | course
      task='speaker',  # speaker | digit (recordings only)
      fsdd_dir='../shared/data/spoken_digit/recordings',
      tfds_dir='',  # '' = ~/tensorflow_datasets
      course_dir='',  # holds metadata.json, mapping.json, uttr-*.pt
      n_mels=40,
      window_ms=25.0,
      hop_ms=10.0,
      # Frames kept per utterance (FSDD's longest is 2.28 s: 226 frames);
      # padding beyond an utterance's end is masked.
      max_frames=232,
      # Training crops a random segment of this many frames from each
      # utterance longer than it (the course's segment_len); evaluation sees
      # all max_frames.
      segment_frames=128,
      test_takes=5,  # FSDD's standard split: takes 0-4 are the test set
      val_fraction=0.1,  # course: held out of the training folder
      synthetic_speakers=6,
      synthetic_takes=10,  # recordings per speaker and word
      split_seed=0,  # the synthetic speakers' voices and recordings
  ))
  config.model = ml_collections.ConfigDict(dict(
      encoder='transformer',  # transformer | conformer
      d_model=80,
      num_layers=1,
      num_heads=2,
      ff_dim=256,
      dropout=0.1,
      attention_kind='softmax',  # any of lib.layers.attention.KINDS
      conv_kernel=15,  # conformer's depthwise convolution over frames
      pooling='mean',  # mean | attention
  ))
  # am_softmax: a cosine classifier trained with additive-margin softmax.
  config.loss = ml_collections.ConfigDict(dict(
      name='softmax', margin=0.35, scale=30.0))  # Wang et al. 2018's m, s
  config.batch_size = 32
  config.num_steps = 3000
  config.eval_every = 500
  config.log_every = 100
  config.checkpoint_every = 1000
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 200
  config.attention_plot = ml_collections.ConfigDict(dict(utterances=3))
  # PGD on the test waveforms after training (waveform_attack.py); () = off.
  config.attack = ml_collections.ConfigDict(dict(
      epsilons=(),  # L-inf budgets on samples in [-1, 1], e.g. (0.001, 0.004)
      num_steps=10,  # of epsilon / 4, from a random start
      num_examples=0,  # the first test recordings attacked (0: all)
      batch_size=50))
  config.tour.metric = 'test/accuracy'
  config.tour.mode = 'max'
  config.tour.target = 0.99
  config.tour.baseline = 'baseline/majority_class_accuracy'

  if arg == 'quick':
    config.data.source = 'synthetic'
    config.data.synthetic_takes = 6
    config.data.test_takes = 2
    config.data.max_frames = 96  # synthetic recordings last 0.3-0.85 s
    config.data.segment_frames = 64
    config.model.dropout = 0.0  # dropout's random masks add seconds of compile
    config.num_steps = 150
    config.eval_every = 150
    config.checkpoint_every = 0
    config.optimizer.warmup_steps = 20
    config.tour.target = 0.95
  elif arg == 'digits':
    config.data.task = 'digit'
  elif arg == 'attention_pooling':
    config.model.pooling = 'attention'
  elif arg == 'conformer':
    config.model.encoder = 'conformer'
  elif arg == 'am_softmax':
    config.model.encoder = 'conformer'
    config.model.pooling = 'attention'
    config.loss.name = 'am_softmax'
  elif arg == 'tfds':
    config.data.source = 'tfds'
  elif arg == 'course':
    config.data.source = 'course'
    config.data.max_frames = 512
    config.num_steps = 70000
    config.eval_every = 2000
    config.checkpoint_every = 10000
    config.optimizer.warmup_steps = 1000
    config.tour.target = 0.6  # the course's simple baseline
  return config


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first unusable field."""
  config_lib.validate(config)
  data, model, loss = config.data, config.model, config.loss
  require_choice(data.source, 'data.source', SOURCES)
  require_choice(data.task, 'data.task', TASKS)
  require(data.source != 'course' or data.task == 'speaker',
          "config.data.task='digit' needs recordings: the course's folder "
          'has speaker labels only')
  attack = config.attack
  require(all(0 < e <= 1 for e in attack.epsilons),
          f'config.attack.epsilons={attack.epsilons!r}: each must be in '
          '(0, 1] (samples are in [-1, 1])')
  require(not attack.epsilons or data.source != 'course',
          'config.attack.epsilons needs recordings: the course folder has '
          'features only')
  for name in ('num_steps', 'batch_size'):
    require(isinstance(attack[name], int) and attack[name] > 0,
            f'config.attack.{name}={attack[name]!r} must be a positive '
            'integer')
  require(attack.num_examples >= 0,
          f'config.attack.num_examples={attack.num_examples} must be >= 0')
  for name in ('n_mels', 'max_frames', 'segment_frames', 'test_takes',
               'synthetic_speakers', 'synthetic_takes'):
    require(isinstance(data[name], int) and data[name] > 0,
            f'config.data.{name}={data[name]!r} must be a positive integer')
  require(data.segment_frames <= data.max_frames,
          f'config.data.segment_frames={data.segment_frames} must be <= '
          f'config.data.max_frames={data.max_frames}')
  require(data.synthetic_speakers >= 2,
          'config.data.synthetic_speakers must be >= 2')
  require(0 < data.hop_ms <= data.window_ms,
          f'config.data.hop_ms={data.hop_ms} must lie in (0, window_ms='
          f'{data.window_ms}]')
  require_choice(model.encoder, 'model.encoder', ENCODERS)
  require_choice(model.pooling, 'model.pooling', POOLINGS)
  require_choice(model.attention_kind, 'model.attention_kind',
                 attention.KINDS)
  for name in ('d_model', 'num_layers', 'num_heads', 'ff_dim', 'conv_kernel'):
    require(isinstance(model[name], int) and model[name] > 0,
            f'config.model.{name}={model[name]!r} must be a positive integer')
  require(model.d_model % model.num_heads == 0,
          f'config.model.d_model={model.d_model} must be a multiple of '
          f'num_heads={model.num_heads}')
  require(0 <= model.dropout < 1,
          f'config.model.dropout={model.dropout} must lie in [0, 1)')
  require_choice(loss.name, 'loss.name', LOSSES)
  require(loss.margin >= 0, f'config.loss.margin={loss.margin} must be >= 0')
  require(loss.scale > 0, f'config.loss.scale={loss.scale} must be > 0')
  require(isinstance(config.attention_plot.utterances, int) and
          config.attention_plot.utterances >= 0,
          'config.attention_plot.utterances must be an integer >= 0')
