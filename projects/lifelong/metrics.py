"""The lecture's continual-learning metrics, from the accuracy matrix.

R[i, j] is the accuracy on task j after training on tasks 0..i; b[j] that of
the randomly initialized model on task j (GEM's paper, Lopez-Paz & Ranzato 2017):
  ACC = mean_j R[T-1, j]
  BWT = mean_{j < T-1} (R[T-1, j] - R[j, j])   (negative: forgetting)
  FWT = mean_{j > 0} (R[j-1, j] - b[j])       (what earlier tasks gave task j)

`write_report` turns a finished run's matrix into its summary entries,
accuracy_matrix.json and the heatmap.
"""

import os

import numpy as np

from lib import loop
from lib import plots
from projects.lifelong import tasks as tasks_lib


def lifelong_metrics(matrix, random_init) -> dict[str, float]:
  matrix = np.asarray(matrix, np.float64)
  random_init = np.asarray(random_init, np.float64)
  num_tasks = matrix.shape[0]
  if matrix.shape != (num_tasks, num_tasks) or random_init.shape != (num_tasks,):
    raise ValueError(f'need a square [T, T] matrix and [T] random-init '
                     f'accuracies, got {matrix.shape} and {random_init.shape}')
  last = matrix[-1]
  diagonal = np.diag(matrix)
  return {
      'acc': float(last.mean()),
      'bwt': float(np.mean(last[:-1] - diagonal[:-1])),
      'fwt': float(np.mean(np.diag(matrix, 1) - random_init[1:])),
  }


def plot_accuracy_matrix(matrix, path: str, *, title: str = '',
                         task_names=None):
  """Heatmap of R[i, j] with each cell's value written in it."""
  matrix = np.asarray(matrix, np.float64)
  num_tasks = matrix.shape[0]
  names = task_names or [str(j) for j in range(num_tasks)]
  fig, ax = plots.plt.subplots(figsize=(1.1 * num_tasks + 2, 1.0 * num_tasks + 1.2),
                               dpi=120)
  image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap='viridis')
  for i in range(num_tasks):
    for j in range(num_tasks):
      ax.text(j, i, f'{matrix[i, j]:.2f}', ha='center', va='center',
              color='black' if matrix[i, j] > 0.6 else 'white', fontsize=9)
  ax.set_xticks(range(num_tasks), names)
  ax.set_yticks(range(num_tasks), names)
  ax.set_xlabel('evaluated on task')
  ax.set_ylabel('after training task')
  if title:
    ax.set_title(title)
  fig.colorbar(image, ax=ax, fraction=0.046, label='accuracy')
  fig.tight_layout()
  plots.save_figure(fig, path)


def task_names(config) -> list[str]:
  """The tasks' names in the run's order (`tasks.order`)."""
  tasks = config.tasks
  order = tasks_lib.run_order(config)
  if tasks.kind == 'rotated':
    return [f'{t * tasks.rotation_step:g}°' for t in order]
  if tasks.kind == 'split':
    width = tasks_lib.NUM_CLASSES // tasks.num_tasks
    return [f'{t * width}-{(t + 1) * width - 1}' for t in order]
  return [f'P{t}' for t in order]


def write_report(config, workdir: str, matrix, random_init) -> dict:
  """ACC, BWT, FWT and the final accuracy per task; files on the chief only."""
  matrix = np.asarray(matrix, np.float64)
  random_init = [float(a) for a in random_init]
  summary = {
      **lifelong_metrics(matrix, random_init),
      **{f'task{j}/accuracy': float(a) for j, a in enumerate(matrix[-1])},
      'baseline/random_init_accuracy': float(np.mean(random_init))}
  names = task_names(config)
  loop.write_json(workdir, 'accuracy_matrix.json', {
      'method': config.method, 'tasks': names, 'matrix': matrix.tolist(),
      'random_init': random_init})
  if config.plots and loop.is_chief():
    plot_accuracy_matrix(
        matrix, os.path.join(workdir, 'accuracy_matrix.png'),
        title=f'{config.method}: ACC {summary["acc"]:.3f}, '
        f'BWT {summary["bwt"]:+.3f}', task_names=names)
  return summary
