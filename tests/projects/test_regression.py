"""HW1 regression: features, baselines, the CSV path, config errors and the launcher."""

import os
import subprocess
import sys

import numpy as np
import pytest

from lib import metric_log
from lib import trainer
from lib.errors import ConfigError
from lib.errors import DataError
from projects.regression import config as config_lib
from projects.regression import features
from projects.regression import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _quick_config(**data_fields):
  config = config_lib.get_config('quick')
  config.num_steps = 200
  config.plots = False
  config.num_devices = 2
  config.data.update(data_fields)
  return config


def test_quick_config_learns_and_beats_the_mean(tmp_path):
  config = _quick_config()
  metrics = trainer.train_and_evaluate(config, str(tmp_path),
                                       train.build(config)).metrics
  train_losses = [r['loss'] for r in metric_log.read_metrics(str(tmp_path))
                  if r['split'] == 'train']
  assert train_losses[-1] < 0.7 * train_losses[0]
  mean_mse = metrics['baseline/mean_predictor_val_mse']
  assert metrics['best/val/mse'] < 0.6 * mean_mse
  assert metrics['best/val/mse'] < 1.2 * metrics[
      'baseline/least_squares_val_mse']


def test_correlation_selection_finds_the_informative_columns():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 8))
  x[:, 6] = 1.0  # constant: r is defined as 0, never NaN
  y = 3.0 * x[:, 2] - 2.0 * x[:, 5] + 0.1 * rng.normal(size=500)
  names = [f'c{i}' for i in range(8)]
  np.testing.assert_array_equal(
      features.select_features(x, y, names, 'correlation', 2), [2, 5])
  np.testing.assert_array_equal(
      features.select_features(x, y, names, 'c5, c0', 0), [5, 0])
  np.testing.assert_array_equal(
      features.select_features(x, y, names, 'all', 0), np.arange(8))
  assert np.isfinite(features.pearson_r(x, y)).all()


@pytest.mark.parametrize('selection,k,message', [
    ('correlation', 9, 'num_features=9'),
    ('correlation', 0, 'num_features=0'),
    ('c1,nope', 0, "['nope']"),
])
def test_bad_selection_is_a_config_error(selection, k, message):
  x = np.zeros((10, 8))
  with pytest.raises(ConfigError, match=message.replace('[', r'\[')):
    features.select_features(x, np.zeros(10), [f'c{i}' for i in range(8)],
                             selection, k)


def test_least_squares_recovers_a_linear_target():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 5))
  y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 7.0
  mse = features.least_squares_mse(x[:150], y[:150], x[150:], y[150:])
  assert mse < 1e-10


def _write_csv(path, rows=240, seed=0):
  """A course-like file: an id, features repeated per day, target last."""
  rng = np.random.default_rng(seed)
  signal = rng.normal(size=(rows, 2)) * 3.0 + 10.0
  noise = rng.normal(size=(rows, 2))
  target = 2.0 * signal[:, 0] - signal[:, 1] + 0.1 * rng.normal(size=rows)
  header = 'id,noise,signal,noise,signal,target'
  table = np.column_stack([np.arange(rows), noise[:, 0], signal[:, 0],
                           noise[:, 1], signal[:, 1], target])
  np.savetxt(path, table, delimiter=',', header=header, comments='')


def test_csv_end_to_end(tmp_path):
  csv_path = tmp_path / 'data.csv'
  _write_csv(csv_path)
  config = _quick_config(source='csv', csv_path=str(csv_path),
                         drop_columns='id', feature_selection='correlation',
                         num_features=2)
  train_split, _, names = train.load_data(config)
  # The id is dropped, the target is the last column, repeats get suffixes.
  assert names == ['noise', 'signal', 'noise.1', 'signal.1']
  assert train_split['features'].shape[1] == 4
  experiment = train.build(config)
  assert experiment.train_data['features'].shape[1] == 2
  np.testing.assert_allclose(experiment.train_data['features'].mean(0), 0.0,
                             atol=1e-5)
  assert experiment.baselines['baseline/least_squares_val_mse'] < 0.05
  metrics = trainer.train_and_evaluate(config, str(tmp_path / 'run'),
                                       experiment).metrics
  assert metrics['best/val/mse'] < 0.2 * metrics[
      'baseline/mean_predictor_val_mse']

  config.data.feature_selection = 'signal,signal.1'
  assert train.build(config).train_data['features'].shape[1] == 2


def test_target_column_picks_the_last_repeat(tmp_path):
  csv_path = tmp_path / 'data.csv'
  csv_path.write_text('a,y,b,y\n1,2,3,4\n5,6,7,8\n')
  config = _quick_config(source='csv', csv_path=str(csv_path),
                         target_column='y')
  x, y, names = train.read_table(config.data)
  np.testing.assert_array_equal(y, [4, 8])
  np.testing.assert_array_equal(x, [[1, 2, 3], [5, 6, 7]])
  assert names == ['a', 'y', 'b']


def test_missing_or_bad_csv_is_a_data_error(tmp_path):
  config = _quick_config(source='csv', csv_path=str(tmp_path / 'none.csv'))
  with pytest.raises(DataError, match='no such file'):
    train.build(config)
  bad = tmp_path / 'bad.csv'
  bad.write_text('a,b\n1,2\n')
  config.data.csv_path = str(bad)
  config.data.target_column = 'missing'
  with pytest.raises(DataError, match="'missing'"):
    train.build(config)


def test_covid_config_resolves_against_the_current_directory(monkeypatch,
                                                             tmp_path):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(DataError, match=str(tmp_path.parent / 'shared')):
    train.build(config_lib.get_config('covid'))


@pytest.mark.parametrize('field,value,message', [
    ('data.source', 'excel', 'data.source'),
    ('data.val_fraction', 1.5, 'val_fraction'),
    ('data.val_fraction', 0.0, 'val_fraction'),
    ('data.num_features', 11, 'num_features=11'),
    ('data.feature_selection', 'bmi,height', "['height']"),
    ('model.dropout', 1.0, 'dropout'),
])
def test_bad_project_config_is_a_config_error(field, value, message):
  config = _quick_config(feature_selection='correlation', num_features=4)
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(ConfigError, match=message.replace('[', r'\[')):
    train.build(config)


def test_unknown_variant_is_a_config_error():
  with pytest.raises(ConfigError, match='nope'):
    config_lib.get_config('nope')


def _launch(*args):
  return subprocess.run(
      [sys.executable, '-m', 'launch.train',
       '--config=projects/regression/config.py:quick',
       '--config.num_devices=2', *args],
      cwd=REPO, capture_output=True, text=True, timeout=180)


def test_launcher_trains_and_prints_metrics(tmp_path):
  result = _launch(f'--workdir={tmp_path / "run"}', '--config.num_steps=60',
                   '--config.eval_every=20')
  assert result.returncode == 0, result.stderr[-2000:]
  printed = dict(line.split() for line in result.stdout.strip().splitlines())
  # 60 steps reach about half the mean predictor's error (3100 against 5954).
  assert float(printed['val/mse']) < 0.7 * float(
      printed['baseline/mean_predictor_val_mse'])
  assert 'baseline/least_squares_val_mse' in printed
  assert (tmp_path / 'run' / 'summary.json').exists()


def test_launcher_rejects_a_bad_value_in_one_line(tmp_path):
  result = _launch(f'--workdir={tmp_path / "run"}',
                   '--config.data.val_fraction=2')
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines()
            if line.startswith('error:')]
  assert len(errors) == 1 and 'val_fraction=2' in errors[0]
  assert not (tmp_path / 'run').exists()
