"""HW12 reinforcement learning: estimators, losses, seeds, learning, resume, CLI."""

import importlib.util
import json
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import metric_log
from lib.errors import ConfigError
from lib.errors import DataError
from projects.rl import agent as agent_lib
from projects.rl import config as config_lib
from projects.rl import envs
from projects.rl import experts
from projects.rl import losses
from projects.rl import metrics as metrics_lib
from projects.rl import playback
from projects.rl import returns
from projects.rl import train


def _config(variant='quick', **overrides):
  config = config_lib.get_config(variant)
  config.num_devices = 1
  config.num_seeds = 2
  config.plots = False
  config.eval.episodes = 8
  for name, value in overrides.items():
    node = config
    *groups, field = name.split('__')
    for group in groups:
      node = node[group]
    node[field] = value
  return config


# ---------------------------------------------------------------- estimators
def test_discounted_returns_by_hand():
  rewards = jnp.array([1.0, 2.0, 3.0, 4.0])
  dones = jnp.array([0.0, 1.0, 0.0, 0.0])
  g = returns.discounted_returns(rewards, dones, 0.5)
  # Episode 1: 1 + 0.5*2 = 2, 2. Episode 2: 3 + 0.5*4 = 5, 4.
  np.testing.assert_allclose(g, [2.0, 2.0, 5.0, 4.0])
  g = returns.discounted_returns(rewards, dones, 0.5, bootstrap=jnp.array(8.0))
  np.testing.assert_allclose(g, [2.0, 2.0, 3.0 + 0.5 * (4 + 0.5 * 8), 8.0])
  np.testing.assert_allclose(returns.discounted_returns(rewards, dones, 1.0),
                             [3.0, 2.0, 7.0, 4.0])
  np.testing.assert_allclose(returns.episode_totals(rewards, dones),
                             [3.0, 3.0, 7.0, 7.0])


