"""Configs for HW1: regression with a small MLP (the COVID-19 positive rate).

Variants (`--config=projects/regression/config.py:VARIANT`):
  (none)  scikit-learn's embedded diabetes data (442 patients, 10 features;
          offline).
  quick   the same, trained for a few seconds (the tour).
  covid   the course's CSV at `data.csv_path` (relative paths resolve
          against the current directory): 37 state one-hots and 16 survey
          features on each of 5 days; the target is day 5's tested_positive.

Data fields:
  source             'diabetes' or 'csv'.
  csv_path           the CSV file (source 'csv').
  target_column      the target's header name; when several columns share
                     it (the course file repeats its features per day), the
                     last one. Empty: the last column.
  drop_columns       comma-separated columns that are not features (a row id).
  val_fraction       share of the rows held out for validation, by `seed`.
  feature_selection  'all'; 'correlation': the `num_features` columns with
                     the largest |Pearson r| with the target on the training
                     split; or comma-separated feature names. Repeated header
                     names get pandas-style suffixes: cli, cli.1, cli.2, ...
"""

import ml_collections

from lib import config as config_lib
from lib.errors import ConfigError

VARIANTS = ('quick', 'covid')
SOURCES = ('diabetes', 'csv')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('regression', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'regression'
  config.data = ml_collections.ConfigDict(dict(
      source='diabetes',
      csv_path='',
      target_column='',
      drop_columns='',
      val_fraction=0.2,
      feature_selection='all',
      num_features=0,
  ))
  # One hidden layer: diabetes is nearly linear, and deeper nets overfit its
  # 353 training rows.
  config.model = ml_collections.ConfigDict(dict(hidden=(32,), dropout=0.0))
  config.batch_size = 64
  config.num_steps = 3000
  config.log_every = 100
  config.eval_every = 50
  config.checkpoint_every = 1000
  config.optimizer.learning_rate = 1e-3
  config.early_stopping.metric = 'val/mse'
  config.early_stopping.mode = 'min'
  config.early_stopping.patience = 20
  config.tour.metric = 'best/val/mse'
  config.tour.mode = 'min'
  # Seed 0's least-squares val MSE on diabetes is 2837 (the mean predictor's
  # 5954): the MLP should come within 2% of the linear fit or beat it.
  config.tour.target = 2900.0
  config.tour.baseline = 'baseline/mean_predictor_val_mse'

  if arg == 'quick':
    config.num_steps = 400
    config.log_every = 50
    config.checkpoint_every = 0
    config.early_stopping.patience = 5
  elif arg == 'covid':
    config.data.source = 'csv'
    config.data.csv_path = '../shared/data/covid_hw1/covid.train.csv'
    config.data.target_column = 'tested_positive'
    config.data.drop_columns = 'id'
    config.data.feature_selection = 'correlation'
    config.data.num_features = 16
    config.model.hidden = (16, 8)  # the course's sample model
    config.batch_size = 256
    config.num_steps = 4000
  return config


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError for a project field no data set could use."""
  data = config.data
  if data.source not in SOURCES:
    raise ConfigError(f'config.data.source={data.source!r}: choose one of '
                      f'{SOURCES}')
  if data.source == 'csv' and not data.csv_path:
    raise ConfigError("config.data.csv_path is empty but data.source='csv'")
  if not 0.0 < data.val_fraction < 1.0:
    raise ConfigError(f'config.data.val_fraction={data.val_fraction} must lie '
                      'in (0, 1)')
  if data.feature_selection == 'correlation' and data.num_features < 1:
    raise ConfigError(f'config.data.num_features={data.num_features} must be '
                      ">= 1 with feature_selection='correlation'")
  hidden = tuple(config.model.hidden)
  if not all(isinstance(width, int) and width > 0 for width in hidden):
    raise ConfigError(f'config.model.hidden={hidden} must be positive '
                      'integers')
  if not 0.0 <= config.model.dropout < 1.0:
    raise ConfigError(f'config.model.dropout={config.model.dropout} must lie '
                      'in [0, 1)')
