"""The config fields every trained project shares, and their validation."""

import copy

import ml_collections

from lib.errors import ConfigError


def base_config() -> ml_collections.ConfigDict:
  """Defaults a project's `get_config()` starts from and overrides."""
  config = ml_collections.ConfigDict()
  config.project = ''
  config.seed = 0
  config.batch_size = 64  # global: split over every device of every process
  config.num_steps = 1000
  config.log_every = 50
  config.eval_every = 200
  config.checkpoint_every = 500  # 0: only at the end
  config.keep_checkpoints = 2
  config.num_devices = 0  # 0: every device
  config.plots = True
  config.log_grad_norm = False  # an extra pass over the gradients per step
  config.optimizer = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=1e-3, schedule='constant', warmup_steps=0,
      momentum=0.9, weight_decay=0.0, grad_clip_norm=0.0, decay_rate=0.01))
  # Stop when `metric` (e.g. 'val/mse') has not improved for `patience` evals.
  config.early_stopping = ml_collections.ConfigDict(dict(
      metric='', mode='min', patience=0))
  # What `python -m launch.tour` reports for this project's quick config.
  config.tour = ml_collections.ConfigDict(dict(
      metric='', mode='max', target=0.0, baseline=''))
  return config


def image_model_config(name: str = 'resnet') -> ml_collections.ConfigDict:
  """Fields of lib.models.make_image_classifier; each model reads its own."""
  return ml_collections.ConfigDict(dict(
      name=name,  # small_cnn | resnet | separable | mlp | maxout
      channels=(32, 64) if name == 'small_cnn' else (64, 128, 128, 256, 256),
      strides=(1, 2, 1, 2, 1),  # separable: one per entry of channels
      stem_channels=32,  # separable
      stage_sizes=(2, 2, 2),  # resnet: blocks per stage
      width=32,  # resnet: first stage's channels, doubled per stage
      stem='cifar',  # resnet: cifar | imagenet
      hidden=(240, 240),  # mlp, maxout: hidden widths (() for softmax regression)
      pieces=5,  # maxout: linear pieces per unit
      activation='relu',  # mlp: relu | gelu
      batch_norm=name not in ('mlp', 'maxout'),
      dropout=0.0,
      input_dropout=0.0))  # maxout


def stage_config(config, num_steps: int, **fields) -> ml_collections.ConfigDict:
  """A copy of `config` for one stage of a staged run (teacher, student,
  pretraining...): `num_steps` steps, eval_every at most that, `fields`
  replaced."""
  sub = copy.deepcopy(config)
  fields.update(num_steps=num_steps,
                eval_every=min(config.eval_every, num_steps))
  for name, value in fields.items():
    sub[name] = copy.deepcopy(value)
  return sub


def check_variant(project: str, variant: str | None, variants):
  """A config file's `get_config(variant)` accepts None/'' or one of `variants`."""
  if variant not in (None, '', *variants):
    raise ConfigError(f'unknown {project} config {variant!r}; choose one of '
                      f'{tuple(variants)} or none')


def require(ok: bool, message: str):
  """Raises ConfigError(message) unless `ok`: the one check configs build on."""
  if not ok:
    raise ConfigError(message)


def require_choice(value, field: str, choices):
  """`config.<field>` must be one of `choices`."""
  require(value in tuple(choices),
          f'config.{field}={value!r}: choose one of {tuple(choices)}')


def require_distinct_choices(values, field: str, choices):
  """`config.<field>` must be a non-empty tuple of distinct `choices`."""
  values = tuple(values)
  # ml_collections reads --config.FIELD=a,b as the one value 'a,b'.
  parts = tuple(part for v in values for part in str(v).split(','))
  hint = (f' (a tuple on the command line: "--config.{field}={parts!r}")'
          if len(parts) > len(values) else '')
  require(bool(values) and set(values) <= set(choices) and
          len(set(values)) == len(values),
          f'config.{field}={values!r}: choose distinct values from '
          f'{tuple(choices)}{hint}')


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first field with an unusable value."""
  for name in ('batch_size', 'num_steps', 'log_every', 'eval_every',
               'keep_checkpoints'):
    value = config[name]
    require(isinstance(value, int) and value > 0,
             f'config.{name}={value!r} must be a positive integer')
  for name in ('checkpoint_every', 'num_devices', 'seed'):
    value = config[name]
    require(isinstance(value, int) and value >= 0,
             f'config.{name}={value!r} must be an integer >= 0')
  stopping = config.early_stopping
  require(stopping.mode in ('min', 'max'),
           f"config.early_stopping.mode={stopping.mode!r} must be 'min' or 'max'")
  require(stopping.patience >= 0,
           f'config.early_stopping.patience={stopping.patience} must be >= 0')
  require(not stopping.patience or '/' in stopping.metric,
           'config.early_stopping.metric must name an eval metric as '
           f"'split/name' (e.g. 'val/loss'), got {stopping.metric!r}")