def test_returns_work_on_batches_of_envs():
  rewards = jnp.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
  dones = jnp.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
  np.testing.assert_allclose(returns.discounted_returns(rewards, dones, 1.0),
                             [[3.0, 1.0], [2.0, 2.0], [1.0, 1.0]])
  np.testing.assert_allclose(returns.alive_mask(dones),
                             [[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])


def test_gae_by_hand():
  gamma, lam = 0.9, 0.5
  rewards = jnp.array([1.0, 0.0, 2.0])
  values = jnp.array([0.5, 1.0, 2.0])
  next_values = jnp.array([1.0, 3.0, 4.0])  # step 1 ends (truncated): V(final)
  terminated = jnp.array([0.0, 0.0, 0.0])
  dones = jnp.array([0.0, 1.0, 0.0])
  advantages, targets = returns.gae(rewards, values, next_values, terminated,
                                    dones, gamma, lam)
  d0 = 1.0 + 0.9 * 1.0 - 0.5
  d1 = 0.0 + 0.9 * 3.0 - 1.0
  d2 = 2.0 + 0.9 * 4.0 - 2.0
  expected = [d0 + gamma * lam * d1, d1, d2]
  np.testing.assert_allclose(advantages, expected, rtol=1e-6)
  np.testing.assert_allclose(targets, np.array(expected) + values, rtol=1e-6)
  # A true termination drops the bootstrap.
  adv, _ = returns.gae(rewards, values, next_values, jnp.array([0., 1., 0.]),
                       dones, gamma, lam)
  np.testing.assert_allclose(adv[1], 0.0 - 1.0)


def test_gae_ends_are_td_and_monte_carlo():
  key = jax.random.key(0)
  rewards, values, next_values = jax.random.normal(key, (3, 12, 4))
  dones = (jax.random.uniform(jax.random.key(1), (12, 4)) < 0.2) * 1.0
  zeros = jnp.zeros_like(dones)
  adv0, targets0 = returns.gae(rewards, values, next_values, dones, dones,
                               0.97, 0.0)
  np.testing.assert_allclose(targets0, rewards + 0.97 * (1 - dones) *
                             next_values, rtol=1e-5, atol=1e-6)
  # Without episode ends (and V(s_{t+1}) the next step's value), lam=1 is
  # the discounted return bootstrapped at the end of the rollout.
  chained = jnp.concatenate([values[1:], next_values[-1:]])
  _, targets1 = returns.gae(rewards, values, chained, zeros, zeros, 0.97, 1.0)
  mc = returns.discounted_returns(rewards, zeros, 0.97,
                                  bootstrap=next_values[-1])
  np.testing.assert_allclose(targets1, mc, rtol=1e-5, atol=1e-5)
  chex.assert_tree_all_finite(adv0)


def test_normalize_uses_only_the_mask():
  x = jnp.array([1.0, 3.0, 100.0])
  out = returns.normalize(x, jnp.array([1.0, 1.0, 0.0]))
  np.testing.assert_allclose(out, [-1.0, 1.0, 0.0], atol=1e-4)


# ---------------------------------------------------------------- losses
def _rollout_batch(config):
  """A fresh agent's parameters and a rollout of it as a flat PPO batch."""
  algorithm = agent_lib.Algorithm(config)

  @jax.jit
  def collect(key):
    runner = algorithm.init(key)
    _, traj = algorithm.rollout(runner.params['agent'], runner.env_state,
                                runner.obs, runner.episode_return, key)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    advantages, targets = algorithm._advantages(  # pylint: disable=protected-access
        runner.params, traj.reward, traj, jnp.ones_like(traj.done))
    return runner.params['agent'], {
        'obs': flat(traj.obs), 'action': flat(traj.action),
        'log_prob': flat(traj.log_prob), 'mask': jnp.ones(traj.done.size),
        'advantage': flat(advantages), 'target': flat(targets)}

  return (algorithm, *collect(jax.random.key(0)))


def test_ppo_starts_as_the_plain_policy_gradient():
  config = _config(env__num_envs=4, env__rollout_length=16)
  ppo, params, batch = _rollout_batch(config)
  logits, _ = ppo.policy(params, batch['obs'])
  log_probs = losses.action_log_probs(logits, batch['action'])
  np.testing.assert_allclose(log_probs, batch['log_prob'], atol=1e-5)
  clipped, ratio, clip_fraction = losses.ppo_clipped_loss(
      log_probs, batch['log_prob'], batch['advantage'], 0.2)
  np.testing.assert_allclose(ratio, 1.0, atol=1e-5)
  assert clip_fraction == 0.0
  # The clipped loss is the plain surrogate -mean(ratio * A) ...
  np.testing.assert_allclose(clipped, -batch['advantage'].mean(), atol=1e-5)
  # ... whose gradient is the policy gradient's (a2c's loss, same batch).
  plain = agent_lib.Algorithm(_config(algorithm='a2c', env__num_envs=4,
                                      env__rollout_length=16))
  grad = lambda algorithm: jax.jit(jax.grad(
      lambda p: algorithm.agent_loss(p, batch)[0]))(params)
  chex.assert_trees_all_close(grad(ppo), grad(plain), rtol=1e-4, atol=1e-6)


def test_clipping_stops_the_gradient_beyond_the_trust_region():
  old = jnp.log(jnp.array([0.5, 0.5]))
  advantages = jnp.array([1.0, -1.0])
  grad = jax.grad(lambda lp: losses.ppo_clipped_loss(lp, old, advantages,
                                                     0.2)[0])
  # ratio 1.5 with A > 0 and ratio 0.5 with A < 0: both clipped, no gradient.
  np.testing.assert_allclose(grad(jnp.log(jnp.array([0.75, 0.25]))), 0.0)
  assert np.all(grad(old) != 0.0)


def test_gail_rewards_from_the_discriminator():
  logits = jnp.array([-3.0, 0.0, 2.0])
  d = jax.nn.sigmoid(logits)
  np.testing.assert_allclose(losses.learned_reward(logits, 'softplus'),
                             -jnp.log(1 - d), rtol=1e-5)
  np.testing.assert_allclose(losses.learned_reward(logits, 'logit'),
                             jnp.log(d) - jnp.log(1 - d), rtol=1e-5)
  # The discriminator's loss falls as it separates expert (1) from policy (0).
  assert losses.discriminator_loss(jnp.full(4, 3.0), jnp.full(4, -3.0)) < (
      losses.discriminator_loss(jnp.zeros(4), jnp.zeros(4)))


# ---------------------------------------------------------------- seeds
def test_vmapped_seeds_are_independent_runs():
  config = _config(env__num_envs=4, env__rollout_length=16)
  algorithm = agent_lib.Algorithm(config)
  chunk = jax.jit(train.make_chunk(algorithm, 3))
  init = jax.jit(jax.vmap(algorithm.init))
  key0, key1 = jax.random.split(jax.random.key(0))
  # Seed 1 beside seed 0, and beside a copy of itself: the same run.
  mixed, metrics = chunk(init(jnp.stack([key0, key1])), {})
  twins, _ = chunk(init(jnp.stack([key1, key1])), {})
  seed = lambda runners, i: jax.tree.map(lambda x: x[i], runners.params)
  chex.assert_trees_all_close(seed(mixed, 1), seed(twins, 0), rtol=1e-5,
                              atol=1e-6)
  chex.assert_trees_all_close(seed(twins, 0), seed(twins, 1))
  different = [not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(seed(mixed, 0)), jax.tree.leaves(seed(mixed, 1)))]
  assert all(different)
  chex.assert_shape(metrics['loss'], (2, 3))


