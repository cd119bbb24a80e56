"""What a run reports: train metrics over seeds, evaluation figures, return curves."""

import jax.numpy as jnp
import numpy as np

from lib import plots


def _finite_mean_std(values):
  """Mean and std of the finite entries of a vector (NaN if none)."""
  finite = jnp.isfinite(values)
  count = finite.sum()
  mean = jnp.where(finite, values, 0.0).sum() / count
  spread = jnp.where(finite, values - mean, 0.0)
  return mean, jnp.sqrt((spread ** 2).sum() / count)


def chunk_means(metrics):
  """[seeds, updates] metrics -> the mean over seeds of each seed's mean over
  the chunk, and the std over seeds of the episode return; jittable.

  An update in which no episode ended has a NaN episode return; the means
  leave it out (NaN only where no episode of any seed ended in the chunk).
  """
  per_seed = {name: jnp.nanmean(value, axis=1) for name, value in
              metrics.items()}
  means = {name: _finite_mean_std(value)[0] for name, value in
           per_seed.items()}
  means['episode_return_std'] = _finite_mean_std(
      per_seed['episode_return'])[1]
  return means


def seed_returns(per_seed) -> dict[str, float]:
  """The evaluation's figures from each seed's mean return."""
  per_seed = np.asarray(per_seed, np.float64)
  return {'mean_return': float(per_seed.mean()),
          'return_std_over_seeds': float(per_seed.std()),
          'worst_seed_return': float(per_seed.min())}


def plot_returns(records, path, title, updates_per_step: int = 1):
  """Training returns per update (mean and spread over seeds) and evaluations.

  `records` are a run's metrics.jsonl; a loop step is `updates_per_step`
  updates.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  train = [r for r in records if r['split'] == 'train']
  evals = [r for r in records if r['split'] == 'eval']
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  if train:
    updates = np.array([r['step'] for r in train]) * updates_per_step
    mean = np.array([r['episode_return'] for r in train])
    spread = np.array([r.get('episode_return_std', 0.0) for r in train])
    ax.plot(updates, mean, label='train episodes (mean over seeds)')
    ax.fill_between(updates, mean - spread, mean + spread, alpha=0.25,
                    label='+- std over seeds')
  if evals:
    ax.errorbar(np.array([r['step'] for r in evals]) * updates_per_step,
                [r['mean_return'] for r in evals],
                yerr=[r.get('return_std_over_seeds', 0.0) for r in evals],
                fmt='o', capsize=3, linestyle='--', alpha=0.8,
                label='evaluation (mean over seeds)')
  ax.set_xlabel('update')
  ax.set_ylabel('return')
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  plots.save_figure(fig, path)
