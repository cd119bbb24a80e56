"""The homework's LunarLander-v3 through gymnasium (Box2D): PPO in a host loop.

Box2D runs on the host, so the environments step in a gymnasium vector env
(`env.num_envs` of them, autoreset in the same step) and each rollout is
collected step by step with a jitted policy; the update is the same jitted
`agent.Learner` PPO loss and epochs, on advantages from `returns.gae`, as the
gymnax runs use. Checkpoints hold the parameters and optimizer state; a
resumed run starts fresh episodes.
"""

import json
import os
import time

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from lib import checkpoint as checkpoint_lib
from lib import metric_log
from lib import trainer
from lib.errors import ConfigError
from projects.rl import agent as agent_lib
from projects.rl import losses
from projects.rl import returns as returns_lib


def _gymnasium():
  try:
    import gymnasium  # pylint: disable=g-import-not-at-top
    import Box2D  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ConfigError('LunarLander needs gymnasium with Box2D: pip install '
                      f'"gymnasium[box2d]" ({e})') from e
  return gymnasium


def make_envs(config, num_envs: int):
  gym = _gymnasium()
  try:
    return gym.make_vec(
        config.env.name, num_envs=num_envs, vectorization_mode='sync',
        vector_kwargs={'autoreset_mode': gym.vector.AutoresetMode.SAME_STEP})
  except gym.error.Error as e:
    raise ConfigError(f'config.env.name={config.env.name!r}: {e}') from e


def _learner(config):
  envs = make_envs(config, 1)
  num_actions = int(envs.single_action_space.n)
  obs_shape = envs.single_observation_space.shape
  envs.close()
  return agent_lib.Learner(config, num_actions), obs_shape


def initial_state(config, learner=None, obs_shape=None):
  """{'params', 'opt_state', 'key'}: what a checkpoint holds."""
  if learner is None:
    learner, obs_shape = _learner(config)
  init_key, key = jax.random.split(jax.random.key(config.seed))
  params = learner.model.init(init_key, jnp.zeros((1, *obs_shape)))['params']
  return {'params': params, 'opt_state': learner.tx.init(params), 'key': key}


def evaluate(config, params, episodes: int, policy: str, seed: int = 0):
  """Returns of `episodes` episodes (each env's first); policy 'greedy',
  'sample' or 'random' (uniform actions)."""
  learner, _ = _learner(config)

  @jax.jit
  def act(obs, key):
    logits = learner.policy(params, obs)[0]
    if policy == 'greedy':
      return jnp.argmax(logits, -1)
    if policy == 'random':
      logits = jnp.zeros_like(logits)
    return jax.random.categorical(key, logits)

  envs = make_envs(config, episodes)
  obs, _ = envs.reset(seed=seed)
  total, alive = np.zeros(episodes), np.ones(episodes)
  key = jax.random.key(seed)
  while alive.any():
    key, act_key = jax.random.split(key)
    obs, reward, terminated, truncated, _ = envs.step(
        np.asarray(act(obs, act_key)))
    total += reward * alive
    alive *= 1.0 - np.logical_or(terminated, truncated)
  envs.close()
  return total


