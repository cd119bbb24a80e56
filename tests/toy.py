"""A tiny classification experiment built straight from lib, for the library's own tests."""

import jax
import numpy as np

from lib import classifier
from lib import models
from lib import trainer
from tests.toy_config import toy_config  # noqa: F401  (re-exported)


def toy_data(n: int = 256, dim: int = 12, classes: int = 3, seed: int = 0):
  """Gaussian blobs: linearly separable enough to learn in a few dozen steps."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(classes, dim)) * 2.0
  label = rng.integers(0, classes, size=n).astype(np.int32)
  x = centres[label] + rng.normal(size=(n, dim))
  return {'input': x.astype(np.float32), 'label': label}


def toy_experiment(batch_norm: bool = True, dropout: float = 0.1,
                   data=None) -> trainer.Experiment:
  data = toy_data() if data is None else data
  model = models.MLP((32, 32), num_outputs=3, batch_norm=batch_norm,
                     dropout=dropout)

  loss_fn, eval_fn = classifier.classifier_fns(model)
  train = {k: v[:192] for k, v in data.items()}
  val = {k: v[192:] for k, v in data.items()}
  return trainer.Experiment(model=model, loss_fn=loss_fn, eval_fn=eval_fn,
                            train_data=train, eval_data={'val': val},
                            sample_input=train['input'][:1])


def params_close(a, b, atol=0.0):
  leaves = jax.tree.leaves(jax.tree.map(
      lambda x, y: np.max(np.abs(np.asarray(x) - np.asarray(y))), a, b))
  return max(leaves) <= atol
