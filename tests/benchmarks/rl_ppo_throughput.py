r"""PPO on CartPole: environment steps per second, JAX (gymnax, jitted) vs PyTorch + gymnasium.

Both sides train the same algorithm and network with the same settings: two
separate MLPs (actor and critic, 64-64 tanh), Adam with lr --lr and
gradient clipping at 0.5, `--num_envs` environments x 128 steps per update,
GAE (gamma 0.99, lambda 0.95), normalized advantages, 4 epochs of 4
minibatches of the clipped objective (eps 0.2), value coefficient 0.5,
entropy coefficient 0.01.

  jax      projects.rl (agent.Algorithm): environment steps, rollouts and
           updates of --updates_per_call updates in one jitted call, one seed.
           Compiled before the clock starts.
  pytorch  a plain CleanRL-style loop: gymnasium.vector.SyncVectorEnv of
           CartPole-v1, torch.nn policy on the CPU, the same loss and updates
           in torch (torch.set_num_threads(--threads)).

Reported: environment steps per second of training (the rollouts and the
updates together), the median over --repeats, measured interleaved in one
process so that the machine's load hits both alike; and the ratio.

With --solve, also the time for the jax run to solve CartPole (greedy
evaluation over 16 episodes >= 475) from a cold start, compilation included,
for each of --solve_seeds seeds.

  python tests/benchmarks/rl_ppo_throughput.py [--num_envs=64] [--repeats=5] \
      [--torch_updates=3] [--threads=N] [--solve] [--out=results.json]
"""

import json
import os
import platform
import statistics
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # a CPU-vs-CPU comparison

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from projects.rl import agent as agent_lib
from projects.rl import config as rl_config
from projects.rl import train

flags.DEFINE_integer('num_envs', 64, 'Parallel environments (both sides).')
flags.DEFINE_integer('rollout_length', 128, 'Steps per environment per update.')
flags.DEFINE_integer('updates_per_call', 10, 'JAX updates per jitted call.')
flags.DEFINE_integer('torch_updates', 3, 'PyTorch updates per repeat.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats; the median is reported.')
flags.DEFINE_float('lr', 2.5e-3, 'Adam learning rate (both sides).')
flags.DEFINE_integer('threads', 0, 'CPU threads for torch (0: every core).')
flags.DEFINE_bool('solve', False, 'Also time solving CartPole from scratch.')
flags.DEFINE_integer('solve_seeds', 3, 'Seeds timed with --solve.')
flags.DEFINE_integer('solve_envs', 8, 'Environments of the --solve runs.')
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')
FLAGS = flags.FLAGS

GAMMA, LAMBDA, EPOCHS, MINIBATCHES, CLIP = 0.99, 0.95, 4, 4, 0.2


def ppo_config(num_envs, rollout_length, lr, num_steps=1000):
  config = rl_config.get_config()
  config.num_seeds = 1
  config.num_devices = 1
  config.env.num_envs = num_envs
  config.env.rollout_length = rollout_length
  config.optimizer.learning_rate = lr
  config.num_steps = num_steps
  return config


def jax_runner():
  """run() -> env steps done: --updates_per_call PPO updates, jitted."""
  config = ppo_config(FLAGS.num_envs, FLAGS.rollout_length, FLAGS.lr)
  algorithm = agent_lib.Algorithm(config)
  runners = train.initial_runners(algorithm, config)
  chunk = jax.jit(train.make_chunk(algorithm, FLAGS.updates_per_call),
                  donate_argnums=0)

  def run():
    nonlocal runners
    runners, metrics = chunk(runners, {})
    jax.block_until_ready(metrics)
    return FLAGS.updates_per_call * FLAGS.num_envs * FLAGS.rollout_length

  run()  # compile
  return run


