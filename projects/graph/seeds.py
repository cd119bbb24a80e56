"""Full-batch training of one model over many seeds at once.

The state stacks every seed's parameters, optimizer state, best-validation
parameters and early-stopping bookkeeping along a leading seed axis; one
jitted (donated) function runs `epochs_per_step` epochs of every seed, a
`jax.vmap` of the single-seed epoch inside a `lax.scan`. A seed that has
stopped keeps its state unchanged, so stopping is part of the state and a
resumed run stops where an uninterrupted one would; once every seed has
stopped, the epochs are skipped. Each epoch's forward pass for validation
also scores train and test, and the scores of the kept parameters are kept
with them, so evaluation reads the state and compiles nothing.

Seeds are sharded over the mesh's 'data' axis; the graph is replicated (a
full batch does not split by examples).
"""

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import mesh as mesh_lib
from projects.graph import data as data_lib
from projects.graph import models

SPLITS = ('train', 'val', 'test')


class SeedState(NamedTuple):
  """One seed's run; the loop's state is this with a leading seed axis."""
  seed: jax.Array  # int32: the keys of init and dropout derive from it
  params: dict
  opt_state: optax.OptState
  best_params: dict
  epoch: jax.Array  # int32: epochs trained
  active: jax.Array  # bool: not stopped yet
  best_val_loss: jax.Array
  best_val_accuracy: jax.Array
  best_epoch: jax.Array
  bad_epochs: jax.Array  # patience rule: epochs with neither val metric better
  val_losses: jax.Array  # window rule: the last `window` val losses
  train_loss: jax.Array  # of the last epoch trained
  best_metrics: dict  # {split: {'loss', 'accuracy'}} at best_params


def graph_inputs(graph: data_lib.Graph, sparse: bool) -> dict:
  """The arrays the jitted functions take (arguments, not big constants)."""
  features = (models.SparseFeatures.from_dense(graph.features) if sparse
              else graph.features)
  return dict(features=features, senders=graph.senders,
              receivers=graph.receivers, labels=graph.labels,
              train_mask=graph.train_mask, val_mask=graph.val_mask,
              test_mask=graph.test_mask)


def masked_loss_and_accuracy(logits, labels, mask):
  """Mean cross-entropy and accuracy over the nodes in `mask`."""
  weights = mask.astype(jnp.float32) / jnp.maximum(mask.sum(), 1)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (logits.argmax(-1) == labels).astype(jnp.float32)
  return (losses * weights).sum(), (correct * weights).sum()


def l2_penalty(params, scope: str) -> jax.Array:
  """sum(w^2) / 2 over the weights (not biases) of the first layer or of all."""
  chosen = params['layer_0'] if scope == 'first' else params
  leaves = jax.tree_util.tree_leaves_with_path(chosen)
  return sum(0.5 * jnp.sum(w ** 2) for path, w in leaves
             if path[-1].key != 'bias')


class Setup(NamedTuple):
  """What the jitted functions are specialised on (hashable: equal configs
  share their compiled programs)."""
  model: nn.Module
  learning_rate: float
  l2_weight: float
  l2_scope: str
  rule: str
  window: int
  patience: int
  num_epochs: int
  epochs_per_step: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, model):
    return cls(model, config.optimizer.learning_rate, config.l2.weight,
               config.l2.scope, config.stopping.rule, config.stopping.window,
               config.stopping.patience, config.num_epochs,
               config.epochs_per_step)

  @property
  def tx(self) -> optax.GradientTransformation:
    return optax.adam(self.learning_rate)


def apply_model(setup: Setup, params, inputs, train=False, key=None):
  """(logits, first-layer output) of every node."""
  rngs = {'dropout': key} if train else None
  return setup.model.apply({'params': params}, inputs['features'],
                           inputs['senders'], inputs['receivers'],
                           train=train, rngs=rngs)


@functools.partial(jax.jit, static_argnums=0)
def init_one(setup: Setup, seed, inputs) -> SeedState:
  init_key, _ = jax.random.split(jax.random.key(seed))
  params = setup.model.init(init_key, inputs['features'], inputs['senders'],
                            inputs['receivers'])['params']
  zero = jnp.zeros((), jnp.int32)
  return SeedState(
      seed=jnp.asarray(seed, jnp.int32), params=params,
      opt_state=setup.tx.init(params), best_params=params, epoch=zero,
      active=jnp.ones((), bool), best_val_loss=jnp.full((), jnp.inf),
      best_val_accuracy=jnp.zeros(()), best_epoch=zero, bad_epochs=zero,
      val_losses=jnp.zeros((setup.window,)), train_loss=jnp.zeros(()),
      best_metrics={split: {'loss': jnp.zeros(()), 'accuracy': jnp.zeros(())}
                    for split in SPLITS})


def split_metrics(logits, inputs) -> dict[str, dict[str, jax.Array]]:
  out = {}
  for split in SPLITS:
    loss, accuracy = masked_loss_and_accuracy(logits, inputs['labels'],
                                              inputs[f'{split}_mask'])
    out[split] = {'loss': loss, 'accuracy': accuracy}
  return out


def train_loss(setup: Setup, params, inputs, key):
  logits, _ = apply_model(setup, params, inputs, train=True, key=key)
  loss, _ = masked_loss_and_accuracy(logits, inputs['labels'],
                                     inputs['train_mask'])
  return loss + setup.l2_weight * l2_penalty(params, setup.l2_scope)


