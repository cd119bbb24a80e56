"""A results row per compressed model: test accuracy, parameters, FLOPs, bytes.

Accuracy and the early-exit heads' probabilities come from lib.predict's
Predictor over every process's share of the test split (one compilation per
model); sizes and FLOPs are counted on the host from the variables.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lib import mesh as mesh_lib
from lib import predict
from lib.data import images as image_data
from lib.data import splits
from projects.compression import measure


class Evaluation:
  """Evaluates models on the test split and builds their results rows."""

  def __init__(self, data: image_data.ImageData, batch_size: int, mesh):
    self.test = splits.shard_for_process(data.test)
    self.sample = data.train['image'][:1]
    self._batch_size, self._mesh = batch_size, mesh
    self._predictors = {}

  def _predict(self, name: str, fn, model, variables):
    """`fn(model, variables, batch)` for every test example, all processes.

    `variables` are host arrays (or single-device ones made from them).
    """
    key = (name, repr(model))
    if key not in self._predictors:
      self._predictors[key] = predict.Predictor(
          lambda v, batch, _: fn(model, v, batch), self._mesh)
    # Host values (every process's the same) placed once for all batches.
    variables = jax.device_put(jax.tree.map(np.asarray, variables),
                               mesh_lib.replicated(self._mesh))
    return self._predictors[key](variables, self.test, self._batch_size,
                                 all_processes=True)

  def accuracy(self, model, variables) -> float:

    def correct(model, v, batch):
      logits = model.apply(v, batch['image'], train=False)
      return jnp.argmax(logits, -1) == batch['label']

    return float(np.mean(self._predict('correct', correct, model, variables)))

  def head_probabilities(self, model, variables):
    """(softmax of every head [heads, N, classes], labels [N]), test set."""

    def heads(model, v, batch):
      return {'label': batch['label'], 'probabilities': jax.nn.softmax(
          jnp.stack(model.apply(v, batch['image'], train=False), axis=1), -1)}

    outputs = self._predict('heads', heads, model, variables)
    return outputs['probabilities'].transpose(1, 0, 2), outputs['label']

  def row(self, name: str, model, variables, *, accuracy=None, sparse=False,
          model_bytes=None, note='') -> dict:
    return {
        'name': name,
        'test_accuracy': (self.accuracy(model, variables)
                          if accuracy is None else accuracy),
        'params': optax.tree_utils.tree_size(variables['params']),
        'nonzero_params': measure.num_nonzero(variables['params']),
        'flops': measure.flops(model, variables, self.sample, sparse=sparse),
        'bytes': (measure.float_bytes(variables) if model_bytes is None
                  else model_bytes),
        'note': note}
