"""Cross-attention heatmaps: which source pieces each output piece attended to."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from lib import plots


def plot_cross_attention(maps: list[np.ndarray], source_labels: list[list[str]],
                         output_labels: list[list[str]], path: str,
                         title: str = ''):
  """One heatmap per sentence: rows the output pieces, columns the source's.

  maps[i] is [len(output_labels[i]), len(source_labels[i])].
  """
  fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 4.2),
                           dpi=110, squeeze=False)
  for ax, weights, sources, outputs in zip(axes[0], maps, source_labels,
                                           output_labels):
    ax.imshow(weights, cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto')
    ax.set_xticks(range(len(sources)), sources, rotation=90, fontsize=7)
    ax.set_yticks(range(len(outputs)), outputs, fontsize=7)
    ax.set_xlabel('source')
  axes[0][0].set_ylabel('output')
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  plots.save_figure(fig, path)
