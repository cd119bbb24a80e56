"""One GAN train state and its jitted, donated, sharded step.

`GANState` holds both players: parameters, optimizer states, their other
flax collections (the generator's batch statistics, the discriminator's
spectral-norm power-iteration vectors) and the generator's exponential moving
average. `GAN.step(state, batch)` takes `n_critic` discriminator updates (a
`lax.scan` over the batch's leading axis, one real batch each), then one
generator update, then the EMA update, on a batch
{'real': [n_critic, B, ...], 'label': [n_critic, B] (conditional only)}.
With `pack` > 1 the discriminator scores packs (PacGAN, Lin et al. 2018):
`pack` real or `pack` fake samples concatenated along the channel axis, so
B / pack scores per side.
`make_step` jits a chunk of such steps (one call per loop step, so cheap
steps are not dominated by dispatch), split over the mesh's 'data' axis
along B.
"""

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from lib import mesh as mesh_lib
from lib import optim
from projects.gan import losses


def make_optimizer(config: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
  """Adam with the config's b1, b2 (GANs use b1 = 0.5), else lib.optim's."""
  if config.name != 'adam':
    return optim.make_optimizer(config, num_steps)
  tx = optax.adam(optim.make_schedule(config, num_steps), b1=config.b1,
                  b2=config.b2)
  if config.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


@flax.struct.dataclass
class GANState:
  step: jax.Array
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any
  g_state: Any  # the generator's other collections, e.g. {'batch_stats': ...}
  d_state: Any  # the discriminator's, e.g. spectral-norm vectors
  g_ema: Any  # exponential moving average of g_params
  key: jax.Array


def pack_samples(x: jax.Array, pack: int) -> jax.Array:
  """[B, ..., C] -> [B / pack, ..., pack * C]: each `pack` consecutive
  samples concatenated along the last (channel) axis."""
  if pack == 1:
    return x
  grouped = x.reshape(x.shape[0] // pack, pack, *x.shape[1:])
  grouped = jnp.moveaxis(grouped, 1, -2)  # [B / pack, ..., pack, C]
  return grouped.reshape(*grouped.shape[:-2], -1)


def apply(model, params, collections, *args, train: bool):
  """(outputs, collections): updated in training, unchanged otherwise."""
  variables = {'params': params, **collections}
  if train and collections:
    outputs, updated = model.apply(variables, *args, train=True,
                                   mutable=list(collections))
    return outputs, dict(updated)
  return model.apply(variables, *args, train=train), collections


@dataclasses.dataclass(frozen=True)
class GAN:
  generator: Any
  discriminator: Any
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  loss: str
  latent_dim: int
  sample_shape: tuple
  num_classes: int = 0  # > 0: conditional
  n_critic: int = 1
  gp_weight: float = 10.0
  clip_value: float = 0.01
  ema_decay: float = 0.999
  pack: int = 1  # samples per discriminator input (PacGAN)

  def init(self, key) -> GANState:
    g_key, d_key, state_key = jax.random.split(key, 3)
    labels = jnp.zeros((1,), jnp.int32) if self.num_classes else None
    g_vars = dict(self.generator.init(
        g_key, jnp.zeros((1, self.latent_dim)), labels))
    d_vars = dict(self.discriminator.init(
        d_key, pack_samples(jnp.zeros((self.pack, *self.sample_shape)),
                            self.pack), labels))
    g_params, d_params = g_vars.pop('params'), d_vars.pop('params')
    return GANState(
        step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
        g_opt_state=self.g_tx.init(g_params),
        d_opt_state=self.d_tx.init(d_params), g_state=g_vars, d_state=d_vars,
        g_ema=g_params, key=state_key)

  def generate(self, g_params, g_state, z, labels=None):
    """Samples from latents `z`; batch norm uses the batch's own statistics
    (as in training), so EMA weights need no recomputed running averages."""
    return apply(self.generator, g_params, g_state, z, labels, train=True)[0]

  def _labels(self, key, size):
    if not self.num_classes:
      return None
    return jax.random.randint(key, (size,), 0, self.num_classes)

  def discriminator_update(self, state: GANState, real, labels, key,
                           shard=lambda x: x):
    """One critic step on a real batch and a fresh fake one."""
    z_key, gp_key = jax.random.split(key)
    z = shard(jax.random.normal(z_key, (len(real), self.latent_dim)))
    fake = pack_samples(jax.lax.stop_gradient(self.generate(
        state.g_params, state.g_state, z, labels)), self.pack)
    real = pack_samples(real, self.pack)
    both_labels = None if labels is None else jnp.concatenate([labels, labels])

    def loss_fn(d_params):
      scores, d_state = apply(self.discriminator, d_params, state.d_state,
                              jnp.concatenate([real, fake]), both_labels,
                              train=True)
      real_scores, fake_scores = jnp.split(scores, 2)
      loss = losses.discriminator_loss(self.loss, real_scores, fake_scores)
      metrics = {'d_loss': loss, 'd_real': jnp.mean(real_scores),
                 'd_fake': jnp.mean(fake_scores)}
      if self.loss == 'wgan_gp':
        critic = lambda x: apply(self.discriminator, d_params, d_state, x,
                                 labels, train=False)[0]
        penalty = losses.gradient_penalty(critic, real, fake, gp_key)
        loss = loss + self.gp_weight * penalty
        metrics['gradient_penalty'] = penalty
      return loss, (metrics, d_state)

    (_, (metrics, d_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.d_params)
    updates, d_opt_state = self.d_tx.update(grads, state.d_opt_state,
                                            state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    if self.loss == 'wgan':
      d_params = losses.clip_weights(d_params, self.clip_value)
    return state.replace(d_params=d_params, d_opt_state=d_opt_state,
                         d_state=d_state), metrics

  def generator_update(self, state: GANState, key, batch_size: int,
                       shard=lambda x: x):
    z_key, label_key = jax.random.split(key)
    z = shard(jax.random.normal(z_key, (batch_size, self.latent_dim)))
    labels = self._labels(label_key, batch_size)

    def loss_fn(g_params):
      fake, g_state = apply(self.generator, g_params, state.g_state, z,
                            labels, train=True)
      scores, _ = apply(self.discriminator, state.d_params, state.d_state,
                        pack_samples(fake, self.pack), labels, train=False)
      return losses.generator_loss(self.loss, scores), g_state

    (g_loss, g_state), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.g_params)
    updates, g_opt_state = self.g_tx.update(grads, state.g_opt_state,
                                            state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    # TF's ExponentialMovingAverage warm-up: early averages forget the init.
    decay = jnp.minimum(self.ema_decay, (1.0 + state.step) / (10.0 + state.step))
    g_ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p,
                         state.g_ema, g_params)
    return state.replace(g_params=g_params, g_opt_state=g_opt_state,
                         g_state=g_state, g_ema=g_ema), {'g_loss': g_loss}

  def step(self, state: GANState, batch, shard=lambda x: x):
    """n_critic discriminator updates, then one generator update."""
    key = jax.random.fold_in(state.key, state.step)
    critic_keys = jax.random.split(jax.random.fold_in(key, 0), self.n_critic)

    def critic_step(state, inputs):
      real, labels, critic_key = inputs
      return self.discriminator_update(state, real, labels, critic_key, shard)

    state, d_metrics = jax.lax.scan(
        critic_step, state, (batch['real'], batch.get('label'), critic_keys))
    state, g_metrics = self.generator_update(
        state, jax.random.fold_in(key, 1), batch['real'].shape[1], shard)
    metrics = {**jax.tree.map(jnp.mean, d_metrics), **g_metrics}
    # The NaN stop watches 'loss': both players' losses together.
    metrics['loss'] = metrics['d_loss'] + metrics['g_loss']
    return state.replace(step=state.step + 1), metrics


def chunk_sharding(mesh):
  """[steps, n_critic, B, ...] arrays split over the mesh along B."""
  return jax.sharding.NamedSharding(mesh, jax.P(None, None, mesh_lib.DATA_AXIS))


def make_step(gan: GAN, mesh):
  """A chunk of GAN steps (a `lax.scan` over the batch's leading axis, one
  GAN step each) jitted once: state replicated and donated, the batch split
  along B; the metrics are the chunk's means."""
  batch_sharding = mesh_lib.batch_sharding(mesh)
  shard = lambda x: jax.lax.with_sharding_constraint(x, batch_sharding)
  replicated = mesh_lib.replicated(mesh)

  def chunk(state, batches):
    state, metrics = jax.lax.scan(
        lambda state, batch: gan.step(state, batch, shard), state, batches)
    return state, jax.tree.map(jnp.mean, metrics)

  return jax.jit(chunk, donate_argnums=0,
                 in_shardings=(replicated, chunk_sharding(mesh)),
                 out_shardings=(replicated, replicated))


def shard_chunk(batches, mesh):
  """Global [steps, n_critic, B, ...] arrays from each process's
  [steps, n_critic, B/P, ...]."""
  sharding = chunk_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), batches)


def make_init(gan: GAN, seed: int, mesh):
  """() -> the initial state, computed in one jit (compiled once) and
  replicated over the mesh."""
  return jax.jit(lambda: gan.init(jax.random.key(seed)),
                 out_shardings=mesh_lib.replicated(mesh))


def make_sampler(gan: GAN, mesh):
  """sample(g_params, g_state, z, labels) -> samples, z split over the mesh."""
  sharded = mesh_lib.batch_sharding(mesh)
  replicated = mesh_lib.replicated(mesh)
  return jax.jit(gan.generate,
                 in_shardings=(replicated, replicated, sharded, sharded),
                 out_shardings=sharded)
