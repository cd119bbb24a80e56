"""HW12's training loop: whole runs jitted, vmapped over seeds, in chunks.

`train_and_evaluate(config, workdir)` builds an `agent.Algorithm`, vmaps its
`init` over `num_seeds` keys (the seeds split over the device mesh) and runs
`log_every` updates per call of one jitted `scan`; between calls it logs,
evaluates, checkpoints (a killed run resumes from the last chunk) and drives
the progress bar. LunarLander (env.backend='gymnasium') goes to `lunar.py`.
"""

import json
import os
import time

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import checkpoint as checkpoint_lib
from lib import config as config_lib
from lib import mesh as mesh_lib
from lib import metric_log
from lib import plots
from lib import trainer
from lib.errors import ConfigError
from lib.errors import DataError
from projects.rl import agent as agent_lib
from projects.rl import config as rl_config

EXPERT_FILE = 'expert.npz'
CONFIG_FILE = 'config.json'  # what projects.rl.evaluate rebuilds the run from


def seed_keys(config):
  return jax.random.split(jax.random.key(config.seed), config.num_seeds)


def initial_runners(algorithm, config, sharding=None):
  init = jax.jit(jax.vmap(algorithm.init), out_shardings=sharding)
  return init(seed_keys(config))


def make_chunk(algorithm, length: int):
  """runners, expert -> (runners, metrics [seeds, length]): `length` updates."""

  def chunk(runner, expert):
    return jax.lax.scan(lambda r, _: algorithm.update(r, expert), runner,
                        None, length=length)

  return jax.vmap(chunk, in_axes=(0, None))


def make_play(algorithm, num_episodes: int):
  """(agent params [seeds], key, mode) -> (returns [seeds, episodes],
  trajectories [seeds, ...]), jitted; one compilation for every mode."""

  def play(agent_params, key, mode):
    keys = jax.random.split(key, jax.tree.leaves(agent_params)[0].shape[0])
    return jax.vmap(lambda p, k: algorithm.play(p, k, num_episodes, mode))(
        agent_params, keys)

  return jax.jit(play)


def load_expert(path: str) -> dict[str, np.ndarray]:
  file = epath.Path(path) / EXPERT_FILE
  if not file.exists():
    raise DataError(f'no expert trajectories at {file}: train PPO there first '
                    '(python -m launch.train --config=projects/rl/config.py '
                    f'--workdir={path}) or set config.expert_workdir')
  with file.open('rb') as f:
    data = np.load(f)
    return {'obs': data['obs'], 'action': data['action']}


def _expert(config, workdir):
  """bc's and gail's demonstrations: from expert_workdir, or trained here."""
  if config.algorithm not in ('bc', 'gail'):
    return {}
  path = config.expert_workdir
  if not path:
    path = os.path.join(workdir, 'expert')
    if not (epath.Path(path) / EXPERT_FILE).exists():
      expert_config = rl_config.get_config('quick')
      expert_config.num_seeds = 1
      expert_config.plots = False
      with expert_config.unlocked():
        expert_config.env = config.env
      train_and_evaluate(expert_config, path)
  return {k: jnp.asarray(v) for k, v in load_expert(path).items()}


def _save_expert(workdir, trajectories, seed_returns):
  """The best seed's greedy episodes as (obs, action) pairs, for bc and gail."""
  best = int(np.argmax(seed_returns))
  obs, actions, alive = (np.asarray(x[best]) for x in trajectories)
  keep = alive > 0
  with (epath.Path(workdir) / EXPERT_FILE).open('wb') as f:
    np.savez(f, obs=obs[keep], action=actions[keep])


