"""HW12's training: whole runs jitted, vmapped over seeds, in chunks of updates.

`train_and_evaluate(config, workdir)` vmaps an `agent.Algorithm` over
`num_seeds` keys (split over the device mesh) and runs it on `lib.loop`, a
loop step being one jitted `scan` of `log_every` updates (config.num_steps,
eval_every and checkpoint_every count updates). LunarLander
(env.backend='gymnasium') runs its host loop from `lunar.py`.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import loop
from lib import mesh as mesh_lib
from lib import metric_log
from lib.errors import ConfigError
from projects.rl import agent as agent_lib
from projects.rl import config as rl_config
from projects.rl import experts
from projects.rl import lunar
from projects.rl import metrics as metrics_lib


def initial_runners(algorithm, config, sharding=None):
  keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
  return jax.jit(jax.vmap(algorithm.init), out_shardings=sharding)(keys)


def make_chunk(algorithm, length: int):
  """runners, expert -> (runners, metrics [seeds, length]): `length` updates."""

  def chunk(runner, expert):
    return jax.lax.scan(lambda r, _: algorithm.update(r, expert), runner,
                        None, length=length)

  return jax.vmap(chunk, in_axes=(0, None))


def make_play(algorithm, num_episodes: int, sharding=None):
  """(agent params [seeds], key, mode) -> (returns [seeds, episodes],
  trajectories [seeds, ...]), jitted; one compilation for every mode."""

  def play(agent_params, key, mode):
    keys = jax.random.split(key, jax.tree.leaves(agent_params)[0].shape[0])
    return jax.vmap(lambda p, k: algorithm.play(p, k, num_episodes, mode))(
        agent_params, keys)

  return jax.jit(play, out_shardings=sharding)


def _expert(config, workdir):
  """bc's and gail's demonstrations: from expert_workdir, or trained here."""
  if config.algorithm not in ('bc', 'gail'):
    return {}
  path = config.expert_workdir
  if not path:
    path = os.path.join(workdir, 'expert')
    if not experts.has_expert(path):  # a stage of its own, resumed there
      expert_config = rl_config.get_config('quick')
      expert_config.num_seeds = 1
      expert_config.plots = False
      with expert_config.unlocked():
        expert_config.env = config.env
      train_and_evaluate(expert_config, path)
  return {k: jnp.asarray(v) for k, v in experts.load_expert(path).items()}


def make_task(config: ml_collections.ConfigDict, workdir: str) -> loop.Task:
  """The gymnax run as a loop task; a step is `log_every` updates."""
  algorithm = agent_lib.Algorithm(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  if config.num_seeds % mesh.size:
    raise ConfigError(f'config.num_seeds={config.num_seeds} must be a multiple '
                      f'of the number of devices ({mesh.size}); or set '
                      'config.num_devices')
  expert = _expert(config, workdir)
  seeds, replicated = mesh_lib.batch_sharding(mesh), mesh_lib.replicated(mesh)
  updates = config.log_every  # per loop step

  def chunk_means(runners, expert):
    runners, metrics = make_chunk(algorithm, updates)(runners, expert)
    return runners, metrics_lib.chunk_means(metrics)

  run_chunk = jax.jit(chunk_means, donate_argnums=0,
                      in_shardings=(seeds, replicated),
                      out_shardings=(seeds, replicated))
  play = make_play(algorithm, config.eval.episodes, replicated)
  env_steps = config.env.num_envs * config.env.rollout_length  # per update
  last_eval = {}  # the latest evaluation's per-seed returns and episodes
  chunks_run = []  # by this process: a resumed run skips the first ones

  def step(runners, step):
    chunks_run.append(step)
    runners, means = run_chunk(runners, expert)
    return runners, {**means, 'env_steps': step * updates * env_steps}

  def evaluate(runners, step):
    returns, last_eval['trajectories'] = play(
        runners.params['agent'],
        jax.random.fold_in(jax.random.key(config.seed + 1), step * updates),
        agent_lib.POLICY_MODES[config.eval.policy])
    last_eval['per_seed'] = np.asarray(returns).mean(axis=1)
    return {'eval': metrics_lib.seed_returns(last_eval['per_seed'])}

  def report(runners, summary):
    random_returns = play(runners.params['agent'],
                          jax.random.key(config.seed + 3), agent_lib.RANDOM)[0]
    if loop.is_chief():
      if config.algorithm == 'ppo' and config.save_expert:
        experts.save_expert(workdir, last_eval['trajectories'],
                            last_eval['per_seed'])
      loop.write_json(workdir, 'seed_returns.json',
                      last_eval['per_seed'].tolist())
      if config.plots:
        metrics_lib.plot_returns(
            metric_log.read_metrics(workdir),
            os.path.join(workdir, 'learning_curves.png'),
            f'{config.algorithm} on {config.env.name}, '
            f'{config.num_seeds} seeds', updates)
    wall = max(summary['wall_seconds'], 1e-9)
    return {'baseline/random_policy_return': float(np.mean(random_returns)),
            'updates': summary['step'] * updates,
            'env_steps_per_seed': summary['step'] * updates * env_steps,
            'env_steps_per_second': len(chunks_run) * updates * env_steps *
                                    config.num_seeds / wall}

  return loop.Task(init=lambda: initial_runners(algorithm, config, seeds),
                   step=step, num_steps=config.num_steps // updates,
                   evaluate=evaluate, report=report, name=config.algorithm)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains from scratch, or resumes from the latest checkpoint in `workdir`."""
  rl_config.validate(config)
  if config.env.backend == 'gymnasium':  # a loop step is one update
    task = lunar.make_task(config, workdir)
    cadence = loop.Cadence.from_config(config, plots=False)
  else:  # a loop step is a chunk of log_every updates
    task = make_task(config, workdir)
    cadence = loop.Cadence.from_config(
        config, log_every=1, eval_every=config.eval_every // config.log_every,
        checkpoint_every=config.checkpoint_every // config.log_every,
        plots=False)
  return loop.run(task, workdir, cadence,
                  metadata={'config': config.to_dict()})
