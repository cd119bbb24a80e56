"""Self-supervised pre-training of one backbone per method, then frozen-feature
evaluation and fine-tuning on few labels.

`train_and_evaluate(config, workdir)` measures the randomly initialized
backbone ('random/...'), trains each method of `config.methods` as one run of
the shared loop in WORKDIR/<method> (a rerun restores finished methods and
resumes the one that stopped), scores its frozen features (linear probe,
k-NN, collapse statistic), fine-tunes it on each fraction of
config.finetune.fractions against the same network trained from scratch
(WORKDIR/<method>/finetune_<f>, WORKDIR/scratch_<f>), and writes
WORKDIR/results.md, knn_curves.png and features_pca.png.
"""

import os

import jax
import ml_collections

from lib import loop
from lib import mesh as mesh_lib
from lib import optim
from lib.data import augment as augment_lib
from lib.data import batches as batches_lib
from lib.data import images
from lib.data import splits
from projects.self_supervised import config as config_lib
from projects.self_supervised import evaluation
from projects.self_supervised import figures
from projects.self_supervised import methods as methods_lib
from projects.self_supervised import networks as networks_lib


def make_task(method: str, config: ml_collections.ConfigDict, data,
              num_classes: int, embedder, mesh) -> loop.Task:
  """The loop task pre-training `method`; evaluates k-NN on val, reports
  the frozen-feature metrics on test."""
  networks = networks_lib.make_networks(
      config, num_classes, method in methods_lib.WITH_PREDICTOR)
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  train_step = methods_lib.make_train_step(
      method, networks, tx, config, mesh,
      augment_lib.make_two_views(config.augment))
  unlabelled = splits.shard_for_process({'image': data.train['image']})
  local_batch = batches_lib.local_batch_size(config.batch_size)
  bank = evaluation.labelled_subset(data.train, config.eval.labels_per_class,
                                    config.data.split_seed)

  def init():
    return methods_lib.init_state(method, networks, tx, config,
                                  data.train['image'][:1], mesh)

  def step(state, step):
    batch = batches_lib.train_batch(unlabelled, local_batch, step - 1,
                                    config.seed)
    return train_step(state, mesh_lib.shard_batch(batch, mesh))

  def features(state, split):
    return embedder((state.params, state.model_state),
                    {'image': split['image']}, config.batch_size,
                    all_processes=True)['features']

  def evaluate(state, _):
    accuracy = evaluation.knn_accuracy(
        features(state, bank), bank['label'], features(state, data.val),
        data.val['label'], num_classes, k=config.eval.knn_k,
        temperature=config.eval.knn_temperature)
    return {'val': {'knn_accuracy': accuracy}}

  def report(state, _):
    return evaluation.frozen_metrics(
        embedder, (state.params, state.model_state), data, config.eval, num_classes, config.batch_size, config.seed)

  return loop.Task(init=init, step=step, num_steps=config.num_steps,
                   evaluate=evaluate, report=report, name=method,
                   remedy='lower optimizer.learning_rate')


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Every method of config.methods; metrics are '<method>/<name>'."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  data = images.load_images(config.data)
  networks = networks_lib.make_networks(config, data.num_classes, False)
  embedder = evaluation.make_embedder(networks, mesh)
  tasks = {m: make_task(m, config, data, data.num_classes, embedder, mesh)
           for m in config.methods}
  cadence = loop.Cadence.from_config(config)

  # The draw every method starts from.
  random = networks_lib.init(networks, data.train['image'][:1],
                             jax.random.key(config.seed))
  metrics = {f'random/{k}': v for k, v in evaluation.frozen_metrics(
      embedder, random, data, config.eval, data.num_classes,
      config.batch_size, config.seed).items()}
  backbones = {'random': random}
  for method, task in tasks.items():
    result = loop.run(task, os.path.join(workdir, method), cadence,
                      metadata={'config': config.to_dict()})
    state = result.state
    backbones[method] = (state.params, state.model_state)
    metrics.update({f'{method}/{k}': v for k, v in result.metrics.items()
                    if not k.startswith('train/')})

  for fraction in config.finetune.fractions:
    starts = {'scratch': None, **{m: (lambda m=m: backbones[m])
                                  for m in config.methods}}
    for name, pretrained in starts.items():
      task = evaluation.make_finetune_task(config, networks.backbone, data,
                                           fraction, mesh, pretrained)
      run_dir = (os.path.join(workdir, f'scratch_{fraction:g}')
                 if pretrained is None else
                 os.path.join(workdir, name, f'finetune_{fraction:g}'))
      result = loop.run(task, run_dir, cadence, metadata={
          'config': config.to_dict()})
      metrics[f'{name}/finetune_{fraction:g}/accuracy'] = result.metrics[
          'test/accuracy']

  figures.write_results(workdir, metrics, config, data, embedder, backbones)
  loop.write_json(workdir, 'summary.json', metrics)
  return loop.TrainResult(backbones, metrics)
