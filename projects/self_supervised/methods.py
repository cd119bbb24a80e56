"""One train step for SimCLR, MoCo v2, BYOL, SimSiam and VICReg.

The step draws two views of each image of the (sharded) batch on the device,
runs both through the online networks in one pass, takes the method's loss,
updates the online parameters, then the EMA target (BYOL, MoCo) and the
queue (MoCo). It is jitted once, the batch split over the mesh, the state
replicated and donated.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from lib import mesh as mesh_lib
from lib import models
from projects.self_supervised import losses
from projects.self_supervised import networks as networks_lib

METHODS = ('simclr', 'moco', 'byol', 'simsiam', 'vicreg')
WITH_PREDICTOR = ('byol', 'simsiam')
WITH_TARGET = ('byol', 'moco')


@flax.struct.dataclass
class SSLState:
  step: jax.Array
  params: Any  # {'backbone', 'projector'[, 'predictor']}
  model_state: Any  # their batch statistics
  opt_state: Any
  target: Any  # BYOL and MoCo: {'params', 'model_state'} of the EMA networks
  queue: Any  # MoCo: [queue_size, dim] normalized keys, else {}
  queue_index: jax.Array  # the oldest entry of the queue
  key: jax.Array


def init_state(method: str, networks: networks_lib.Networks,
               tx: optax.GradientTransformation, config, sample_image,
               mesh) -> SSLState:
  """The state at step 0, replicated on `mesh`; the target starts as a copy.

  The networks are those networks_lib.init draws from key(config.seed), as
  the random baseline's."""
  key = jax.random.key(config.seed)
  queue_key, state_key = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
  params, model_state = networks_lib.init(networks, sample_image, key)

  def place(params, model_state):
    target = {}
    if method in WITH_TARGET:
      target = jax.tree.map(jnp.copy, {
          'params': {k: params[k] for k in ('backbone', 'projector')},
          'model_state': {k: model_state[k] for k in ('backbone', 'projector')}})
    queue = {}
    if method == 'moco':
      queue = losses.normalize(jax.random.normal(
          queue_key, (config.moco.queue_size, config.head.dim)))
    return SSLState(step=jnp.zeros((), jnp.int32), params=params,
                    model_state=model_state, opt_state=tx.init(params),
                    target=target, queue=queue,
                    queue_index=jnp.zeros((), jnp.int32), key=state_key)

  return jax.jit(place, out_shardings=mesh_lib.replicated(mesh))(
      params, model_state)


def project(networks, params, model_state, images, *, train: bool,
            predict: bool):
  """(outputs {'projection'[, 'prediction']}, new model_state)."""
  features, backbone_state = networks_lib.embed(
      networks.backbone, params['backbone'], model_state['backbone'], images,
      train=train)
  projection, projector_state = models.apply_model(
      networks.projector, params['projector'], model_state['projector'],
      features, train=train)
  outputs = {'projection': projection}
  new_state = {**model_state, 'backbone': backbone_state,
               'projector': projector_state}
  if predict:
    outputs['prediction'], new_state['predictor'] = models.apply_model(
        networks.predictor, params['predictor'], model_state['predictor'],
        projection, train=train)
  return outputs, new_state


def method_loss(method: str, config, online: dict, target: dict | None,
                queue: jax.Array):
  """(loss, metrics) from the two views' outputs, each split in half."""
  z1, z2 = jnp.split(online['projection'], 2)
  if method == 'simclr':
    return losses.nt_xent(z1, z2, config.simclr.temperature), {}
  if method == 'moco':
    k1, k2 = jnp.split(target['projection'], 2)
    temperature = config.moco.temperature
    loss = 0.5 * (losses.info_nce_with_queue(z1, k2, queue, temperature) +
                  losses.info_nce_with_queue(z2, k1, queue, temperature))
    return loss, {}
  if method == 'vicreg':
    v = config.vicreg
    invariance, variance, covariance = losses.vicreg_terms(z1, z2)
    loss = (v.invariance_weight * invariance + v.variance_weight * variance +
            v.covariance_weight * covariance)
    return loss, {'invariance': invariance, 'variance': variance,
                  'covariance': covariance}
  p1, p2 = jnp.split(online['prediction'], 2)
  if method == 'byol':
    t1, t2 = jnp.split(target['projection'], 2)
    return 0.5 * (losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1)), {}
  if method == 'simsiam':
    return 0.5 * (losses.simsiam_loss(p1, z2) +
                  losses.simsiam_loss(p2, z1)), {}
  raise ValueError(method)


def normalized_std(z: jax.Array) -> jax.Array:
  """Per-dimension std of the l2-normalized rows, times sqrt(d): 1 for
  features spread evenly over the sphere, 0 for a collapse to one point."""
  return jnp.mean(jnp.std(losses.normalize(z), axis=0)) * jnp.sqrt(z.shape[-1])


def make_train_step(method: str, networks: networks_lib.Networks,
                    tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict, mesh,
                    two_views: Callable):
  """train_step(state, {'image': [B, H, W, C]}) -> (state, metrics)."""
  predict = method in WITH_PREDICTOR
  momentum_config = config[method] if method in WITH_TARGET else None

  def loss_fn(params, state: SSLState, views):
    online, model_state = project(networks, params, state.model_state, views,
                                  train=True, predict=predict)
    target = None
    if method in WITH_TARGET:
      # Batch statistics of this batch, as the online pass; not kept.
      target, _ = project(networks, state.target['params'],
                          state.target['model_state'], views, train=True,
                          predict=False)
      target = jax.lax.stop_gradient(target)
    loss, metrics = method_loss(method, config, online, target, state.queue)
    metrics['projection_std'] = normalized_std(online['projection'])
    return loss, (metrics, model_state, target)

  def train_step(state: SSLState, batch):
    key = jax.random.fold_in(state.key, state.step)
    views = jnp.concatenate(two_views(key, batch['image']))
    (loss, (metrics, model_state, target)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params, state, views)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    state = state.replace(step=state.step + 1, params=params,
                          model_state=model_state, opt_state=opt_state)
    if method in WITH_TARGET:
      momentum = losses.ema_momentum(
          momentum_config.momentum, state.step, config.num_steps,
          momentum_config.momentum_schedule)
      online = {'params': {k: params[k] for k in ('backbone', 'projector')},
                'model_state': {k: model_state[k]
                                for k in ('backbone', 'projector')}}
      state = state.replace(target=losses.ema_update(state.target, online,
                                                     momentum))
      metrics['momentum'] = momentum
    if method == 'moco':
      queue, index = losses.enqueue(state.queue, state.queue_index,
                                    losses.normalize(target['projection']))
      state = state.replace(queue=queue, queue_index=index)
    return state, {'loss': loss, **metrics}

  replicated = mesh_lib.replicated(mesh)
  return jax.jit(train_step, donate_argnums=0,
                 in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated))