def test_chunk_means_leave_out_updates_without_episodes():
  nan = np.nan
  means = metrics_lib.chunk_means({
      'episode_return': jnp.array([[1.0, nan], [nan, nan], [3.0, 5.0]]),
      'loss': jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])})
  # Per seed 1, none, 4: the mean and std over the two seeds with episodes.
  np.testing.assert_allclose(means['episode_return'], 2.5)
  np.testing.assert_allclose(means['episode_return_std'], 1.5)
  np.testing.assert_allclose(means['loss'], 3.5)


# ---------------------------------------------------------------- learning
@pytest.fixture(scope='module')
def ppo_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ppo'))
  config = _config(num_steps=40, log_every=10, eval_every=40,
                   checkpoint_every=20)
  return workdir, config, train.train_and_evaluate(config, workdir)


def test_ppo_learns_cartpole_and_saves_an_expert(ppo_run):
  workdir, _, result = ppo_run
  metrics = result.metrics
  random_return = metrics['baseline/random_policy_return']
  assert 10 < random_return < 40
  assert metrics['eval/mean_return'] > 5 * random_return
  # num_steps counts updates (4 loop steps of log_every=10 updates each).
  assert metrics['updates'] == 40
  assert metrics['env_steps_per_seed'] == 40 * 8 * 128
  with open(f'{workdir}/seed_returns.json') as f:
    seed_returns = json.load(f)
  assert len(seed_returns) == 2
  np.testing.assert_allclose(
      [np.mean(seed_returns), np.std(seed_returns)],
      [metrics['eval/mean_return'], metrics['eval/return_std_over_seeds']])
  expert = experts.load_expert(workdir)
  assert expert['obs'].shape[0] == expert['action'].shape[0] > 100


@pytest.mark.parametrize('variant,overrides', [
    ('reinforce', dict(num_steps=20, env__num_envs=8)),
    ('a2c', dict(num_steps=200)),
    ('bc', dict(num_steps=20)),
    ('gail', dict(num_steps=40)),
])
def test_each_algorithm_beats_the_random_policy(variant, overrides, ppo_run,
                                                tmp_path):
  config = _config(variant, expert_workdir=ppo_run[0], log_every=10,
                   eval_every=overrides['num_steps'], checkpoint_every=0,
                   **overrides)
  metrics = train.train_and_evaluate(config, str(tmp_path)).metrics
  assert metrics['eval/mean_return'] > 3 * metrics[
      'baseline/random_policy_return'], metrics


def test_potential_shaping_telescopes():
  obs = jax.random.normal(jax.random.key(0), (6, 4))  # s_0 .. s_5
  terminated = jnp.array([0.0, 0.0, 0.0, 0.0, 1.0])
  potential = envs.POTENTIALS['cartpole_upright']
  bonus = envs.shaping_bonus(potential, obs[:-1], obs[1:], terminated, 0.9)
  discounted = (bonus * 0.9 ** jnp.arange(5)).sum()
  np.testing.assert_allclose(discounted, -potential(obs[0]), rtol=1e-5)


