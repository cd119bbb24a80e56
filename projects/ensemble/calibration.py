"""Calibration and uncertainty of predicted class probabilities (numpy, host side).

`probs` are [N, K] predictive distributions, `labels` [N] integers. Members'
outputs are [N, M, K]; the ensemble's distribution is their mean.
"""

import numpy as np

from lib import plots
from lib import predict

_TINY = 1e-12


def nll(probs, labels) -> float:
  """Mean negative log-likelihood of the true class."""
  probs = np.asarray(probs, np.float64)
  return float(-np.mean(np.log(np.maximum(
      probs[np.arange(len(labels)), labels], _TINY))))


def brier(probs, labels) -> float:
  """Mean over examples of sum_k (p_k - [y = k])^2 (0 perfect, 2 worst)."""
  probs = np.asarray(probs, np.float64)
  onehot = np.eye(probs.shape[-1])[labels]
  return float(np.mean(np.sum((probs - onehot) ** 2, axis=-1)))


def reliability_bins(probs, labels, num_bins: int = 15):
  """(mean confidence, accuracy, count) per equal-width confidence bin.

  Confidence is the top probability; bin b holds (b/num_bins, (b+1)/num_bins]
  (the first bin includes 0). Empty bins have confidence and accuracy 0.
  """
  probs = np.asarray(probs, np.float64)
  confidence = probs.max(-1)
  correct = (probs.argmax(-1) == labels).astype(np.float64)
  index = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0,
                  num_bins - 1)
  count = np.bincount(index, minlength=num_bins).astype(np.float64)
  safe = np.maximum(count, 1)
  return (np.bincount(index, confidence, num_bins) / safe,
          np.bincount(index, correct, num_bins) / safe, count)


def ece(probs, labels, num_bins: int = 15) -> float:
  """Expected calibration error: sum_b n_b / N |accuracy_b - confidence_b|."""
  confidence, accuracy, count = reliability_bins(probs, labels, num_bins)
  return float(np.sum(count * np.abs(accuracy - confidence)) / count.sum())


def entropy(probs) -> np.ndarray:
  """Entropy (nats) of each distribution along the last axis."""
  probs = np.asarray(probs, np.float64)
  return -np.sum(probs * np.log(np.maximum(probs, _TINY)), axis=-1)


def mutual_information(member_probs) -> np.ndarray:
  """[N]: H[mean_m p_m] - mean_m H[p_m], the members' disagreement (BALD)."""
  return entropy(member_probs.mean(1)) - entropy(member_probs).mean(1)


def classification_metrics(probs, labels, num_bins: int = 15) -> dict:
  return {'accuracy': float(np.mean(probs.argmax(-1) == labels)),
          'nll': nll(probs, labels), 'brier': brier(probs, labels),
          'ece': ece(probs, labels, num_bins)}


def ensemble_metrics(member_probs, labels, num_bins: int = 15) -> dict:
  """The ensemble's metrics, member 0's ('member/...') and the members' mean.

  `member_probs` is [N, M, K].
  """
  metrics = classification_metrics(member_probs.mean(1), labels, num_bins)
  each = [classification_metrics(member_probs[:, m], labels, num_bins)
          for m in range(member_probs.shape[1])]
  for name in each[0]:
    metrics[f'member/{name}'] = each[0][name]
    metrics[f'member_mean/{name}'] = float(np.mean([e[name] for e in each]))
  return metrics


def ood_metrics(in_member_probs, out_member_probs) -> dict:
  """AUROC of telling out-of-distribution inputs (positive) from in-distribution.

  Scores: the ensemble's predictive entropy, its mutual information, and
  member 0's entropy (what a single model offers).
  """
  labels = np.r_[np.zeros(len(in_member_probs)), np.ones(len(out_member_probs))]
  both = np.concatenate([in_member_probs, out_member_probs])
  return {
      'auroc_entropy': predict.auroc(entropy(both.mean(1)), labels),
      'auroc_mutual_information': predict.auroc(mutual_information(both),
                                                labels),
      'member/auroc_entropy': predict.auroc(entropy(both[:, 0]), labels),
      'mean_entropy': float(entropy(out_member_probs.mean(1)).mean()),
      'mean_mutual_information': float(mutual_information(
          out_member_probs).mean()),
  }


def plot_reliability(curves: dict, path: str, num_bins: int = 15,
                     title: str = ''):
  """Reliability diagram: accuracy against confidence, one line per name.

  `curves` maps a name to (probs, labels).
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
  ax.plot([0, 1], [0, 1], 'k:', label='perfect calibration')
  for name, (probs, labels) in curves.items():
    confidence, accuracy, count = reliability_bins(probs, labels, num_bins)
    used = count > 0
    ax.plot(confidence[used], accuracy[used], marker='o',
            label=f'{name} (ECE {ece(probs, labels, num_bins):.3f})')
  ax.set_xlabel('confidence')
  ax.set_ylabel('accuracy')
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend(loc='upper left', fontsize=8)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  plots.save_figure(fig, path)
