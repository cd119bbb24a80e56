"""Ensembles: models trained from different seeds, softmax outputs averaged."""

import numpy as np

from lib import plots
from projects.cnn import evaluation


def average_probs(member_outputs: list[dict]) -> dict:
  """The ensemble's outputs: each split's 'probs' averaged over the members."""
  return {name: {**outputs, 'probs': np.mean(
      [member[name]['probs'] for member in member_outputs], axis=0)}
          for name, outputs in member_outputs[0].items()}


def summarize(member_outputs: list[dict]) -> tuple[dict, dict]:
  """(metrics, curves) of the members' `Evaluator.split_outputs`.

  metrics: 'member_<i>/<split>/accuracy' (and tta_accuracy), their mean
  'member_mean/...', and the whole ensemble's '<split>/accuracy'. curves:
  each accuracy of the ensemble of the first k members, for every k.
  """
  metrics, curves = {}, {}
  for member, outputs in enumerate(member_outputs):
    metrics.update({f'member_{member}/{name}': value for name, value
                    in evaluation.accuracies(outputs).items()})
  for k in range(1, len(member_outputs) + 1):
    averaged = average_probs(member_outputs[:k])
    for name, value in evaluation.accuracies(averaged).items():
      curves.setdefault(name, []).append((k, value))
  for name, points in curves.items():
    metrics[name] = points[-1][1]
    metrics[f'member_mean/{name}'] = float(np.mean(
        [metrics[f'member_{i}/{name}'] for i in range(len(member_outputs))]))
  return metrics, curves


def plot_size(curves: dict, path: str, title: str) -> None:
  plots.plot_curves(curves, path, xlabel='members averaged',
                    ylabel='accuracy', title=title)
