"""Reloading a trained meta-learner and meta-testing it on other episodes."""

import json

from etils import epath
import ml_collections

from lib import loop
from lib import mesh as mesh_lib
from lib.errors import ConfigError
from projects.meta import config as meta_config
from projects.meta import episodes as episodes_lib
from projects.meta import problem as problem_lib
from projects.meta import train


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = epath.Path(workdir) / 'config.json'
  if not path.exists():
    raise ConfigError(f'no meta-learning run in {workdir} (no config.json)')
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def restore(config, workdir: str, mesh):
  """(problem, params) of the latest checkpoint in `workdir`."""
  meta_config.validate(config)
  problem = problem_lib.load_problem(config)
  state = loop.restore_best(train.make_task(config, problem, mesh), workdir,
                            loop.Cadence.from_config(config))
  return problem, state.params


def evaluate(workdir: str, *, ways: int = 0, shots: int = 0, query: int = 0,
             episodes: int = 600, split: str = 'test') -> dict[str, float]:
  """The meta-test summary of the latest checkpoint in `workdir`.

  Ways, shots and query size default to the run's own (0); other ways than
  trained adapt from a zero head (the transfer baseline always does).
  """
  if episodes <= 0:
    raise ConfigError(f'--episodes={episodes} must be positive')
  config = load_config(workdir)
  mesh = mesh_lib.make_mesh(config.num_devices)
  problem, params = restore(config, workdir, mesh)
  task = config.task
  ways, shots = ways or task.ways, shots or task.shots
  if problem.regression and ways != 1:
    raise ConfigError('--ways must be 1 for sinusoid regression')
  evaluator = episodes_lib.EpisodeEvaluator(
      config, problem, mesh, ways=ways, shots=shots,
      query=query or task.eval_query)
  return evaluator.summary(params, split, episodes)