def plot_returns(records, path, title):
  """Training returns per update (mean and spread over seeds) and evaluations."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  train = [r for r in records if r['split'] == 'train' and
           'episode_return' in r]
  evals = [r for r in records if r['split'] == 'eval']
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  if train:
    steps = np.array([r['step'] for r in train])
    mean = np.array([r['episode_return'] for r in train])
    spread = np.array([r.get('episode_return_std', 0.0) for r in train])
    ax.plot(steps, mean, label='train episodes (mean over seeds)')
    ax.fill_between(steps, mean - spread, mean + spread, alpha=0.25,
                    label='+- std over seeds')
  if evals:
    ax.errorbar([r['step'] for r in evals], [r['mean_return'] for r in evals],
                yerr=[r['return_std_over_seeds'] for r in evals], fmt='o',
                capsize=3, linestyle='--', alpha=0.8,
                label='evaluation (mean over seeds)')
  ax.set_xlabel('update')
  ax.set_ylabel('return')
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  plots.save_figure(fig, path)


def _seed_stats(values) -> dict[str, float]:
  """Mean and std over seeds of per-seed values (NaN: no episode ended)."""
  values = np.asarray(values, np.float64)
  finite = values[np.isfinite(values)]
  if not finite.size:
    return {}
  return {'': float(finite.mean()), '_std': float(finite.std())}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  """Trains from scratch, or resumes from the latest checkpoint in `workdir`."""
  config_lib.validate(config)
  rl_config.validate(config)
  if config.env.backend == 'gymnasium':
    from projects.rl import lunar  # pylint: disable=g-import-not-at-top
    return lunar.train_and_evaluate(config, workdir)
  algorithm = agent_lib.Algorithm(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  if config.num_seeds % mesh.size:
    raise ConfigError(f'config.num_seeds={config.num_seeds} must be a multiple '
                      f'of the number of devices ({mesh.size}); or set '
                      'config.num_devices')
  expert = _expert(config, workdir)
  seeds = mesh_lib.batch_sharding(mesh)
  runners = initial_runners(algorithm, config, seeds)
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), every=config.checkpoint_every,
      keep=config.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    runners, _ = checkpoints.restore(runners)
  start = int(runners.step[0])
  is_chief = jax.process_index() == 0
  if is_chief:
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    (epath.Path(workdir) / CONFIG_FILE).write_text(config.to_json(indent=1))
  writer = metric_log.MetricWriter(workdir, resume_step=start) if is_chief else None

  run_chunk = jax.jit(make_chunk(algorithm, config.log_every),
                      donate_argnums=0,
                      in_shardings=(seeds, mesh_lib.replicated(mesh)),
                      out_shardings=(seeds, seeds))
  play = make_play(algorithm, config.eval.episodes)
  eval_mode = agent_lib.POLICY_MODES[config.eval.policy]
  eval_key = jax.random.key(config.seed + 1)
  trajectories = None

  def evaluate_all(step):
    nonlocal trajectories
    seed_returns, trajectories = play(runners.params['agent'],
                                      jax.random.fold_in(eval_key, step),
                                      eval_mode)
    per_seed = np.asarray(seed_returns).mean(axis=1)
    values = {'mean_return': float(per_seed.mean()),
              'return_std_over_seeds': float(per_seed.std()),
              'worst_seed_return': float(per_seed.min())}
    if writer:
      writer.write(step, 'eval', values)
    return values, per_seed

  steps_per_update = config.env.num_envs * config.env.rollout_length
  progress = metric_log.Progress(config.num_steps, initial=start,
                                 desc=config.algorithm)
  metadata = {'config': config.to_dict()}
  train_values, eval_values, per_seed = {}, None, None
  started = time.perf_counter()
  for step in range(start + config.log_every, config.num_steps + 1,
                    config.log_every):
    runners, metrics = run_chunk(runners, expert)
    metrics = jax.device_get(metrics)
    for offset in range(config.log_every):
      values = {}
      for name, value in metrics.items():
        stats = _seed_stats(value[:, offset])
        values.update({name + suffix: v for suffix, v in stats.items()
                       if suffix == '' or name == 'episode_return'})
      values['env_steps'] = (step - config.log_every + offset + 1) * (
          steps_per_update)
      if writer:
        writer.write(step - config.log_every + offset + 1, 'train', values,
                     echo=False)
    train_values = {name: _seed_stats(np.nanmean(value, axis=1)).get('', np.nan)
                    if np.isfinite(value).any() else float('nan')
                    for name, value in metrics.items()}
    if step % config.eval_every == 0 or step == config.num_steps:
      eval_values, per_seed = evaluate_all(step)
    progress.update(step, {'return': train_values['episode_return']})
    if writer and not progress.interactive:
      writer.write(step, 'train_chunk', {
          'episode_return': train_values['episode_return'],
          'updates_per_second': progress.steps_per_second(step)})
    if checkpoints.should_save(step) or step == config.num_steps:
      checkpoints.save(step, runners, metadata)
  progress.close()
  wall = time.perf_counter() - started
  if eval_values is None:  # resumed at the last update
    eval_values, per_seed = evaluate_all(config.num_steps)

  random_returns = np.asarray(play(runners.params['agent'],
                                   jax.random.key(config.seed + 3),
                                   agent_lib.RANDOM)[0])
  done_updates = config.num_steps - start
  summary = {
      **{f'train/{k}': float(v) for k, v in train_values.items()},
      **{f'eval/{k}': v for k, v in eval_values.items()},
      'baseline/random_policy_return': float(random_returns.mean()),
      'step': config.num_steps,
      'env_steps_per_seed': config.num_steps * steps_per_update,
      'wall_seconds': wall,
      'env_steps_per_second': (done_updates * steps_per_update *
                               config.num_seeds / max(wall, 1e-9)),
  }
  if is_chief:
    if config.algorithm == 'ppo' and config.save_expert:
      _save_expert(workdir, trajectories, per_seed)
    writer.close()
    (epath.Path(workdir) / 'summary.json').write_text(
        json.dumps({**summary, 'eval/seed_returns': per_seed.tolist()},
                   indent=1))
    if config.plots:
      plot_returns(metric_log.read_metrics(workdir),
                   os.path.join(workdir, 'learning_curves.png'),
                   f'{config.algorithm} on {config.env.name}, '
                   f'{config.num_seeds} seeds')
  checkpoints.close()
  return trainer.TrainResult(runners, summary)