def epoch_one(setup: Setup, s: SeedState, inputs) -> SeedState:
  """One epoch of one seed: a step, then validation and the stopping rule."""
  _, dropout_key = jax.random.split(jax.random.key(s.seed))
  key = jax.random.fold_in(dropout_key, s.epoch)
  loss, grads = jax.value_and_grad(train_loss, argnums=1)(setup, s.params,
                                                          inputs, key)
  updates, opt_state = setup.tx.update(grads, s.opt_state, s.params)
  params = optax.apply_updates(s.params, updates)
  metrics = split_metrics(apply_model(setup, params, inputs)[0], inputs)
  val_loss, val_accuracy = metrics['val']['loss'], metrics['val']['accuracy']
  loss_ok = val_loss <= s.best_val_loss
  if setup.rule == 'window':  # GCN: worse than the last window's mean
    keep = val_loss < s.best_val_loss
    stop = (s.epoch > setup.window) & (val_loss > s.val_losses.mean())
    bad_epochs = s.bad_epochs
  else:  # GAT: patience on val loss or accuracy; keep when both are best
    accuracy_ok = val_accuracy >= s.best_val_accuracy
    keep = loss_ok & accuracy_ok
    bad_epochs = jnp.where(loss_ok | accuracy_ok, 0, s.bad_epochs + 1)
    stop = bad_epochs >= setup.patience
  epoch = s.epoch + 1
  new = SeedState(
      seed=s.seed, params=params, opt_state=opt_state,
      best_params=jax.tree.map(lambda a, b: jnp.where(keep, a, b), params,
                               s.best_params),
      epoch=epoch, active=~stop & (epoch < setup.num_epochs),
      best_val_loss=jnp.minimum(val_loss, s.best_val_loss),
      best_val_accuracy=jnp.maximum(val_accuracy, s.best_val_accuracy),
      best_epoch=jnp.where(keep, epoch, s.best_epoch),
      bad_epochs=bad_epochs,
      val_losses=jnp.roll(s.val_losses, -1).at[-1].set(val_loss),
      train_loss=loss,
      best_metrics=jax.tree.map(lambda a, b: jnp.where(keep, a, b), metrics,
                                s.best_metrics))
  return jax.tree.map(lambda a, b: jnp.where(s.active, a, b), new, s)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def run_chunk(setup: Setup, state: SeedState, inputs):
  """`epochs_per_step` epochs of every seed -> (state, metrics with 'loss')."""
  epoch_all = jax.vmap(functools.partial(epoch_one, setup), in_axes=(0, None))

  def epoch(state, _):  # skipped (no compute) once every seed has stopped
    return jax.lax.cond(state.active.any(), epoch_all, lambda s, _: s,
                        state, inputs), None

  state, _ = jax.lax.scan(epoch, state, None, length=setup.epochs_per_step)
  return state, {'loss': state.train_loss.mean(),
                 'active_seeds': state.active.sum()}


@functools.partial(jax.jit, static_argnums=0)
def embed(setup: Setup, params, inputs) -> jax.Array:
  return apply_model(setup, params, inputs)[1]


class SeedTrainer:
  """`Setup`'s jitted functions over the seeds, sharded on `mesh`."""

  def __init__(self, config: ml_collections.ConfigDict, model, mesh):
    self.setup = Setup.from_config(config, model)
    self.seed_sharding = mesh_lib.batch_sharding(mesh)
    self.replicated = mesh_lib.replicated(mesh)

  def place(self, inputs: dict) -> dict:
    return jax.device_put(inputs, self.replicated)

  def init(self, seeds, inputs) -> SeedState:
    """Every seed's initial state, stacked and sharded over the seed axis.

    One seed at a time: XLA compiles the vmapped initializers' random bits
    several times slower than one seed's.
    """
    states = [init_one(self.setup, seed, inputs)
              for seed in np.asarray(seeds, np.int32)]
    return jax.device_put(jax.tree.map(lambda *xs: jnp.stack(xs), *states),
                          self.seed_sharding)

  def run_chunk(self, state: SeedState, inputs):
    return run_chunk(self.setup, state, inputs)

  def per_seed(self, state: SeedState) -> dict[str, np.ndarray]:
    """Each seed's metrics at its best-validation parameters (kept with them)."""
    flat = {f'{split}/{name}': value
            for split, values in state.best_metrics.items()
            for name, value in values.items()}
    return jax.device_get({**flat, 'epochs_trained': state.epoch,
                           'best_epoch': state.best_epoch})

  def embeddings(self, state: SeedState, inputs, seed_index: int = 0):
    """The first layer's output for every node, from one seed's best params."""
    params = jax.tree.map(lambda x: x[seed_index], state.best_params)
    return np.asarray(jax.device_get(embed(self.setup, params, inputs)))


def summarize(per_seed: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
  """{split: {name: mean, name_std: std over seeds (ddof 0)}}, and the epochs."""
  results = {'train': {}, 'val': {}, 'test': {}}
  for key, values in per_seed.items():
    if '/' in key:
      split, name = key.split('/')
      values = np.asarray(values, np.float64)
      results[split][name] = float(values.mean())
      results[split][f'{name}_std'] = float(values.std())
  results['val']['epochs_trained'] = float(per_seed['epochs_trained'].mean())
  results['val']['mean_best_epoch'] = float(per_seed['best_epoch'].mean())
  return results
