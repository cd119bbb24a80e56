"""HW1: a small MLP regressor trained with mean squared error.

`build(config)` loads the table that `config.data` names, holds out a
validation split, picks features on the training split only, standardizes
them with training statistics and returns the `Experiment` that `lib.trainer`
runs. Beside the MLP it measures two baselines on the same split: the
least-squares linear fit and the constant training mean.
"""

import os

from absl import logging
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import models
from lib import trainer
from lib.data import embedded
from lib.data import splits
from lib.data import tabular
from lib.errors import DataError
from projects.regression import config as config_lib
from projects.regression import features as features_lib


def read_table(data: ml_collections.ConfigDict
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """(features [N, D], target [N], feature names) of `data.csv_path`."""
  path = os.path.abspath(data.csv_path)
  if not os.path.isfile(path):
    raise DataError(f'config.data.csv_path={data.csv_path!r}: no such file '
                    f'({path}); point it at the course CSV')
  drop = tuple(name.strip() for name in data.drop_columns.split(',')
               if name.strip())
  table = tabular.read_csv(path, data.target_column or -1, drop_columns=drop)
  if not table.feature_names:
    raise DataError(f'{path}: no feature columns besides the target')
  return table.features, table.target, table.feature_names


def load_data(config: ml_collections.ConfigDict
              ) -> tuple[dict, dict, list[str]]:
  """(train, val, feature names): {'features': [N, D], 'target': [N]} each."""
  data = config.data
  if data.source == 'diabetes':
    source = embedded.load_diabetes()
    names = list(embedded.DIABETES_FEATURE_NAMES)
  else:
    x, y, names = read_table(data)
    source = {'features': x, 'target': y}
  train, val = splits.split_fraction(source, data.val_fraction, config.seed)
  return train, val, names


def prepare_features(config: ml_collections.ConfigDict, train: dict, val: dict,
                     names: list[str]) -> tuple[dict, dict]:
  """Keeps the selected columns, standardized with the training statistics."""
  kept = features_lib.select_features(
      train['features'], train['target'], names, config.data.feature_selection,
      config.data.num_features)
  logging.info('feature selection %r kept %d of %d features: %s',
               config.data.feature_selection, len(kept), len(names),
               ', '.join(names[j] for j in kept))
  train_x, val_x = tabular.standardize(train['features'][:, kept],
                                       val['features'][:, kept])
  return ({'features': train_x, 'target': train['target']},
          {'features': val_x, 'target': val['target']})


def make_loss_and_eval(model, target_mean: float, target_std: float):
  """MSE functions for lib.steps; the model predicts the standardized target."""

  def predict(params, model_state, x, *, train, key=None):
    outputs, model_state = models.apply_model(model, params, model_state, x,
                                              train=train, key=key)
    return target_mean + target_std * outputs[:, 0], model_state

  def loss_fn(params, model_state, batch, key):
    prediction, model_state = predict(params, model_state, batch['features'],
                                      train=True, key=key)
    mse = jnp.mean((prediction - batch['target'])**2)
    # Optimized in standardized units, so learning rates carry across data.
    return mse / target_std**2, ({'mse': mse}, model_state)

  def eval_fn(params, model_state, batch):
    prediction, _ = predict(params, model_state, batch['features'],
                            train=False)
    return {'mse': (prediction - batch['target'])**2}

  return loss_fn, eval_fn


def build(config: ml_collections.ConfigDict) -> trainer.Experiment:
  config_lib.validate(config)
  train, val, names = load_data(config)
  train, val = prepare_features(config, train, val, names)
  target_mean = float(np.mean(train['target']))
  target_std = float(np.std(train['target'])) or 1.0
  model = models.MLP(tuple(config.model.hidden), num_outputs=1,
                     dropout=config.model.dropout)
  loss_fn, eval_fn = make_loss_and_eval(model, target_mean, target_std)
  baselines = {
      'baseline/least_squares_val_mse': features_lib.least_squares_mse(
          train['features'], train['target'], val['features'], val['target']),
      'baseline/mean_predictor_val_mse': float(
          np.mean((val['target'] - target_mean)**2)),
  }
  logging.info('baselines on the validation split: %s', baselines)
  return trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=eval_fn,
      train_data=splits.shard_for_process(train),
      eval_data={'val': splits.shard_for_process(val)},
      sample_input=train['features'][:1], baselines=baselines)
