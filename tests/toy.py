"""A tiny classification experiment built straight from lib, for the library's own tests."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import config as config_lib
from lib import models
from lib import trainer


def toy_data(n: int = 256, dim: int = 12, classes: int = 3, seed: int = 0):
  """Gaussian blobs: linearly separable enough to learn in a few dozen steps."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(classes, dim)) * 2.0
  label = rng.integers(0, classes, size=n).astype(np.int32)
  x = centres[label] + rng.normal(size=(n, dim))
  return {'input': x.astype(np.float32), 'label': label}


def toy_config(**overrides) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  config.project = 'toy'
  config.batch_size = 32
  config.num_steps = 40
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 10
  config.plots = False
  config.optimizer.learning_rate = 1e-2
  config.update(overrides)
  return config


def toy_experiment(batch_norm: bool = True, dropout: float = 0.1,
                   data=None) -> trainer.Experiment:
  data = toy_data() if data is None else data
  model = models.MLP((32, 32), num_outputs=3, batch_norm=batch_norm,
                     dropout=dropout)

  def loss_fn(params, model_state, batch, key):
    logits, model_state = models.apply_model(
        model, params, model_state, batch['input'], train=True, key=key)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return loss, ({'accuracy': accuracy}, model_state)

  def eval_fn(params, model_state, batch):
    logits, _ = models.apply_model(model, params, model_state, batch['input'],
                                   train=False)
    return {'loss': optax.softmax_cross_entropy_with_integer_labels(
                logits, batch['label']),
            'accuracy': (jnp.argmax(logits, -1) == batch['label']).astype(
                jnp.float32)}

  train = {k: v[:192] for k, v in data.items()}
  val = {k: v[192:] for k, v in data.items()}
  return trainer.Experiment(model=model, loss_fn=loss_fn, eval_fn=eval_fn,
                            train_data=train, eval_data={'val': val},
                            sample_input=train['input'][:1])


def params_close(a, b, atol=0.0):
  leaves = jax.tree.leaves(jax.tree.map(
      lambda x, y: np.max(np.abs(np.asarray(x) - np.asarray(y))), a, b))
  return max(leaves) <= atol