def test_curiosity_trains_its_forward_model():
  config = _config('curiosity', env__num_envs=4, env__rollout_length=32,
                   shaping__potential='cartpole_upright')
  algorithm = agent_lib.Algorithm(config)
  runners = jax.jit(jax.vmap(algorithm.init))(
      jax.random.split(jax.random.key(0), 2))
  _, metrics = jax.jit(train.make_chunk(algorithm, 12))(runners, {})
  errors = metrics['forward_model_loss']
  del metrics['episode_return']  # NaN where no episode ended in an update
  chex.assert_tree_all_finite(metrics)
  assert np.all(errors[:, -3:].mean(1) < 0.5 * errors[:, :3].mean(1)), errors
  assert np.all(metrics['curiosity_bonus'] > 0)


# ---------------------------------------------------------------- runs
def test_a_resumed_run_ends_like_an_uninterrupted_one(ppo_run, tmp_path):
  workdir, config, whole = ppo_run
  # The uninterrupted run's workdir as a run killed after update 20 left it
  # (checkpoints are numbered in chunks of log_every=10 updates).
  shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
  shutil.rmtree(tmp_path / 'checkpoints' / '4')
  resumed = train.train_and_evaluate(config, str(tmp_path))
  chex.assert_trees_all_close(resumed.state.params, whole.state.params,
                              rtol=1e-5, atol=1e-6)
  assert resumed.metrics['eval/mean_return'] == whole.metrics[
      'eval/mean_return']
  steps = [r['step'] for r in metric_log.read_metrics(str(tmp_path))
           if r['split'] == 'train']
  assert steps == [1, 2, 3, 4]


def test_evaluate_command_restores_the_policy(ppo_run):
  workdir, _, result = ppo_run
  metrics = result.metrics
  returns_ = playback.evaluate_workdir(workdir, episodes=8)
  chex.assert_shape(returns_, (2, 8))
  assert returns_.mean() > 5 * metrics['baseline/random_policy_return']
  with pytest.raises(ConfigError, match='no run'):
    playback.evaluate_workdir(workdir + '/nothing', episodes=1)


def test_missing_expert_is_a_data_error(tmp_path):
  with pytest.raises(DataError, match='expert'):
    train.train_and_evaluate(_config('bc', expert_workdir=str(tmp_path)),
                             str(tmp_path / 'run'))


@pytest.mark.parametrize('field,value,message', [
    ('algorithm', 'dqn', 'config.algorithm'),
    ('env__name', 'Pendulum-v1', 'continuous'),
    ('env__name', 'Nope-v0', 'not a gymnax'),
    ('reinforce__returns', 'bad', 'config.reinforce.returns'),
    ('eval_every', 15, 'config.eval_every=15'),
    ('ppo__minibatches', 7, 'config.ppo.minibatches=7'),
    ('shaping__potential', 'up', 'config.shaping.potential'),
])
def test_bad_configs_are_config_errors(field, value, message, tmp_path):
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(_config(**{field: value}), str(tmp_path))


def test_seeds_must_split_over_devices(tmp_path):
  config = _config(num_seeds=3)
  config.num_devices = 0  # the tests' 8 devices
  with pytest.raises(ConfigError, match='num_seeds=3'):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec('Box2D') is None,
                    reason='gymnasium[box2d] is not installed')
def test_lunar_lander_runs_through_gymnasium(tmp_path):
  config = _config('lunar', num_steps=2, eval_every=2, checkpoint_every=2,
                   num_seeds=1, env__num_envs=4, env__rollout_length=32,
                   ppo__minibatches=4, eval__episodes=2)
  metrics = train.train_and_evaluate(config, str(tmp_path)).metrics
  assert np.isfinite(metrics['eval/mean_return'])
  records = metric_log.read_metrics(str(tmp_path))
  assert [(r['step'], r['split']) for r in records] == [
      (1, 'train'), (2, 'train'), (2, 'eval')]
  returns_ = playback.evaluate_workdir(str(tmp_path), episodes=2)
  chex.assert_shape(returns_, (1, 2))
