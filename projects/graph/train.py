"""Graph neural networks: full-batch node classification over many seeds.

`train_and_evaluate(config, workdir)` loads the graph, then (with
`features_only_baseline`) trains the model on the graph without its edges
(`data.without_edges`: for GCN exactly a features-only MLP, compiled once
with the model) as a first stage in WORKDIR/features_only, then the model
on the graph in WORKDIR, each a `lib.loop` run of a `seeds.SeedTrainer`:
one loop step is `epochs_per_step` epochs of every seed, evaluation reports the mean and std over seeds of each split's
accuracy at every seed's best-validation parameters, and the report writes
WORKDIR/embeddings.png and WORKDIR/results.md.
"""

import math
import os

import jax
import ml_collections
import numpy as np

from lib import loop
from lib import mesh as mesh_lib
from lib import report as report_lib
from lib.config import require
from projects.graph import config as graph_config
from projects.graph import data as data_lib
from projects.graph import embeddings
from projects.graph import models
from projects.graph import seeds as seeds_lib


def load_graph(config: ml_collections.ConfigDict) -> data_lib.Graph:
  if config.data.name == 'sbm':
    return data_lib.stochastic_block_model(**config.data.sbm)
  return data_lib.load_planetoid(config.data.path, config.data.name)


def seed_mesh(config: ml_collections.ConfigDict):
  """A mesh whose size divides num_seeds (the seeds are what it shards)."""
  size = config.num_devices or math.gcd(config.num_seeds, jax.device_count())
  require(config.num_seeds % size == 0, f'config.num_seeds={config.num_seeds} '
          f'must be a multiple of config.num_devices={size}')
  return mesh_lib.make_mesh(size)


def make_task(config: ml_collections.ConfigDict, graph: data_lib.Graph, mesh,
              workdir: str | None = None,
              baselines: dict | None = None) -> loop.Task:
  """The loop task of config.model.name over config.num_seeds seeds."""
  model = models.make_model(config, graph.num_classes)
  trainer = seeds_lib.SeedTrainer(config, model, mesh)
  # Bag-of-words rows are sparse; the block model's Gaussian features are not.
  inputs = trainer.place(seeds_lib.graph_inputs(
      graph, sparse=config.data.name != 'sbm'))
  seeds = config.seed + np.arange(config.num_seeds)

  def evaluate(state, step):
    del step
    return seeds_lib.summarize(trainer.per_seed(state))

  def report(state, summary):
    del summary
    per_seed = trainer.per_seed(state)
    if workdir and loop.is_chief():
      rows = [{'seed': int(seed), 'epochs': int(per_seed['epochs_trained'][i]),
               'best epoch': int(per_seed['best_epoch'][i]),
               'val accuracy': float(per_seed['val/accuracy'][i]),
               'test accuracy': float(per_seed['test/accuracy'][i])}
              for i, seed in enumerate(seeds)]
      loop.write_text(workdir, 'results.md', report_lib.markdown_table(
          rows, ['seed', 'epochs', 'best epoch', 'val accuracy',
                 'test accuracy']))
      if config.plots:
        embeddings.plot_embeddings(
            trainer.embeddings(state, inputs), graph.labels,
            os.path.join(workdir, 'embeddings.png'),
            title=f'{config.model.name} on {config.data.name}, seed '
            f'{int(seeds[0])}: first-layer output', tsne=config.tsne)
    return {}

  return loop.Task(
      init=lambda: trainer.init(seeds, inputs),
      step=lambda state, step: trainer.run_chunk(state, inputs),
      num_steps=config.num_steps, evaluate=evaluate, report=report,
      baselines=baselines or {},
      name=f'graph: {config.model.name} on {config.data.name}',
      remedy='lower optimizer.learning_rate')


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains (or resumes) the baseline stage, then the model; returns its run."""
  graph_config.validate(config)
  mesh = seed_mesh(config)
  graph = load_graph(config)  # data errors before any write
  baselines = {}
  if config.features_only_baseline:
    result = loop.run(make_task(config, data_lib.without_edges(graph), mesh),
                      os.path.join(workdir, 'features_only'),
                      loop.Cadence.from_config(config),
                      metadata={'config': config.to_dict()})
    baselines = {
        'baseline/features_only_test_accuracy': result.metrics['test/accuracy'],
        'baseline/features_only_test_accuracy_std':
            result.metrics['test/accuracy_std']}
  task = make_task(config, graph, mesh, workdir, baselines)
  return loop.run(task, workdir, loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})
