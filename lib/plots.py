"""Pictures of a run: learning curves from its metrics file."""

import collections
import io

from etils import epath

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position


def save_figure(fig, path):
  """Saves a PNG to a local path or a URL (gs://...), then closes the figure."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png')
  plt.close(fig)
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(buffer.getvalue())


def plot_curves(curves: dict[str, list[tuple[float, float]]], path: str, *,
                xlabel: str = 'step', ylabel: str = '', title: str = '',
                logy: bool = False):
  """One line per named (x, y) series, saved as a PNG."""
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  for name, points in curves.items():
    if points:
      xs, ys = zip(*points)
      ax.plot(xs, ys, label=name, marker='.' if len(xs) < 30 else None)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if logy:
    ax.set_yscale('log')
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  save_figure(fig, path)


def plot_learning_curves(records: list[dict], path: str, title: str = ''):
  """Every metric logged for more than one split (e.g. train and val loss), one panel each."""
  series = collections.defaultdict(lambda: collections.defaultdict(list))
  for record in records:
    for name, value in record.items():
      if name not in ('step', 'split'):
        series[name][record['split']].append((record['step'], value))
  shared = [n for n, splits in series.items() if len(splits) > 1]
  names = shared or [n for n in series if n != 'steps_per_second'][:4]
  if not names:
    return
  fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6),
                           dpi=120, squeeze=False)
  for ax, name in zip(axes[0], names):
    for split, points in series[name].items():
      xs, ys = zip(*points)
      ax.plot(xs, ys, label=split)
    ax.set_title(name)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  save_figure(fig, path)


def image_grid(images, path: str, *, titles: list[str] | None = None,
               columns: int = 8, title: str = '', cmap: str = 'gray'):
  """Small images (filters, generated samples, reconstructions) in a grid, values in [0, 1]."""
  images = np.asarray(images, np.float32)
  count = len(images)
  columns = min(columns, count)
  rows = -(-count // columns)
  fig, axes = plt.subplots(rows, columns,
                           figsize=(1.2 * columns, 1.25 * rows + 0.4),
                           dpi=110, squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  for i, image in enumerate(images):
    ax = axes.ravel()[i]
    if image.ndim == 3 and image.shape[-1] == 3:
      ax.imshow(np.clip(image, 0.0, 1.0))
    else:
      image = image[..., 0] if image.ndim == 3 else image
      ax.imshow(image, cmap=cmap)
    if titles:
      ax.set_title(titles[i], fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  save_figure(fig, path)
