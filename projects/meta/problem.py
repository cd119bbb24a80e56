"""The data of a meta-learning run: class pools per split, and its batches.

Every batch is a pure function of a seed and a step (or an episode chunk's
index): each process draws the same global batch and keeps its own rows, so a
run on one process and on several sees the same tasks.
"""

import dataclasses

import numpy as np

from lib.data import splits
from projects.meta import tasks as tasks_lib

EVAL_SEED = 20220615  # episodes do not change with config.seed
SPLITS = ('train', 'val', 'test')


@dataclasses.dataclass
class Problem:
  """The data: class pools (None for sinusoid regression) per split."""
  name: str
  pools: dict[str, np.ndarray | None]

  @property
  def regression(self) -> bool:
    return self.name == 'sinusoid'

  @property
  def loss(self) -> str:
    return 'mse' if self.regression else 'cross_entropy'

  def sample_input(self):
    if self.regression:
      return np.zeros((1, 1), np.float32)
    return self.pools['train'][0, :1]

  def episodes(self, split, rng, num_tasks, ways, shots, query):
    if self.regression:
      return tasks_lib.sinusoid_tasks(rng, num_tasks, shots, query)
    return tasks_lib.episodes(rng, self.pools[split], num_tasks, ways, shots,
                              query)

  def pretrain_batch(self, rng, size):
    """Examples of all meta-train classes, for the transfer baseline."""
    if self.regression:
      task = tasks_lib.sinusoid_tasks(rng, size, 1, 0)
      return {'input': task['support_input'][:, 0],
              'label': task['support_label'][:, 0]}
    pool = self.pools['train']
    classes = rng.integers(0, pool.shape[0], size)
    return {'input': pool[classes, rng.integers(0, pool.shape[1], size)],
            'label': classes.astype(np.int32)}


def load_problem(config) -> Problem:
  data = config.data
  if data.name == 'sinusoid':
    return Problem('sinusoid', dict.fromkeys(SPLITS))
  if data.name == 'omniglot':
    pool = tasks_lib.load_omniglot_npz(data.omniglot_path, data.image_size)
    train, val, test = tasks_lib.split_classes(pool, data.num_val_classes,
                                               data.num_test_classes)
  else:
    background = tasks_lib.load_omniglot_tfds('train', data.tfds_data_dir,
                                              data.image_size)
    train, val, _ = tasks_lib.split_classes(background, data.num_val_classes,
                                            0)
    test = tasks_lib.load_omniglot_tfds('test', data.tfds_data_dir,
                                        data.image_size)
  if data.rotations:
    train = tasks_lib.with_rotations(train)
  return Problem(data.name, {'train': train, 'val': val, 'test': test})


def train_batch(config, problem: Problem, step: int) -> dict[str, np.ndarray]:
  """This process's rows of step `step`'s meta batch (or pretraining batch)."""
  rng = np.random.default_rng([config.seed, step])
  if config.method == 'transfer':
    batch = problem.pretrain_batch(rng, config.batch_size)
  else:
    t = config.task
    batch = problem.episodes('train', rng, config.batch_size, t.ways, t.shots,
                             t.query)
  return splits.contiguous_share(batch)


def episode_chunks(problem: Problem, split: str, num_episodes: int,
                   chunk: int, *, ways: int, shots: int, query: int):
  """This process's rows of each `chunk` episodes, enough for `num_episodes`.

  The episodes are the same whatever the seed, so every method and every run
  is tested on the same ones.
  """
  rng = np.random.default_rng([EVAL_SEED, SPLITS.index(split)])
  for _ in range(-(-num_episodes // chunk)):
    yield splits.contiguous_share(problem.episodes(split, rng, chunk, ways, shots, query))


def baselines(config, problem: Problem) -> dict[str, float]:
  if problem.regression:
    rng = np.random.default_rng([EVAL_SEED, SPLITS.index('test')])
    tasks = problem.episodes('test', rng, config.eval.test_episodes, 1,
                             config.task.shots, config.task.eval_query)
    return {'baseline/zero_mse': float(np.mean(tasks['query_label']**2))}
  return {'baseline/chance_accuracy': 1.0 / config.task.ways}
