"""Configs for HW12: reinforcement learning, from policy gradient to PPO.

Variants (`--config=projects/rl/config.py:VARIANT`):
  (none)     PPO on CartPole-v1 (gymnax), 4 seeds: solves it (return 500).
  quick      PPO on CartPole for a few seconds (the tour).
  reinforce  policy gradient on whole episodes; `reinforce.returns` picks the
             lecture's version.
  a2c        advantage actor-critic; `a2c.target` picks 'mc', 'td' or 'gae'.
  curiosity  PPO with a forward model's prediction error as a reward bonus.
  shaping    PPO with potential-based reward shaping.
  bc         behaviour cloning from an expert's saved trajectories.
  gail       adversarial inverse RL: PPO on a reward learned by a
             discriminator between the expert's and the policy's (s, a).
  lunar      the homework's LunarLander-v3 through gymnasium (Box2D), PPO in
             a host-side vectorized loop (`pip install "gymnasium[box2d]"`).

One training step (`num_steps`, `log_every`, ...) is one update: a rollout of
`env.num_envs` x `env.rollout_length` environment steps and the algorithm's
gradient steps on it. A step of the training loop (lib.loop) is one jitted
call of `log_every` updates, so `eval_every` and `checkpoint_every` must be
multiples of it (LunarLander's host loop steps one update at a time).

Fields beyond lib.config.base_config():
  algorithm            reinforce | a2c | ppo | bc | gail.
  num_seeds            independent runs, vmapped (and split over devices).
  env.name             a gymnax environment with discrete actions
                       (CartPole-v1, Acrobot-v1, MountainCar-v0,
                       Breakout-MinAtar, ...), or LunarLander-v3 with
                       env.backend='gymnasium'.
  env.backend          'gymnax' (the whole run jitted) or 'gymnasium'.
  env.num_envs         parallel environments per seed.
  env.rollout_length   steps per environment per update. REINFORCE resets
                       every env at each update and keeps each env's first
                       episode, so give it at least the episode limit.
  gamma, gae_lambda    discount, and GAE's lambda (PPO, GAIL, a2c 'gae').
  normalize_advantages normalize advantages over each rollout (a2c, PPO).
  reinforce.returns    'total' (the episode's total reward), 'reward_to_go',
                       'discounted' (reward-to-go with gamma) or 'normalized'
                       (discounted minus its mean, over its std: a baseline).
  a2c.target           the critic's target: 'mc' (the rollout's return,
                       bootstrapped at its end), 'td' (r + gamma V(s')), 'gae'.
  ppo.clip_eps, ppo.epochs, ppo.minibatches
                       the clipped objective; epochs over each rollout.
  loss.value_coef, loss.entropy_coef
  model.hidden, model.activation
                       the actor's and the critic's MLPs (separate networks).
  shaping.potential    '' or one of projects.rl.envs.POTENTIALS; adds
                       scale * (gamma phi(s') - phi(s)) to each reward.
  curiosity.coef       0: off; else the weight of the forward model's squared
                       prediction error added to the reward.
  gail.*               the discriminator's width, learning rate and steps
                       per update; gail.reward: 'softplus' (-log(1 - D),
                       positive, favours long episodes: fine where living
                       long is the task, as in CartPole) or 'logit'
                       (log D - log(1 - D), unbiased: for tasks that end by
                       success, as Acrobot).
  bc.steps_per_update  gradient steps on `batch_size` expert pairs per update.
  expert_workdir       a workdir of a PPO run whose expert.npz (trajectories
                       of its best seed) bc and gail learn from; '' trains a
                       PPO expert first (the quick settings), in
                       WORKDIR/expert.
  save_expert          a PPO run saves its best seed's final greedy
                       evaluation (eval.episodes episodes) as
                       WORKDIR/expert.npz.
  eval.episodes        episodes per seed at each evaluation.
  eval.policy          'greedy' (argmax) or 'sample'.
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from lib.errors import ConfigError

VARIANTS = ('quick', 'reinforce', 'a2c', 'curiosity', 'shaping', 'bc', 'gail',
            'lunar')
ALGORITHMS = ('reinforce', 'a2c', 'ppo', 'bc', 'gail')
REINFORCE_RETURNS = ('total', 'reward_to_go', 'discounted', 'normalized')
A2C_TARGETS = ('mc', 'td', 'gae')
BACKENDS = ('gymnax', 'gymnasium')
EVAL_POLICIES = ('greedy', 'sample')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('rl', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'rl'
  config.algorithm = 'ppo'
  config.num_seeds = 4
  config.env = ml_collections.ConfigDict(dict(
      name='CartPole-v1', backend='gymnax', num_envs=8, rollout_length=128))
  config.gamma = 0.99
  config.gae_lambda = 0.95
  config.normalize_advantages = True
  config.reinforce = ml_collections.ConfigDict(dict(returns='normalized'))
  config.a2c = ml_collections.ConfigDict(dict(target='gae'))
  config.ppo = ml_collections.ConfigDict(dict(
      clip_eps=0.2, epochs=4, minibatches=4))
  config.loss = ml_collections.ConfigDict(dict(
      value_coef=0.5, entropy_coef=0.01))
  config.model = ml_collections.ConfigDict(dict(
      hidden=(64, 64), activation='tanh'))
  config.shaping = ml_collections.ConfigDict(dict(potential='', scale=1.0))
  config.curiosity = ml_collections.ConfigDict(dict(
      coef=0.0, hidden=(64,), learning_rate=1e-3))
  config.gail = ml_collections.ConfigDict(dict(
      hidden=(64, 64), learning_rate=3e-4, discriminator_steps=1,
      reward='softplus'))
  config.bc = ml_collections.ConfigDict(dict(steps_per_update=8))
  config.expert_workdir = ''
  config.save_expert = True
  config.eval = ml_collections.ConfigDict(dict(episodes=16, policy='greedy'))
  config.batch_size = 256  # bc's expert minibatch
  config.num_steps = 200
  config.log_every = 10
  config.eval_every = 50
  config.checkpoint_every = 50
  config.optimizer.learning_rate = 2.5e-3
  config.optimizer.grad_clip_norm = 0.5
  config.tour.metric = 'eval/mean_return'
  config.tour.mode = 'max'
  config.tour.target = 150.0
  config.tour.baseline = 'baseline/random_policy_return'

  if arg == 'quick':
    config.num_seeds = 2
    config.num_steps = 60
    config.eval_every = 60
    config.checkpoint_every = 0
  elif arg == 'reinforce':
    config.algorithm = 'reinforce'
    config.env.rollout_length = 500
    config.loss.entropy_coef = 0.0
    config.num_steps = 300
  elif arg == 'a2c':
    config.algorithm = 'a2c'
    config.env.rollout_length = 32
    config.num_steps = 1000
    config.log_every = 50
    config.eval_every = 250
    config.checkpoint_every = 250
  elif arg == 'curiosity':
    config.curiosity.coef = 1.0
  elif arg == 'shaping':
    config.shaping.potential = 'cartpole_upright'
    config.shaping.scale = 0.1
  elif arg == 'bc':
    config.algorithm = 'bc'
    config.num_steps = 50
    config.eval_every = 50
  elif arg == 'gail':
    config.algorithm = 'gail'
  elif arg == 'lunar':
    config.env.name = 'LunarLander-v3'
    config.env.backend = 'gymnasium'
    config.env.num_envs = 16
    config.env.rollout_length = 256
    config.num_seeds = 1
    config.gamma = 0.999
    config.gae_lambda = 0.98
    config.optimizer.learning_rate = 3e-4
    config.ppo.minibatches = 16
    config.num_steps = 240
    config.log_every = 1
    config.eval_every = 20
    config.checkpoint_every = 20
    config.tour.target = 200.0
  return config


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first field no run could use."""
  config_lib.validate(config)
  require(config.algorithm in ALGORITHMS,
          f'config.algorithm={config.algorithm!r}: choose one of {ALGORITHMS}')
  require(config.env.backend in BACKENDS,
          f'config.env.backend={config.env.backend!r}: choose one of '
          f'{BACKENDS}')
  for name in ('num_seeds', 'env.num_envs', 'env.rollout_length',
               'ppo.epochs', 'ppo.minibatches', 'gail.discriminator_steps',
               'bc.steps_per_update', 'eval.episodes'):
    group, _, field = name.rpartition('.')
    value = (config[group] if group else config)[field]
    require(isinstance(value, int) and value > 0,
            f'config.{name}={value!r} must be a positive integer')
  require(0.0 < config.gamma <= 1.0,
          f'config.gamma={config.gamma} must lie in (0, 1]')
  require(0.0 <= config.gae_lambda <= 1.0,
          f'config.gae_lambda={config.gae_lambda} must lie in [0, 1]')
  config_lib.require_choice(config.reinforce.returns, 'reinforce.returns',
                            REINFORCE_RETURNS)
  config_lib.require_choice(config.a2c.target, 'a2c.target', A2C_TARGETS)
  require(config.gail.reward in ('softplus', 'logit'),
          f"config.gail.reward={config.gail.reward!r}: choose 'softplus' or "
          "'logit'")
  require(config.ppo.clip_eps > 0,
          f'config.ppo.clip_eps={config.ppo.clip_eps} must be > 0')
  batch = config.env.num_envs * config.env.rollout_length
  require(batch % config.ppo.minibatches == 0,
          f'config.ppo.minibatches={config.ppo.minibatches} must divide the '
          f'rollout (env.num_envs x env.rollout_length = {batch})')
  require(config.curiosity.coef >= 0,
          f'config.curiosity.coef={config.curiosity.coef} must be >= 0')
  from projects.rl import envs  # pylint: disable=g-import-not-at-top
  require(config.shaping.potential in ('', *envs.POTENTIALS),
          f'config.shaping.potential={config.shaping.potential!r}: choose '
          f"'' or one of {tuple(envs.POTENTIALS)}")
  config_lib.require_choice(config.eval.policy, 'eval.policy', EVAL_POLICIES)
  require(config.model.activation in ('tanh', 'relu'),
          f"config.model.activation={config.model.activation!r}: choose 'tanh'"
          " or 'relu'")
  for name in ('model.hidden', 'curiosity.hidden', 'gail.hidden'):
    group, field = name.split('.')
    hidden = tuple(config[group][field])
    require(all(isinstance(w, int) and w > 0 for w in hidden),
            f'config.{name}={hidden} must be positive integers')
  for name in ('eval_every', 'checkpoint_every', 'num_steps'):
    require(config[name] % config.log_every == 0,
            f'config.{name}={config[name]} must be a multiple of '
            f'config.log_every={config.log_every} (updates per jitted call)')
  if config.env.backend == 'gymnasium':
    require(config.algorithm == 'ppo' and config.num_seeds == 1,
            "env.backend='gymnasium' runs PPO with num_seeds=1")
