"""The four methods, each a `lib.loop.Task` that trains one network.

source_only: labelled source images. dann: the same plus unlabelled target
images, through the gradient reversal. finetune: source_only's network tuned
on finetune.shots labelled target images per class. target_only: all target
labels (the upper bound). All share the network, its initialization and the
evaluation on both domains' test sets.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import loop
from lib import mesh as mesh_lib
from lib import optim
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib.data import batches as batches_lib
from lib.data import splits
from lib.errors import ConfigError
from projects.domain_adaptation import dann


def few_shot(data: dict, shots: int, seed: int) -> dict:
  """`shots` random examples of each class (fewer where a class has fewer)."""
  rng = np.random.default_rng(seed)
  keep = [rng.permutation(np.flatnonzero(data['label'] == c))[:shots]
          for c in np.unique(data['label'])]
  return splits.take(data, np.sort(np.concatenate(keep)))


def make_optimizer(optimizer: ml_collections.ConfigDict, num_steps: int,
                   anneal: bool) -> optax.GradientTransformation:
  tx = optim.make_optimizer(optimizer, num_steps)
  if anneal:
    tx = optax.chain(tx, optax.scale_by_schedule(
        dann.annealed_learning_rate_scale(num_steps)))
  return tx


def batch_at(labelled: dict, unlabelled: dict | None, batch_size: int,
             step: int, seed: int) -> dict:
  """The host batch for `step`: labelled source, unlabelled target images."""
  batch = batches_lib.train_batch(labelled, batch_size, step, seed)
  result = {'source_image': batch['image'], 'source_label': batch['label']}
  if unlabelled is not None:
    result['target_image'] = batches_lib.train_batch(
        {'image': unlabelled['image']}, batch_size, step, seed + 1)['image']
  return result


def make_evaluator(model: dann.DANN, source_test: dict, target_test: dict,
                   batch_size: int, mesh) -> steps_lib.Evaluator:
  """Metrics on this process's part of the 'source' and 'target' test sets."""
  splits_by_domain = {
      name: splits.shard_for_process({**data, 'domain': np.full(
          len(data['label']), domain, np.int32)})
      for name, data, domain in (('source', source_test, dann.SOURCE),
                                 ('target', target_test, dann.TARGET))}
  return steps_lib.Evaluator(dann.make_eval_fn(model), splits_by_domain,
                             batches_lib.local_batch_size(batch_size), mesh)


def make_task(method: str, config: ml_collections.ConfigDict,
              model: dann.DANN, source_train: dict, target_train: dict,
              evaluator: steps_lib.Evaluator, mesh, *,
              pretrained: Callable[[], train_state_lib.TrainState]
              ) -> loop.Task:
  """The loop task that trains `method` on the (whole) training sets.

  finetune starts from the parameters and batch statistics of the state that
  `pretrained()` gives when the loop initializes it (its optimizer afresh).
  """
  num_steps, optimizer = config.num_steps, config.optimizer
  batch_size, unlabelled = config.batch_size, None
  labelled = target_train if method == 'target_only' else source_train
  if method == 'dann':
    unlabelled = splits.shard_for_process(target_train)
  elif method == 'finetune':
    num_steps = config.finetune.num_steps
    optimizer = ml_collections.ConfigDict(config.optimizer.to_dict())
    optimizer.update(learning_rate=config.finetune.learning_rate,
                     warmup_steps=0)
    labelled = few_shot(target_train, config.finetune.shots,
                        config.data.split_seed)
    size = len(labelled['label'])  # may be smaller than a batch
    batch_size = min(batch_size, size - size % mesh.size)
    if batch_size <= 0:
      raise ConfigError(f'finetune: {size} labelled target images are fewer '
                        f'than the {mesh.size} devices; raise finetune.shots')
  labelled = splits.shard_for_process(labelled)
  local_batch = batches_lib.local_batch_size(batch_size)
  tx = make_optimizer(optimizer, num_steps, config.dann.anneal_learning_rate)
  loss_fn = dann.make_loss_fn(
      model, num_steps=num_steps, lambda_max=config.dann.lambda_max,
      gamma=config.dann.gamma, domain_weight=config.dann.domain_weight)
  train_step = steps_lib.make_train_step(
      loss_fn, tx, mesh, log_grad_norm=config.log_grad_norm,
      loss_takes_step=True)

  def init():
    state = train_state_lib.create_train_state(
        model, tx, labelled['image'][:1], jax.random.key(config.seed), mesh)
    if method != 'finetune':
      return state
    start = pretrained()  # copied: the train step donates its state
    params, model_state = jax.tree.map(jnp.copy, (start.params,
                                                  start.model_state))
    return state.replace(params=params, model_state=model_state)

  def step(state, step):
    batch = batch_at(labelled, unlabelled, local_batch, step - 1, config.seed)
    return train_step(state, mesh_lib.shard_batch(batch, mesh))

  def evaluate(state, _):
    results = evaluator(state)
    if method == 'dann':
      return results
    # Only DANN trains the domain classifier: elsewhere its accuracy is noise.
    return {split: {k: v for k, v in values.items() if k != 'domain_accuracy'}
            for split, values in results.items()}

  def report(_, summary):
    if method != 'dann':
      return {}
    # How well the domain classifier tells the two test sets apart.
    return {'domain_accuracy': 0.5 * (summary['source/domain_accuracy'] +
                                      summary['target/domain_accuracy'])}

  return loop.Task(init=init, step=step, num_steps=num_steps,
                   evaluate=evaluate, report=report, name=method,
                   remedy='lower optimizer.learning_rate or dann.lambda_max')
