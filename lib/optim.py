"""Optimizers and learning-rate schedules from a config, built from optax pieces."""

import ml_collections
import optax

from lib.errors import ConfigError

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam',
              'adamw')
SCHEDULES = ('constant', 'cosine', 'linear', 'exponential')


def make_schedule(config: ml_collections.ConfigDict,
                  num_steps: int) -> optax.Schedule:
  """Linear warm-up over `warmup_steps`, then the named decay to the last step."""
  lr = config.learning_rate
  warmup = config.get('warmup_steps', 0)
  name = config.get('schedule', 'constant')
  if name not in SCHEDULES:
    raise ConfigError(f'optimizer.schedule={name!r}: choose one of {SCHEDULES}')
  if warmup < 0 or (warmup and warmup >= num_steps):
    raise ConfigError(f'optimizer.warmup_steps={warmup} must lie in '
                      f'[0, num_steps={num_steps})')
  decay_steps = max(num_steps - warmup, 1)
  if name == 'constant':
    decay = optax.constant_schedule(lr)
  elif name == 'cosine':
    decay = optax.cosine_decay_schedule(lr, decay_steps)
  elif name == 'linear':
    decay = optax.linear_schedule(lr, 0.0, decay_steps)
  else:
    decay = optax.exponential_decay(lr, decay_steps,
                                    config.get('decay_rate', 0.01))
  if not warmup:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(config: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
  """The optimizer named by `config.name`, with schedule, weight decay and clipping."""
  name = config.name
  if name not in OPTIMIZERS:
    raise ConfigError(f'optimizer.name={name!r}: choose one of {OPTIMIZERS}')
  if not config.learning_rate > 0:
    raise ConfigError(
        f'optimizer.learning_rate={config.learning_rate} must be > 0')
  lr = make_schedule(config, num_steps)
  momentum = config.get('momentum', 0.9)
  weight_decay = config.get('weight_decay', 0.0)
  if name == 'sgd':
    tx = optax.sgd(lr)
  elif name in ('momentum', 'nesterov'):
    tx = optax.sgd(lr, momentum=momentum, nesterov=name == 'nesterov')
  elif name == 'adagrad':
    tx = optax.adagrad(lr)
  elif name == 'rmsprop':
    tx = optax.rmsprop(lr)
  elif name == 'adam':
    tx = optax.adam(lr)
  else:
    tx = optax.adamw(lr, weight_decay=weight_decay)
  parts = []
  if config.get('grad_clip_norm', 0.0):
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if weight_decay and name != 'adamw':
    parts.append(optax.add_decayed_weights(weight_decay))
  return optax.chain(*parts, tx) if parts else tx
