"""HW11: DANN against source-only, fine-tune-on-few-labels and target-only.

`train_and_evaluate(config, workdir)` trains each method of `config.methods`
as one run of the shared loop in WORKDIR/<method> (checkpoints,
metrics.jsonl, TensorBoard, learning curves): a rerun restores the methods
that finished without training them and resumes at the one that stopped.
Every network is evaluated on the source and target test sets; the features
of both domains, source-only beside DANN, are drawn in
WORKDIR/features_<pca|tsne>.png.
"""

import os

import ml_collections

from lib import loop
from lib import mesh as mesh_lib
from lib.data import domains
from projects.domain_adaptation import config as config_lib
from projects.domain_adaptation import dann
from projects.domain_adaptation import features
from projects.domain_adaptation import methods
from projects.domain_adaptation import results


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains every method of `config.methods`; metrics are '<method>/<name>'."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  source, target = domains.load_pair(config.data)
  num_classes = int(max(source['train']['label'].max(),
                        target['test']['label'].max())) + 1
  model = dann.DANN(tuple(config.model.channels),
                    tuple(config.model.label_hidden),
                    tuple(config.model.domain_hidden), num_classes,
                    config.model.batch_norm)
  evaluator = methods.make_evaluator(model, source['test'], target['test'],
                                     config.batch_size, mesh)
  # Every task is built before any trains, so bad settings fail before writes.
  # finetune starts from the state of the source_only run before it (which a
  # rerun restores from WORKDIR/source_only).
  states, metrics = {}, {}
  tasks = {method: methods.make_task(
      method, config, model, source['train'], target['train'], evaluator,
      mesh, pretrained=lambda: states['source_only'])
           for method in config.methods}
  cadence = loop.Cadence.from_config(config)
  for method, task in tasks.items():
    result = loop.run(task, os.path.join(workdir, method), cadence,
                      metadata={'config': config.to_dict()})
    states[method] = result.state
    # The final evaluation; a finished method's rerun logs no train metrics.
    metrics.update({f'{method}/{name}': value
                    for name, value in result.metrics.items()
                    if not name.startswith('train/')})

  compared = [m for m in ('source_only', 'dann') if m in states]
  if config.plots and compared:
    embedder = features.make_embedder(model, mesh)
    test_sets = {'source': source['test'], 'target': target['test']}
    embedded = {m: features.embed_test_sets(
        embedder, states[m], test_sets, config.features_plot.examples,
        config.batch_size) for m in compared}
    features.plot_features(embedded, config.features_plot.method, os.path.join(
        workdir, f'features_{config.features_plot.method}.png'))
  loop.write_json(workdir, 'summary.json', metrics)
  results.write_results(workdir, metrics, config.methods, plot=config.plots,
                        title=config.project)
  return loop.TrainResult(states, metrics)
