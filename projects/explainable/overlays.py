"""PNG figures of the explanations (matplotlib, saved with lib.plots)."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from lib import plots  # pylint: disable=g-import-not-at-top,wrong-import-position


def _show_image(ax, image):
  image = np.clip(np.asarray(image), 0.0, 1.0)
  if image.shape[-1] == 1:
    ax.imshow(image[..., 0], cmap='gray', vmin=0.0, vmax=1.0)
  else:
    ax.imshow(image)
  ax.set_xticks([])
  ax.set_yticks([])


def _show_map(ax, image, heatmap, signed: bool, alpha: float = 0.6):
  """The image in grey under the map: signed maps red/blue around 0, others
  black-to-yellow; each map scaled by its own largest magnitude."""
  heatmap = np.asarray(heatmap, np.float32)
  scale = max(float(np.abs(heatmap).max()), 1e-12)
  grey = np.asarray(image).mean(axis=-1)
  ax.imshow(grey, cmap='gray', vmin=0.0, vmax=1.0)
  if signed:
    ax.imshow(heatmap, cmap='bwr', vmin=-scale, vmax=scale, alpha=alpha)
  else:
    ax.imshow(heatmap, cmap='inferno', vmin=0.0, vmax=scale, alpha=alpha)
  ax.set_xticks([])
  ax.set_yticks([])


def attribution_grid(images, row_labels: list[str],
                     maps: dict[str, np.ndarray], signed: set[str], path: str,
                     title: str = ''):
  """Rows = images, columns = the image then one map per method."""
  rows, cols = len(images), len(maps) + 1
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4),
                           dpi=110, squeeze=False)
  for row, image in enumerate(images):
    _show_image(axes[row, 0], image)
    axes[row, 0].set_ylabel(row_labels[row], fontsize=7)
    for col, (name, method_maps) in enumerate(maps.items(), start=1):
      _show_map(axes[row, col], image, method_maps[row], name in signed)
      if row == 0:
        axes[row, col].set_title(name.replace('_', ' '), fontsize=8)
  axes[0, 0].set_title('image', fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  plots.save_figure(fig, path)


def sanity_maps(image, stage_names: list[str],
                maps: dict[str, list[np.ndarray]], signed: set[str],
                path: str):
  """One image's maps (rows: methods) as layers are randomized (columns)."""
  rows, cols = len(maps), len(stage_names)
  fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows + 0.5),
                           dpi=110, squeeze=False)
  for row, (name, stages) in enumerate(maps.items()):
    for col, heatmap in enumerate(stages):
      _show_map(axes[row, col], image, heatmap, name in signed)
      if row == 0:
        axes[row, col].set_title(stage_names[col], fontsize=7)
    axes[row, 0].set_ylabel(name.replace('_', ' '), fontsize=8)
  fig.suptitle('cascading randomization, output layer first', fontsize=9)
  fig.tight_layout()
  plots.save_figure(fig, path)


def surrogate_panels(depths, fidelity, accuracy, importances, path: str,
                     title: str = ''):
  """Fidelity and accuracy against tree depth; the pixels the tree splits on."""
  fig, (curve, heat) = plt.subplots(1, 2, figsize=(7.5, 3.2), dpi=110)
  curve.plot(depths, fidelity, marker='o', label='fidelity (agrees with net)')
  curve.plot(depths, accuracy, marker='s', label='accuracy (vs labels)')
  curve.set_xscale('log', base=2)
  curve.set_xticks(depths, [str(d) for d in depths])
  curve.set_xlabel('max tree depth')
  curve.set_ylim(0.0, 1.0)
  curve.legend(fontsize=7)
  image = heat.imshow(np.asarray(importances), cmap='inferno')
  heat.set_title(f'depth-{depths[-1]} tree: pixel importance', fontsize=8)
  heat.set_xticks([])
  heat.set_yticks([])
  fig.colorbar(image, ax=heat, fraction=0.046)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  plots.save_figure(fig, path)
