"""Meta-testing: adapting on held-out episodes, summarising query metrics.

Each chunk of episodes is sharded over the mesh (every process draws the same
chunk and passes its own rows), and the per-episode metrics come back
replicated, so every process computes the same summary.
"""

import jax
import numpy as np

from lib import mesh as mesh_lib
from lib import plots
from lib import predict
from projects.meta import learners
from projects.meta import problem as problem_lib


class EpisodeEvaluator:
  """Meta-tests parameters on a split's episodes (the same for every seed)."""

  def __init__(self, config, problem: problem_lib.Problem, mesh, *, ways: int,
               shots: int, query: int):
    self.config, self.problem, self.mesh = config, problem, mesh
    self.ways, self.shots, self.query = ways, shots, query
    self._compiled = {}

  def _fn(self, meta, steps, head_only):
    # Compiled once per way of adapting; adaptation_setup's meta for a key is
    # always the same.
    key = (meta.method, meta.inner_lr, steps, head_only)
    if key not in self._compiled:
      self._compiled[key] = jax.jit(
          lambda params, tasks: meta.evaluate(params, tasks, steps,
                                              head_only=head_only),
          in_shardings=(mesh_lib.replicated(self.mesh),
                        mesh_lib.batch_sharding(self.mesh)),
          out_shardings=mesh_lib.replicated(self.mesh))
    return self._compiled[key]

  def per_episode(self, params, split: str, num_episodes: int):
    """{metric: [episodes, steps + 1]} on `num_episodes` episodes of `split`."""
    meta, params, steps, head_only = learners.adaptation_setup(
        self.config, self.problem, params, self.ways)
    fn = self._fn(meta, steps, head_only)
    chunks = [fn(params, mesh_lib.shard_batch(tasks, self.mesh))
              for tasks in problem_lib.episode_chunks(
                  self.problem, split, num_episodes,
                  self.config.eval.batch_episodes, ways=self.ways,
                  shots=self.shots, query=self.query)]
    chunks = jax.device_get(chunks)
    return {name: np.concatenate([c[name] for c in chunks])[:num_episodes]
            for name in chunks[0]}

  def summary(self, params, split: str, num_episodes: int) -> dict:
    """Means after the last step, after 0 and 1 steps, and the 95% interval."""
    return summarize(self.per_episode(params, split, num_episodes))


def summarize(per_episode: dict[str, np.ndarray]) -> dict[str, float]:
  """{name, name_ci95, name_step0, name_step1} of [episodes, steps+1] values."""
  out = {}
  for name, per_step in per_episode.items():
    out[name], out[f'{name}_ci95'] = predict.mean_ci95(per_step[:, -1])
    for step in (0, 1):
      if step < per_step.shape[1] - 1:
        out[f'{name}_step{step}'] = float(per_step[:, step].mean())
  return out


def plot_adaptation(per_episode: dict[str, np.ndarray], method: str, path: str):
  """The mean query metric against inner steps, one line per metric."""
  plots.plot_curves(
      {f'{method} {name}': list(enumerate(per_step.mean(0).tolist()))
       for name, per_step in per_episode.items()},
      path, xlabel='inner steps', ylabel='meta-test query metric',
      title='adaptation on test episodes')