def train_and_evaluate(config, workdir: str) -> trainer.TrainResult:
  """PPO on a gymnasium env; resumes from the latest checkpoint in `workdir`."""
  from projects.rl import train  # pylint: disable=g-import-not-at-top
  learner, obs_shape = _learner(config)
  num_envs, length = config.env.num_envs, config.env.rollout_length
  state = initial_state(config, learner, obs_shape)
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), every=config.checkpoint_every,
      keep=config.keep_checkpoints)
  start = 0
  if checkpoints.latest_step() is not None:
    state, metadata = checkpoints.restore(state)
    start = metadata['step']
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  (epath.Path(workdir) / train.CONFIG_FILE).write_text(
      config.to_json(indent=1))
  writer = metric_log.MetricWriter(workdir, resume_step=start)

  @jax.jit
  def act(params, obs, key):
    logits, value = learner.policy(params, obs)
    action = jax.random.categorical(key, logits)
    return action, losses.action_log_probs(logits, action), value

  @jax.jit
  def update(params, opt_state, traj, key):
    next_values = learner.policy(
        params, traj['next_obs'].reshape(-1, *obs_shape))[1].reshape(
            traj['reward'].shape)
    advantages, targets = returns_lib.gae(
        traj['reward'], traj['value'], next_values, traj['terminated'],
        traj['done'], config.gamma, config.gae_lambda)
    if config.normalize_advantages:
      advantages = returns_lib.normalize(advantages)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    batch = {'obs': flat(traj['obs']), 'action': flat(traj['action']),
             'log_prob': flat(traj['log_prob']), 'advantage': flat(advantages),
             'target': flat(targets), 'mask': jnp.ones(advantages.size)}
    return learner.train_epochs(params, opt_state, batch, key,
                                config.ppo.epochs, config.ppo.minibatches)

  envs = make_envs(config, num_envs)
  obs, _ = envs.reset(seed=config.seed + start)
  running, finished = np.zeros(num_envs), []
  progress = metric_log.Progress(config.num_steps, initial=start, desc='ppo')
  eval_values = None
  started = time.perf_counter()
  for step in range(start + 1, config.num_steps + 1):
    key, rollout_key, update_key = jax.random.split(state['key'], 3)
    traj = {name: [] for name in ('obs', 'action', 'log_prob', 'value',
                                  'reward', 'terminated', 'done', 'next_obs')}
    for act_key in jax.random.split(rollout_key, length):
      action, log_prob, value = jax.device_get(act(state['params'], obs,
                                                   act_key))
      next_obs, reward, terminated, truncated, info = envs.step(action)
      done = np.logical_or(terminated, truncated)
      final_obs = next_obs.copy()
      for i in np.flatnonzero(done):  # the observation before the reset
        final_obs[i] = info['final_obs'][i]
      running += reward
      finished.extend(running[done].tolist())
      running[done] = 0.0
      for name, value_ in (('obs', obs), ('action', action),
                           ('log_prob', log_prob), ('value', value),
                           ('reward', reward), ('terminated', terminated),
                           ('done', done), ('next_obs', final_obs)):
        traj[name].append(value_)
      obs = next_obs
    traj = {name: np.stack(v).astype(np.int32 if name == 'action'
                                      else np.float32)
            for name, v in traj.items()}
    params, opt_state, metrics = update(state['params'], state['opt_state'],
                                        traj, update_key)
    state = {'params': params, 'opt_state': opt_state, 'key': key}
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if finished:
      values['episode_return'] = float(np.mean(finished[-100:]))
    values['env_steps'] = step * num_envs * length
    writer.write(step, 'train', values, echo=step % config.log_every == 0 and
                 not progress.interactive)
    progress.update(step, {'return': values.get('episode_return', np.nan)})
    if step % config.eval_every == 0 or step == config.num_steps:
      returns_ = evaluate(config, state['params'], config.eval.episodes,
                          config.eval.policy, seed=config.seed + step)
      eval_values = {'mean_return': float(returns_.mean()),
                     'return_std_over_seeds': 0.0,
                     'return_std_over_episodes': float(returns_.std())}
      writer.write(step, 'eval', eval_values)
    if checkpoints.should_save(step) or step == config.num_steps:
      checkpoints.save(step, state, {'config': config.to_dict()})
  progress.close()
  envs.close()
  wall = time.perf_counter() - started
  if eval_values is None:
    returns_ = evaluate(config, state['params'], config.eval.episodes,
                        config.eval.policy, seed=config.seed)
    eval_values = {'mean_return': float(returns_.mean())}
  random_returns = evaluate(config, state['params'], config.eval.episodes,
                            'random', seed=config.seed + 3)
  summary = {
      'train/episode_return': float(np.mean(finished[-100:])) if finished
                              else float('nan'),
      **{f'eval/{k}': v for k, v in eval_values.items()},
      'baseline/random_policy_return': float(random_returns.mean()),
      'step': config.num_steps, 'wall_seconds': wall,
      'env_steps_per_second': ((config.num_steps - start) * num_envs * length
                               / max(wall, 1e-9)),
  }
  writer.close()
  (epath.Path(workdir) / 'summary.json').write_text(json.dumps(summary,
                                                               indent=1))
  if config.plots:
    train.plot_returns(metric_log.read_metrics(workdir),
                       os.path.join(workdir, 'learning_curves.png'),
                       f'PPO on {config.env.name} (gymnasium)')
  checkpoints.close()
  return trainer.TrainResult(state, summary)
