"""Class probabilities of trained models on val and test, with and without TTA.

Every process predicts its own part of a split and receives every process's
outputs (lib.predict.Predictor), so accuracies, ensemble averages and
pseudo-labels cover the whole split and agree on every process.
"""

import ml_collections
import numpy as np

from lib.data import splits
from projects.cnn import tta

EVAL_SPLITS = ('val', 'test')
Outputs = dict[str, np.ndarray]  # {'probs': [N, K], 'label': [N]}


def accuracy(outputs: Outputs) -> float:
  return float(np.mean(np.argmax(outputs['probs'], -1) == outputs['label']))


class Evaluator:
  """Predicts with a trained state's (params, model_state) on `eval_data`.

  `eval_data` holds each split's process-local part, as an Experiment's.
  """

  def __init__(self, config: ml_collections.ConfigDict, model,
               eval_data: dict, mesh):
    self._batch_size = config.batch_size
    self._eval_data = {split: eval_data[split] for split in EVAL_SPLITS}
    self._plain = tta.make_predictor(model, mesh)
    self._tta = None
    if tta.is_on(config.tta):
      self._tta = tta.make_predictor(model, mesh, flip=config.tta.flip,
                                     shift=config.tta.shift)

  @property
  def uses_tta(self) -> bool:
    return self._tta is not None

  def _predict(self, state, source, with_tta: bool) -> Outputs:
    predictor = self._tta if with_tta else self._plain
    return predictor((state.params, state.model_state), source,
                     self._batch_size, all_processes=True)

  def split_outputs(self, state) -> dict[str, Outputs]:
    """{'val', 'test', and 'val_tta', 'test_tta' when TTA is on}."""
    out = {}
    for split, source in self._eval_data.items():
      out[split] = self._predict(state, source, with_tta=False)
      if self.uses_tta:
        out[f'{split}_tta'] = self._predict(state, source, with_tta=True)
    return out

  def tta_report(self, state, summary) -> dict[str, float]:
    """{'<split>/tta_accuracy'} as a loop Task's `report`; {} without TTA."""
    del summary
    if not self.uses_tta:
      return {}
    return {f'{split}/tta_accuracy': accuracy(
        self._predict(state, source, with_tta=True))
            for split, source in self._eval_data.items()}

  def probs(self, state, images: np.ndarray) -> np.ndarray:
    """[N, K] for `images` (the same on every process), with TTA when it is on.

    Each process predicts its share; the rows come back in the images' order.
    """
    source = splits.shard_for_process(
        {'image': images, 'index': np.arange(len(images))})
    outputs = self._predict(state, source, with_tta=self.uses_tta)
    probs = np.empty_like(outputs['probs'])
    probs[outputs['index']] = outputs['probs']
    return probs


def accuracies(outputs: dict[str, Outputs]) -> dict[str, float]:
  """{'<split>/accuracy', '<split>/tta_accuracy'} of `split_outputs`."""
  out = {}
  for name, split_outputs in outputs.items():
    split, _, suffix = name.partition('_')
    metric = 'tta_accuracy' if suffix else 'accuracy'
    out[f'{split}/{metric}'] = accuracy(split_outputs)
  return out