def torch_runner():
  """run() -> env steps done: --torch_updates PPO updates in PyTorch."""
  import gymnasium as gym  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(FLAGS.threads or len(os.sched_getaffinity(0)))
  torch.manual_seed(0)
  num_envs, length = FLAGS.num_envs, FLAGS.rollout_length
  envs = gym.vector.SyncVectorEnv(
      [lambda: gym.make('CartPole-v1') for _ in range(num_envs)],
      autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
  obs_size = envs.single_observation_space.shape[0]
  num_actions = envs.single_action_space.n

  def mlp(outputs):
    return nn.Sequential(nn.Linear(obs_size, 64), nn.Tanh(), nn.Linear(64, 64),
                         nn.Tanh(), nn.Linear(64, outputs))

  actor, critic = mlp(num_actions), mlp(1)
  parameters = list(actor.parameters()) + list(critic.parameters())
  optimizer = torch.optim.Adam(parameters, lr=FLAGS.lr)
  obs, _ = envs.reset(seed=0)
  obs = torch.as_tensor(obs)

  def update():
    nonlocal obs
    buffers = {k: torch.zeros((length, num_envs)) for k in (
        'action', 'log_prob', 'value', 'reward', 'terminated', 'done',
        'next_value')}
    observations = torch.zeros((length, num_envs, obs_size))
    for t in range(length):
      with torch.no_grad():
        dist = torch.distributions.Categorical(logits=actor(obs))
        action = dist.sample()
        value = critic(obs)[:, 0]
      next_obs, reward, terminated, truncated, info = envs.step(action.numpy())
      done = np.logical_or(terminated, truncated)
      final_obs = next_obs.copy()
      for i in np.flatnonzero(done):
        final_obs[i] = info['final_obs'][i]
      with torch.no_grad():
        buffers['next_value'][t] = critic(torch.as_tensor(final_obs))[:, 0]
      observations[t] = obs
      buffers['action'][t] = action
      buffers['log_prob'][t] = dist.log_prob(action)
      buffers['value'][t] = value
      buffers['reward'][t] = torch.as_tensor(reward)
      buffers['terminated'][t] = torch.as_tensor(terminated, dtype=torch.float32)
      buffers['done'][t] = torch.as_tensor(done, dtype=torch.float32)
      obs = torch.as_tensor(next_obs)
    advantages = torch.zeros((length, num_envs))
    future = torch.zeros(num_envs)
    for t in reversed(range(length)):
      delta = (buffers['reward'][t] + GAMMA * (1 - buffers['terminated'][t]) *
               buffers['next_value'][t] - buffers['value'][t])
      future = delta + GAMMA * LAMBDA * (1 - buffers['done'][t]) * future
      advantages[t] = future
    targets = (advantages + buffers['value']).reshape(-1)
    advantages = advantages.reshape(-1)
    advantages = (advantages - advantages.mean()) / (advantages.std(
        unbiased=False) + 1e-4)
    flat_obs = observations.reshape(-1, obs_size)
    actions = buffers['action'].reshape(-1).long()
    old_log_probs = buffers['log_prob'].reshape(-1)
    size = flat_obs.shape[0]
    for _ in range(EPOCHS):
      for picks in torch.randperm(size).reshape(MINIBATCHES, -1):
        dist = torch.distributions.Categorical(logits=actor(flat_obs[picks]))
        ratio = torch.exp(dist.log_prob(actions[picks]) - old_log_probs[picks])
        adv = advantages[picks]
        policy_loss = -torch.min(ratio * adv, torch.clamp(
            ratio, 1 - CLIP, 1 + CLIP) * adv).mean()
        value_loss = 0.5 * ((critic(flat_obs[picks])[:, 0] -
                             targets[picks]) ** 2).mean()
        loss = policy_loss + 0.5 * value_loss - 0.01 * dist.entropy().mean()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 0.5)
        optimizer.step()

  def run():
    for _ in range(FLAGS.torch_updates):
      update()
    return FLAGS.torch_updates * num_envs * length

  run()  # warm-up
  return run


def time_to_solve(seed: int) -> dict:
  """Seconds from a cold start (compilation included) to greedy return >= 475."""
  started = time.perf_counter()
  config = ppo_config(FLAGS.solve_envs, 128, FLAGS.lr, num_steps=200)
  config.seed = seed
  algorithm = agent_lib.Algorithm(config)
  runners = train.initial_runners(algorithm, config)
  chunk = jax.jit(train.make_chunk(algorithm, 5), donate_argnums=0)
  play = train.make_play(algorithm, 16)
  updates, score = 0, 0.0
  while updates < config.num_steps:
    runners, _ = chunk(runners, {})
    updates += 5
    score = float(np.asarray(play(runners.params['agent'],
                                  jax.random.key(updates),
                                  agent_lib.GREEDY)[0]).mean())
    if score >= 475:
      break
  return {'seed': seed, 'seconds': time.perf_counter() - started,
          'updates': updates, 'env_steps': updates * FLAGS.solve_envs * 128,
          'greedy_return': score, 'solved': score >= 475}


def main(argv):
  del argv
  runners = {'jax': jax_runner(), 'pytorch': torch_runner()}
  rates = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      started = time.perf_counter()
      steps = run()
      rates[name].append(steps / (time.perf_counter() - started))
  medians = {name: statistics.median(r) for name, r in rates.items()}
  results = {
      'environment': {
          'python': platform.python_version(), 'jax': jax.__version__,
          'cpu_cores': len(os.sched_getaffinity(0)),
          'load_average': os.getloadavg(),
          'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')},
      'flags': {k: FLAGS[k].value for k in (
          'num_envs', 'rollout_length', 'updates_per_call', 'torch_updates',
          'repeats', 'lr')},
      'env_steps_per_second': medians,
      'ratio_jax_over_pytorch': medians['jax'] / medians['pytorch'],
  }
  print(f"{'method':<10}{'env steps/s (median)':>24}{'min':>12}{'max':>12}")
  for name, r in rates.items():
    print(f'{name:<10}{medians[name]:>24,.0f}{min(r):>12,.0f}{max(r):>12,.0f}')
  print(f"jax / pytorch: {results['ratio_jax_over_pytorch']:.1f}x")
  if FLAGS.solve:
    results['time_to_solve'] = [time_to_solve(s)
                                for s in range(FLAGS.solve_seeds)]
    for r in results['time_to_solve']:
      print(f"solve seed {r['seed']}: {r['seconds']:.1f} s, {r['updates']} "
            f"updates ({r['env_steps']:,} env steps), greedy return "
            f"{r['greedy_return']:.1f}{'' if r['solved'] else ' (NOT solved)'}")
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  app.run(main)
