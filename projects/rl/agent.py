"""One update of every algorithm: a rollout in vmapped gymnax environments, then its loss.

`Algorithm(config)` holds the static pieces (environment, networks,
optimizers); its `init(key) -> Runner` and `update(runner, expert) -> (runner,
metrics)` are pure functions of arrays, so the training loop can `scan` them,
`vmap` them over seeds and `jit` the whole run.
"""

from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from lib import models
from lib import optim
from projects.rl import envs
from projects.rl import losses
from projects.rl import networks
from projects.rl import returns as returns_lib

ON_POLICY_CRITIC = ('a2c', 'ppo', 'gail')  # algorithms that learn a value
GREEDY, SAMPLE, RANDOM = 0, 1, 2  # how `play` picks actions
POLICY_MODES = {'greedy': GREEDY, 'sample': SAMPLE, 'random': RANDOM}


class Transition(NamedTuple):
  """One environment step of every env, stacked over time: [T, N, ...]."""
  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  terminated: jax.Array  # float: a true end, no bootstrap
  done: jax.Array  # float: terminated or truncated by the time limit
  log_prob: jax.Array
  value: jax.Array
  next_obs: jax.Array  # the observation the action led to (pre-reset)
  episode_return: jax.Array  # the episode's return so far, this step included


@flax.struct.dataclass
class Runner:
  """Everything one seed's run carries from update to update."""
  step: jax.Array
  params: Any  # {'agent': ..., ['forward_model': ...], ['discriminator': ...]}
  opt_state: Any
  env_state: Any
  obs: jax.Array
  episode_return: jax.Array
  key: jax.Array


def gradient_steps_per_update(config) -> int:
  if config.algorithm in ('ppo', 'gail'):
    return config.ppo.epochs * config.ppo.minibatches
  if config.algorithm == 'bc':
    return config.bc.steps_per_update
  return 1


class Learner:
  """The agent's network, optimizer and losses: what any environment loop
  (the jitted gymnax one here, gymnasium's in lunar.py) trains with."""

  def __init__(self, config, num_actions: int):
    self.config = config
    self.num_actions = num_actions
    self.model = networks.ActorCritic(
        num_actions, tuple(config.model.hidden), config.model.activation)
    self.tx = optim.make_optimizer(
        config.optimizer, config.num_steps * gradient_steps_per_update(config))

  def policy(self, params, obs):
    """(logits [N, A], values [N]) of the agent."""
    return models.apply_model(self.model, params, {}, obs, train=False)[0]

  # ---------------------------------------------------------------- losses
  def agent_loss(self, agent_params, batch):
    """The algorithm's loss on a flat batch; returns (loss, metrics)."""
    config = self.config
    logits, values = self.policy(agent_params, batch['obs'])
    log_probs = losses.action_log_probs(logits, batch['action'])
    mask = batch['mask']
    metrics = {'entropy': losses.masked_mean(losses.entropy(logits), mask)}
    if config.algorithm == 'bc':
      loss = losses.behaviour_cloning_loss(logits, batch['action'])
      return loss, {**metrics, 'bc_loss': loss}
    if config.algorithm in ('ppo', 'gail'):
      policy_loss, ratio, clip_fraction = losses.ppo_clipped_loss(
          log_probs, batch['log_prob'], batch['advantage'], config.ppo.clip_eps)
      metrics.update(ratio=ratio.mean(), clip_fraction=clip_fraction)
    else:
      policy_loss = losses.policy_gradient_loss(log_probs, batch['advantage'],
                                                mask)
    loss = policy_loss - config.loss.entropy_coef * metrics['entropy']
    metrics['policy_loss'] = policy_loss
    if config.algorithm in ON_POLICY_CRITIC:
      metrics['value_loss'] = losses.value_loss(values, batch['target'])
      loss = loss + config.loss.value_coef * metrics['value_loss']
    return loss, metrics

  def _gradient_step(self, carry, batch):
    params, opt_state = carry
    (loss, metrics), grads = jax.value_and_grad(self.agent_loss, has_aux=True)(
        params, batch)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), {
        'loss': loss, **metrics}

  def train_epochs(self, params, opt_state, batch, key, epochs, minibatches):
    """`epochs` passes over `batch` in `minibatches` shuffled minibatches."""
    size = batch['obs'].shape[0]

    def epoch(carry, key):
      order = jax.random.permutation(key, size)
      shuffled = jax.tree.map(
          lambda x: x[order].reshape((minibatches, -1) + x.shape[1:]), batch)
      return jax.lax.scan(self._gradient_step, carry, shuffled)

    (params, opt_state), metrics = jax.lax.scan(
        epoch, (params, opt_state), jax.random.split(key, epochs))
    return params, opt_state, jax.tree.map(jnp.mean, metrics)


