"""Expert demonstrations for bc and gail: a PPO run's greedy episodes as (s, a)."""

from etils import epath
import numpy as np

from lib.errors import DataError

EXPERT_FILE = 'expert.npz'


def has_expert(workdir: str) -> bool:
  return (epath.Path(workdir) / EXPERT_FILE).exists()


def load_expert(workdir: str) -> dict[str, np.ndarray]:
  """{'obs', 'action'} saved by a PPO run in `workdir`."""
  file = epath.Path(workdir) / EXPERT_FILE
  if not file.exists():
    raise DataError(f'no expert trajectories at {file}: train PPO there first '
                    '(python -m launch.train --config=projects/rl/config.py '
                    f'--workdir={workdir}) or set config.expert_workdir')
  with file.open('rb') as f:
    data = np.load(f)
    return {'obs': data['obs'], 'action': data['action']}


def save_expert(workdir: str, trajectories, seed_returns):
  """Saves the best seed's episodes: `trajectories` is (obs, actions, alive),
  each [seeds, T, E, ...], as `play` returns them."""
  best = int(np.argmax(seed_returns))
  obs, actions, alive = (np.asarray(x[best]) for x in trajectories)
  keep = alive > 0
  with (epath.Path(workdir) / EXPERT_FILE).open('wb') as f:
    np.savez(f, obs=obs[keep], action=actions[keep])
