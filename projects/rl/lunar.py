"""The homework's LunarLander-v3 through gymnasium (Box2D): PPO in a host loop.

Box2D runs on the host, so the environments step in a gymnasium vector env
(`env.num_envs` of them, autoreset in the same step) and each rollout is
collected step by step with a jitted policy; the update is the same jitted
`agent.Learner` PPO loss and epochs, on advantages from `returns.gae`, as the
gymnax runs use. A step of the training loop is one rollout and its update.
Checkpoints hold the parameters and optimizer state; a resumed run starts
fresh episodes.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from lib import loop
from lib import metric_log
from lib.errors import ConfigError
from projects.rl import agent as agent_lib
from projects.rl import losses
from projects.rl import metrics as metrics_lib
from projects.rl import returns as returns_lib

TRAJECTORY = ('obs', 'action', 'log_prob', 'value', 'reward', 'terminated',
              'done', 'next_obs')


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


class Lander:
  """The agent of a gymnasium env: its learner and jitted act/update/play."""

  def __init__(self, config):
    envs = make_envs(config, 1)
    self.obs_shape = envs.single_observation_space.shape
    self.learner = agent_lib.Learner(config,
                                     int(envs.single_action_space.n))
    envs.close()
    self.config = config

  def init(self):
    """{'params', 'opt_state', 'key'}: what a checkpoint holds."""
    init_key, key = jax.random.split(jax.random.key(self.config.seed))
    params = self.learner.model.init(
        init_key, jnp.zeros((1, *self.obs_shape)))['params']
    return {'params': params, 'opt_state': self.learner.tx.init(params),
            'key': key}

  @functools.partial(jax.jit, static_argnums=0)
  def act(self, params, obs, key):
    """A sampled action, its log-probability and the value of `obs`."""
    logits, value = self.learner.policy(params, obs)
    action = jax.random.categorical(key, logits)
    return action, losses.action_log_probs(logits, action), value

  @functools.partial(jax.jit, static_argnums=(0, 4))
  def choose(self, params, obs, key, policy: str):
    """Actions by `policy`: 'greedy', 'sample' or 'random' (uniform)."""
    logits = self.learner.policy(params, obs)[0]
    if policy == 'greedy':
      return jnp.argmax(logits, -1)
    if policy == 'random':
      logits = jnp.zeros_like(logits)
    return jax.random.categorical(key, logits)

  @functools.partial(jax.jit, static_argnums=0)
  def update(self, params, opt_state, traj, key):
    """PPO's epochs on a rollout of [T, N, ...] arrays (TRAJECTORY)."""
    config = self.config
    next_values = self.learner.policy(
        params, traj['next_obs'].reshape(-1, *self.obs_shape))[1].reshape(
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
    return self.learner.train_epochs(params, opt_state, batch, key,
                                     config.ppo.epochs, config.ppo.minibatches)

  def play(self, params, episodes: int, policy: str, seed: int = 0):
    """Returns of `episodes` fresh episodes (each env's first)."""
    envs = make_envs(self.config, episodes)
    obs, _ = envs.reset(seed=seed)
    total, alive = np.zeros(episodes), np.ones(episodes)
    key = jax.random.key(seed)
    while alive.any():
      key, act_key = jax.random.split(key)
      obs, reward, terminated, truncated, _ = envs.step(
          np.asarray(self.choose(params, obs, act_key, policy)))
      total += reward * alive
      alive *= 1.0 - np.logical_or(terminated, truncated)
    envs.close()
    return total


class Rollouts:
  """The training envs, whose episodes carry on from rollout to rollout."""

  def __init__(self, config, seed: int):
    self.envs = make_envs(config, config.env.num_envs)
    self.obs, _ = self.envs.reset(seed=seed)
    self.length = config.env.rollout_length
    self.running = np.zeros(config.env.num_envs)
    self.finished = []  # returns of the episodes that ended

  def collect(self, act, params, key) -> dict[str, np.ndarray]:
    """`length` steps of every env with `act`; TRAJECTORY arrays [T, N, ...]."""
    traj = {name: [] for name in TRAJECTORY}
    for act_key in jax.random.split(key, self.length):
      action, log_prob, value = jax.device_get(act(params, self.obs, act_key))
      next_obs, reward, terminated, truncated, info = self.envs.step(action)
      done = np.logical_or(terminated, truncated)
      final_obs = next_obs.copy()
      for i in np.flatnonzero(done):  # the observation before the reset
        final_obs[i] = info['final_obs'][i]
      self.running += reward
      self.finished.extend(self.running[done].tolist())
      self.running[done] = 0.0
      for name, value_ in zip(TRAJECTORY, (
          self.obs, action, log_prob, value, reward, terminated, done,
          final_obs)):
        traj[name].append(value_)
      self.obs = next_obs
    return {name: np.stack(v).astype(np.int32 if name == 'action'
                                      else np.float32)
            for name, v in traj.items()}

  def recent_return(self) -> float:
    """The mean return of the last 100 episodes (NaN before any ended)."""
    return float(np.mean(self.finished[-100:])) if self.finished else np.nan


def make_task(config, workdir: str) -> loop.Task:
  """PPO on a gymnasium env as a loop task; a step is one update."""
  lander = Lander(config)
  env_steps = config.env.num_envs * config.env.rollout_length  # per update
  host = {'rollouts': None, 'updates_run': 0}  # not in the checkpoint

  def step(state, step):
    if host['rollouts'] is None:  # this process's first update
      host['rollouts'] = Rollouts(config, seed=config.seed + step - 1)
    host['updates_run'] += 1
    key, rollout_key, update_key = jax.random.split(state['key'], 3)
    traj = host['rollouts'].collect(lander.act, state['params'], rollout_key)
    params, opt_state, metrics = lander.update(
        state['params'], state['opt_state'], traj, update_key)
    return {'params': params, 'opt_state': opt_state, 'key': key}, {
        **metrics, 'episode_return': host['rollouts'].recent_return(),
        'env_steps': step * env_steps}

  def evaluate(state, step):
    returns = lander.play(state['params'], config.eval.episodes,
                          config.eval.policy, seed=config.seed + step)
    return {'eval': {'mean_return': float(returns.mean()),
                     'return_std_over_episodes': float(returns.std())}}

  def report(state, summary):
    if host['rollouts'] is not None:
      host['rollouts'].envs.close()
    random_returns = lander.play(state['params'], config.eval.episodes,
                                 'random', seed=config.seed + 3)
    if loop.is_chief() and config.plots:
      metrics_lib.plot_returns(metric_log.read_metrics(workdir),
                               os.path.join(workdir, 'learning_curves.png'),
                               f'PPO on {config.env.name} (gymnasium)')
    return {'baseline/random_policy_return': float(random_returns.mean()),
            'updates': summary['step'],
            'env_steps_per_second': host['updates_run'] * env_steps /
                                    max(summary['wall_seconds'], 1e-9)}

  return loop.Task(init=lander.init, step=step, num_steps=config.num_steps,
                   evaluate=evaluate, report=report, name='ppo')
