"""The training loop: learning, resuming, NaN stop, early stopping, outputs."""

import os

import chex
import jax
import jax.numpy as jnp
import pytest

from lib import errors
from lib import metric_log
from lib import trainer
from tests import toy


def test_learns_and_writes_its_outputs(tmp_path):
  config = toy.toy_config(num_steps=60, plots=True)
  result = trainer.train_and_evaluate(config, str(tmp_path),
                                      toy.toy_experiment())
  records = metric_log.read_metrics(str(tmp_path))
  train = [r for r in records if r['split'] == 'train']
  assert train[-1]['loss'] < 0.5 * train[0]['loss']
  assert result.metrics['val/accuracy'] > 0.8  # chance is 1/3
  assert result.metrics['step'] == 60
  for name in ('summary.json', 'learning_curves.png', 'tensorboard'):
    assert os.path.exists(tmp_path / name), name
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['50', '60']


def test_resume_matches_an_uninterrupted_run(tmp_path):
  whole = trainer.train_and_evaluate(toy.toy_config(num_steps=40),
                                     str(tmp_path / 'whole'),
                                     toy.toy_experiment())
  trainer.train_and_evaluate(toy.toy_config(num_steps=20),
                             str(tmp_path / 'parts'), toy.toy_experiment())
  parts = trainer.train_and_evaluate(toy.toy_config(num_steps=40),
                                     str(tmp_path / 'parts'),
                                     toy.toy_experiment())
  chex.assert_trees_all_equal(jax.device_get(parts.state.params),
                              jax.device_get(whole.state.params))
  steps = [(r['step'], r['split'])
           for r in metric_log.read_metrics(str(tmp_path / 'parts'))]
  assert len(steps) == len(set(steps))  # no step logged twice


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  first = trainer.train_and_evaluate(toy.toy_config(num_steps=20),
                                     str(tmp_path), toy.toy_experiment())
  poisoned = toy.toy_experiment()
  loss_fn = poisoned.loss_fn

  def nan_loss(*args):
    loss, aux = loss_fn(*args)
    return loss * jnp.nan, aux

  poisoned.loss_fn = nan_loss
  with pytest.raises(errors.NonFiniteLossError, match='at step 21'):
    trainer.train_and_evaluate(toy.toy_config(num_steps=40), str(tmp_path),
                               poisoned)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['10', '20']
  restored = trainer.train_and_evaluate(toy.toy_config(num_steps=20),
                                        str(tmp_path), toy.toy_experiment())
  chex.assert_trees_all_equal(jax.device_get(restored.state.params),
                              jax.device_get(first.state.params))


def test_early_stopping_stops_and_keeps_the_best(tmp_path):
  config = toy.toy_config(num_steps=200, eval_every=10)
  # Validation loss keeps falling, so 'max' never improves after the first eval.
  config.early_stopping.update(metric='val/loss', mode='max', patience=2)
  result = trainer.train_and_evaluate(config, str(tmp_path),
                                      toy.toy_experiment())
  assert result.metrics['step'] == 30
  assert result.metrics['best_step'] == 10
  best = trainer.restore_best(config, str(tmp_path), toy.toy_experiment())
  assert int(best.step) == 10
  again = trainer.train_and_evaluate(config, str(tmp_path),
                                     toy.toy_experiment())
  assert again.metrics['step'] == 30 and again.metrics['best_step'] == 10


@pytest.mark.parametrize('field,value,message', [
    ('batch_size', 0, 'batch_size'),
    ('batch_size', 12, 'multiple of the number of devices'),
    ('num_steps', -1, 'num_steps'),
])
def test_bad_config_values_are_named(tmp_path, field, value, message):
  config = toy.toy_config(**{field: value})
  with pytest.raises(errors.ConfigError, match=message):
    trainer.train_and_evaluate(config, str(tmp_path), toy.toy_experiment())
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_unknown_early_stopping_metric(tmp_path):
  config = toy.toy_config()
  config.early_stopping.update(metric='val/bleu', patience=1)
  with pytest.raises(errors.ConfigError, match='val/bleu'):
    trainer.train_and_evaluate(config, str(tmp_path), toy.toy_experiment())
