"""Frozen-feature evaluation: linear probe, k-NN, the collapse statistic, and
fine-tuning on a fraction of the labels against training from scratch."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import classifier
from lib import loop
from lib import models
from lib import mesh as mesh_lib
from lib import optim
from lib import predict
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib.data import augment as augment_lib
from lib.data import batches as batches_lib
from lib.data import splits
from projects.self_supervised import losses
from projects.self_supervised import networks as networks_lib


def make_embedder(networks: networks_lib.Networks, mesh) -> predict.Predictor:
  """A predictor of {'features' (the backbone's), 'projection'} from the
  networks' (params, model_state)."""

  def embed(variables, batch, key):
    del key
    params, model_state = variables
    features, _ = networks_lib.embed(
        networks.backbone, params['backbone'], model_state['backbone'],
        batch['image'], train=False)
    projection, _ = models.apply_model(
        networks.projector, params['projector'], model_state['projector'],
        features, train=False)
    return {'features': features, 'projection': projection}

  return predict.Predictor(embed, mesh)


def labelled_subset(data: dict, per_class: int, seed: int) -> dict:
  """`per_class` random examples of each class (all when 0)."""
  if not per_class:
    return data
  rng = np.random.default_rng(seed)
  keep = [rng.permutation(np.flatnonzero(data['label'] == c))[:per_class]
          for c in np.unique(data['label'])]
  return splits.take(data, np.sort(np.concatenate(keep)))


def fraction_subset(data: dict, fraction: float, seed: int) -> dict:
  """A class-stratified `fraction` of `data` (at least one example a class)."""
  counts = np.bincount(data['label'])
  per_class = max(1, int(round(fraction * counts.min())))
  return labelled_subset(data, per_class, seed)


@functools.partial(jax.jit, static_argnames=('num_classes', 'steps'))
def _fit_softmax(features, labels, *, num_classes: int, steps: int,
                 learning_rate, weight_decay):
  tx = optax.adamw(learning_rate, weight_decay=weight_decay)
  params = {'w': jnp.zeros((features.shape[-1], num_classes)),
            'b': jnp.zeros((num_classes,))}

  def loss(params):
    logits = features @ params['w'] + params['b']
    return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           labels).mean()

  def update(_, carry):
    params, opt_state = carry
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return jax.lax.fori_loop(0, steps, update, (params, tx.init(params)))[0]


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, *,
                 steps: int = 500, learning_rate: float = 0.01,
                 weight_decay: float = 1e-4) -> float:
  """Test accuracy of softmax regression (full-batch AdamW) on standardized
  frozen features."""
  mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
  params = _fit_softmax(jnp.asarray((train_x - mean) / std),
                        jnp.asarray(train_y), num_classes=num_classes,
                        steps=steps, learning_rate=learning_rate,
                        weight_decay=weight_decay)
  logits = ((test_x - mean) / std) @ np.asarray(params['w']) + np.asarray(
      params['b'])
  return float(np.mean(logits.argmax(-1) == test_y))


@functools.partial(jax.jit, static_argnames=('k', 'num_classes'))
def knn_predict(train_x, train_y, test_x, *, k: int, num_classes: int,
                temperature: float):
  """Weighted k-NN (InstDisc / solo-learn): the k most cosine-similar training
  features vote for their class with weight exp(similarity / temperature)."""
  similarity = losses.normalize(test_x) @ losses.normalize(train_x).T
  top, index = jax.lax.top_k(similarity, k)
  votes = jax.nn.one_hot(train_y[index], num_classes) * jnp.exp(
      top / temperature)[..., None]
  return jnp.argmax(votes.sum(axis=1), axis=-1)


def knn_accuracy(train_x, train_y, test_x, test_y, num_classes: int, *,
                 k: int = 200, temperature: float = 0.1,
                 chunk: int = 1024) -> float:
  k = min(k, len(train_y))
  predictions = np.concatenate([np.asarray(knn_predict(
      train_x, train_y, test_x[i:i + chunk], k=k, num_classes=num_classes,
      temperature=temperature)) for i in range(0, len(test_x), chunk)])
  return float(np.mean(predictions == test_y))