class Algorithm(Learner):
  """A gymnax environment and the algorithm's pure init/update/evaluate."""

  def __init__(self, config):
    env, env_params = envs.make(config.env.name)
    super().__init__(config, env.action_space(env_params).n)
    self.env, self.env_params = env, env_params
    self.obs_size = envs.obs_size(env, env_params)
    self.helpers = {}  # the learned helpers: name -> (module, optimizer)
    if config.curiosity.coef:
      self.helpers['forward_model'] = (networks.ForwardModel(
          self.num_actions, self.obs_size, tuple(config.curiosity.hidden)),
                                       optax.adam(config.curiosity.learning_rate))
    if config.algorithm == 'gail':
      self.helpers['discriminator'] = (networks.Discriminator(
          self.num_actions, tuple(config.gail.hidden)),
                                       optax.adam(config.gail.learning_rate))
    self.potential = envs.POTENTIALS.get(config.shaping.potential)
    self.episodic = config.algorithm == 'reinforce'

  # ---------------------------------------------------------------- pieces
  def _reset(self, key, num):
    return jax.vmap(self.env.reset, in_axes=(0, None))(
        jax.random.split(key, num), self.env_params)

  def _step(self, key, env_state, actions):
    return jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(
        jax.random.split(key, actions.shape[0]), env_state, actions,
        self.env_params)

  def init(self, key) -> Runner:
    agent_key, env_key, helper_key, run_key = jax.random.split(key, 4)
    sample_obs, _ = self._reset(env_key, 1)
    params = {'agent': self.model.init(agent_key, sample_obs)['params']}
    opt_state = {'agent': self.tx.init(params['agent'])}
    sample_action = jnp.zeros((1,), jnp.int32)
    for name, (module, tx) in self.helpers.items():
      helper_key, init_key = jax.random.split(helper_key)
      params[name] = module.init(init_key, sample_obs, sample_action)['params']
      opt_state[name] = tx.init(params[name])
    obs, env_state = self._reset(env_key, self.config.env.num_envs)
    return Runner(step=jnp.zeros((), jnp.int32), params=params,
                  opt_state=opt_state, env_state=env_state, obs=obs,
                  episode_return=jnp.zeros(obs.shape[0]), key=run_key)

  def rollout(self, params, env_state, obs, episode_return, key):
    """`env.rollout_length` steps of every env with the current policy."""

    def step(carry, key):
      env_state, obs, episode_return = carry
      act_key, env_key = jax.random.split(key)
      logits, value = self.policy(params, obs)
      action = jax.random.categorical(act_key, logits)
      next_obs, env_state, reward, terminated, truncated, info = self._step(
          env_key, env_state, action)
      done = jnp.logical_or(terminated, truncated).astype(jnp.float32)
      episode_return = episode_return + reward
      transition = Transition(
          obs=obs, action=action, reward=reward,
          terminated=terminated.astype(jnp.float32), done=done,
          log_prob=losses.action_log_probs(logits, action), value=value,
          next_obs=info['final_observation'], episode_return=episode_return)
      return (env_state, next_obs, episode_return * (1.0 - done)), transition

    keys = jax.random.split(key, self.config.env.rollout_length)
    return jax.lax.scan(step, (env_state, obs, episode_return), keys)

  def _helper_step(self, name, params, opt_state, loss_fn):
    _, tx = self.helpers[name]
    loss, grads = jax.value_and_grad(loss_fn)(params[name])
    updates, new_opt = tx.update(grads, opt_state[name], params[name])
    return ({**params, name: optax.apply_updates(params[name], updates)},
            {**opt_state, name: new_opt}, loss)

  # ---------------------------------------------------------------- rewards
  def _rewards(self, params, opt_state, traj: Transition, valid, expert, key):
    """The reward the agent learns from: the environment's, shaped, with a
    curiosity bonus, or GAIL's learned one. Trains the helpers on the way."""
    config, metrics = self.config, {}
    rewards = traj.reward
    if self.potential is not None:
      rewards = rewards + config.shaping.scale * envs.shaping_bonus(
          self.potential, traj.obs, traj.next_obs, traj.terminated,
          config.gamma)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    obs, actions, next_obs = flat(traj.obs), flat(traj.action), flat(
        traj.next_obs)
    if 'forward_model' in self.helpers:
      module = self.helpers['forward_model'][0]
      target = next_obs.reshape((next_obs.shape[0], -1))

      def forward_loss(p):
        errors = losses.forward_model_error(
            module.apply({'params': p}, obs, actions), target)
        return losses.masked_mean(errors, flat(valid))

      errors = losses.forward_model_error(
          module.apply({'params': params['forward_model']}, obs, actions),
          target)
      rewards = rewards + config.curiosity.coef * errors.reshape(rewards.shape)
      params, opt_state, metrics['forward_model_loss'] = self._helper_step(
          'forward_model', params, opt_state, forward_loss)
      metrics['curiosity_bonus'] = config.curiosity.coef * errors.mean()
    if 'discriminator' in self.helpers:
      module = self.helpers['discriminator'][0]
      picks = jax.random.randint(key, (obs.shape[0],), 0,
                                 expert['obs'].shape[0])
      expert_obs, expert_actions = expert['obs'][picks], expert['action'][picks]

      def disc_loss(p):
        return losses.discriminator_loss(
            module.apply({'params': p}, expert_obs, expert_actions),
            module.apply({'params': p}, obs, actions))

      for _ in range(config.gail.discriminator_steps):
        params, opt_state, metrics['discriminator_loss'] = self._helper_step(
            'discriminator', params, opt_state, disc_loss)
      logits = module.apply({'params': params['discriminator']}, obs, actions)
      rewards = losses.learned_reward(logits, config.gail.reward).reshape(
          rewards.shape)
      metrics['learned_reward'] = rewards.mean()
    return rewards, params, opt_state, metrics

  # ---------------------------------------------------------------- weights
  def _reinforce_weights(self, rewards, traj, valid):
    """The lecture's versions of the weight on log pi(a_t|s_t)."""
    kind, gamma = self.config.reinforce.returns, self.config.gamma
    rewards = rewards * valid
    if kind == 'total':
      return returns_lib.episode_totals(rewards, traj.done)
    if kind == 'reward_to_go':
      return returns_lib.discounted_returns(rewards, traj.done, 1.0)
    discounted = returns_lib.discounted_returns(rewards, traj.done, gamma)
    if kind == 'discounted':
      return discounted
    return returns_lib.normalize(discounted, valid)  # minus a baseline

  def _advantages(self, params, rewards, traj, valid):
    """GAE over the rollout; lam=1 ('mc') and lam=0 ('td') are its ends."""
    config = self.config
    lam = {'mc': 1.0, 'td': 0.0, 'gae': config.gae_lambda}[config.a2c.target]
    if config.algorithm != 'a2c':
      lam = config.gae_lambda
    next_obs = traj.next_obs.reshape((-1,) + traj.next_obs.shape[2:])
    next_values = self.policy(params['agent'], next_obs)[1].reshape(
        rewards.shape)
    advantages, targets = returns_lib.gae(
        rewards, traj.value, next_values, traj.terminated, traj.done,
        config.gamma, lam)
    if config.normalize_advantages:
      advantages = returns_lib.normalize(advantages, valid)
    return advantages, targets

  # ---------------------------------------------------------------- update
  def update(self, runner: Runner, expert=None):
    """One rollout and the algorithm's gradient steps on it."""
    config = self.config
    key, reset_key, rollout_key, reward_key, loss_key = jax.random.split(
        runner.key, 5)
    env_state, obs, episode_return = (runner.env_state, runner.obs,
                                      runner.episode_return)
    if self.episodic:  # Monte Carlo on whole episodes from fresh starts
      obs, env_state = self._reset(reset_key, config.env.num_envs)
      episode_return = jnp.zeros_like(episode_return)
    params, opt_state = runner.params, runner.opt_state
    (env_state, obs, episode_return), traj = self.rollout(
        params['agent'], env_state, obs, episode_return, rollout_key)
    valid = (returns_lib.alive_mask(traj.done) if self.episodic
             else jnp.ones_like(traj.done))

    rewards, params, opt_state, metrics = self._rewards(
        params, opt_state, traj, valid, expert, reward_key)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    batch = {'obs': flat(traj.obs), 'action': flat(traj.action),
             'log_prob': flat(traj.log_prob), 'mask': flat(valid)}
    epochs, minibatches = 1, 1
    if config.algorithm == 'reinforce':
      batch['advantage'] = flat(self._reinforce_weights(rewards, traj, valid))
    elif config.algorithm == 'bc':
      picks = jax.random.randint(
          loss_key, (config.bc.steps_per_update, config.batch_size), 0,
          expert['obs'].shape[0])
      batch = {'obs': expert['obs'][picks], 'action': expert['action'][picks],
               'mask': jnp.ones(picks.shape)}
    else:
      advantages, targets = self._advantages(params, rewards, traj, valid)
      batch.update(advantage=flat(advantages), target=flat(targets))
      if config.algorithm != 'a2c':
        epochs, minibatches = config.ppo.epochs, config.ppo.minibatches

    if config.algorithm == 'bc':  # one step per drawn expert minibatch
      (agent, agent_opt), loss_metrics = jax.lax.scan(
          self._gradient_step, (params['agent'], opt_state['agent']), batch)
      loss_metrics = jax.tree.map(jnp.mean, loss_metrics)
    else:
      agent, agent_opt, loss_metrics = self.train_epochs(
          params['agent'], opt_state['agent'], batch, loss_key, epochs,
          minibatches)
    params = {**params, 'agent': agent}
    opt_state = {**opt_state, 'agent': agent_opt}

    ended = traj.done * valid
    count = ended.sum()
    metrics.update(loss_metrics)
    metrics['episodes'] = count
    # NaN when no episode ended in this rollout; the loop averages with nanmean.
    metrics['episode_return'] = jnp.where(
        count > 0, (traj.episode_return * ended).sum() / jnp.maximum(count, 1),
        jnp.nan)
    return runner.replace(step=runner.step + 1, params=params,
                          opt_state=opt_state, env_state=env_state, obs=obs,
                          episode_return=episode_return, key=key), metrics

  # ---------------------------------------------------------------- evaluation
  def play(self, agent_params, key, num_episodes: int, mode):
    """`num_episodes` fresh episodes, each to its end (or the time limit).

    mode (an int array, so one compiled function serves all three): GREEDY
    (argmax), SAMPLE (the stochastic policy) or RANDOM (uniform actions).
    Returns (returns [E], (obs, actions, alive) each [T, E, ...]), where
    `alive` is 1 on the steps that belong to each episode.
    """
    reset_key, run_key = jax.random.split(key)
    obs, env_state = self._reset(reset_key, num_episodes)

    def step(carry, key):
      env_state, obs, total, alive = carry
      act_key, env_key = jax.random.split(key)
      logits = self.policy(agent_params, obs)[0]
      sampled = jax.random.categorical(
          act_key, jnp.where(mode == RANDOM, 0.0, logits))
      action = jnp.where(mode == GREEDY, jnp.argmax(logits, -1), sampled)
      next_obs, env_state, reward, terminated, truncated, _ = self._step(
          env_key, env_state, action)
      total = total + reward * alive
      done = jnp.logical_or(terminated, truncated)
      return (env_state, next_obs, total, alive * (1.0 - done)), (obs, action,
                                                                   alive)

    carry = (env_state, obs, jnp.zeros(num_episodes), jnp.ones(num_episodes))
    keys = jax.random.split(run_key, self.env_params.max_steps_in_episode)
    (_, _, total, _), trajectory = jax.lax.scan(step, carry, keys)
    return total, trajectory