def collapse_statistic(features) -> tuple[float, float]:
  """(mean per-dimension std of the l2-normalized features, 0.5 / sqrt(d)).

  Collapse to a point gives 0; features spread over the sphere about
  1 / sqrt(d); below the threshold counts as collapsed.
  """
  features = np.asarray(features, np.float64)
  normalized = features / np.maximum(
      np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
  return (float(normalized.std(axis=0).mean()),
          0.5 / np.sqrt(features.shape[-1]))


def frozen_metrics(embedder: predict.Predictor, variables, data,
                   evaluation: ml_collections.ConfigDict, num_classes: int,
                   batch_size: int, seed: int) -> dict:
  """Probe and k-NN test accuracy on the backbone's features (trained on
  evaluation.labels_per_class labels of each class, all when 0), and the
  collapse statistic of the test projections (SimSiam's measure)."""
  labelled = labelled_subset(data.train, evaluation.labels_per_class, seed)
  train, test = (embedder(variables, {'image': split['image']}, batch_size,
                          all_processes=True)
                 for split in (labelled, data.test))
  train_x, test_x = (np.asarray(x['features'], np.float32)
                     for x in (train, test))
  train_y, test_y = labelled['label'], data.test['label']
  std, threshold = collapse_statistic(test['projection'])
  return {
      'probe/accuracy': linear_probe(
          train_x, train_y, test_x, test_y, num_classes,
          steps=evaluation.probe_steps,
          learning_rate=evaluation.probe_learning_rate,
          weight_decay=evaluation.probe_weight_decay),
      'knn/accuracy': knn_accuracy(train_x, train_y, test_x, test_y,
                                   num_classes, k=evaluation.knn_k,
                                   temperature=evaluation.knn_temperature),
      'feature_std': std, 'collapse_threshold': threshold,
      'collapsed': float(std < threshold)}


def make_finetune_task(config: ml_collections.ConfigDict, backbone, data,
                       fraction: float, mesh, pretrained=None) -> loop.Task:
  """Supervised training of the backbone and a fresh linear head on a
  class-stratified `fraction` of the training labels, from `pretrained()`'s
  backbone (its head re-initialized) or from scratch when None."""
  tune = config.finetune
  labelled = fraction_subset(data.train, fraction, config.data.split_seed)
  size = len(labelled['label'])
  batch_size = min(tune.batch_size, size - size % mesh.size)
  local_batch = batches_lib.local_batch_size(batch_size)
  labelled = splits.shard_for_process(labelled)
  optimizer = ml_collections.ConfigDict(config.optimizer.to_dict())
  optimizer.update(learning_rate=tune.learning_rate, warmup_steps=0)
  tx = optim.make_optimizer(optimizer, tune.num_steps)
  augment = augment_lib.make_augment(augment_lib.config(
      crop_padding=tune.crop_padding, flip=config.augment.flip))
  loss_fn, eval_fn = classifier.classifier_fns(backbone, augment=augment,
                                               input_key='image')
  train_step = steps_lib.make_train_step(loss_fn, tx, mesh)
  evaluator = steps_lib.Evaluator(
      eval_fn, {'test': splits.shard_for_process(data.test)},
      batches_lib.local_batch_size(config.batch_size), mesh)

  def init():
    state = train_state_lib.create_train_state(
        backbone, tx, labelled['image'][:1], jax.random.key(config.seed), mesh)
    if pretrained is None:
      return state
    params, model_state = jax.tree.map(jnp.copy, pretrained())
    params, model_state = params['backbone'], model_state['backbone']
    head = [k for k in state.params if k.startswith('Dense')]
    params = {**params, **{k: state.params[k] for k in head}}
    return state.replace(params=params, model_state=model_state)

  def step(state, step):
    batch = batches_lib.train_batch(labelled, local_batch, step - 1,
                                    config.seed)
    return train_step(state, mesh_lib.shard_batch(batch, mesh))

  return loop.Task(init=init, step=step, num_steps=tune.num_steps,
                   evaluate=lambda state, _: evaluator(state),
                   name=f"{'finetune' if pretrained else 'scratch'}_"
                   f'{fraction:g}')
