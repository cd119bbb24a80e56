"""The ensemble lecture's run: a deep ensemble on the shared loop, then the tree methods.

`train_and_evaluate(config, workdir)` trains `ensemble.num_members` networks
as one `lib.loop.Task` whose state holds the stacked members (one jitted,
sharded, donated vmapped step for all of them, see deep.py), evaluates the
ensemble and its members on the validation split as it goes, and reports on
the test split: accuracy, NLL, Brier, ECE (ensemble, member 0, members'
mean), OOD AUROC from predictive entropy and mutual information, the
reliability diagram (WORKDIR/reliability.png) and WORKDIR/deep_ensemble.md.
The tree and boosting methods are not gradient-trained: with
`trees.enabled` the report runs them, ours against scikit-learn's on the
same splits, and writes WORKDIR/comparison.md.
"""

import os

import ml_collections
import numpy as np

from lib import loop
from lib import mesh as mesh_lib
from lib import optim
from lib import report as report_lib
from lib.data import batches as batches_lib
from lib.data import splits as splits_lib
from projects.ensemble import calibration
from projects.ensemble import comparison
from projects.ensemble import config as config_lib
from projects.ensemble import data as data_lib
from projects.ensemble import deep
from projects.ensemble import networks

_SHOWN = ('accuracy', 'nll', 'brier', 'ece')


def deep_ensemble_table(test: dict, ood: dict) -> str:
  rows = [{'model': 'single member (member 0)',
           **{k: test[f'member/{k}'] for k in _SHOWN},
           'auroc': ood['member/auroc_entropy']},
          {'model': 'members, mean of their metrics',
           **{k: test[f'member_mean/{k}'] for k in _SHOWN}},
          {'model': 'ensemble (mean probabilities)',
           **{k: test[k] for k in _SHOWN}, 'auroc': ood['auroc_entropy'],
           'auroc_mi': ood['auroc_mutual_information']}]
  return report_lib.markdown_table(rows, {
      'model': 'model', 'accuracy': 'test accuracy', 'nll': 'NLL',
      'brier': 'Brier', 'ece': 'ECE', 'auroc': 'OOD AUROC (entropy)',
      'auroc_mi': 'OOD AUROC (mutual information)'})


def make_task(config: ml_collections.ConfigDict, data: dict, ood: np.ndarray,
              mesh, workdir: str | None = None) -> loop.Task:
  """The loop task: train the stacked members, then report."""
  num_classes = int(data['train']['label'].max()) + 1
  model = networks.make_network(config, num_classes)
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  train_step = deep.make_ensemble_step(model, tx, mesh)
  predictor = deep.make_predictor(model, mesh)
  e = config.ensemble
  train = splits_lib.shard_for_process(data['train'])
  local_batch = batches_lib.local_batch_size(config.batch_size)

  def member_probs(state, images, labels):
    source = splits_lib.shard_for_process({'image': images, 'label': labels})
    out = predictor(state.params, source, e.eval_batch_size,
                    all_processes=True)
    return out['member_probs'], out['label']

  def init():
    return deep.init_ensemble(model, tx, train['image'][:1],
                              deep.member_keys(config.seed, e.num_members),
                              mesh)

  def step(state, step):
    batch = deep.member_batches(train, local_batch, step - 1, config.seed,
                                e.num_members)
    return train_step(state, mesh_lib.shard_batch(batch, mesh))

  def evaluate(state, step):
    del step
    probs, labels = member_probs(state, data['val']['image'],
                                 data['val']['label'])
    metrics = calibration.ensemble_metrics(probs, labels, e.ece_bins)
    return {'val': {k: v for k, v in metrics.items()
                    if k.split('/')[-1] in ('accuracy', 'nll')}}

  def report(state, summary):
    del summary
    probs, labels = member_probs(state, data['test']['image'],
                                 data['test']['label'])
    test = calibration.ensemble_metrics(probs, labels, e.ece_bins)
    ood_probs, _ = member_probs(state, ood, np.zeros(len(ood), np.int32))
    ood_metrics = calibration.ood_metrics(probs, ood_probs)
    entries = {**{f'test/{k}': v for k, v in test.items()},
               **{f'ood/{k}': v for k, v in ood_metrics.items()}}
    if workdir and loop.is_chief():
      loop.write_text(workdir, 'deep_ensemble.md',
                      deep_ensemble_table(test, ood_metrics))
      if config.plots:
        calibration.plot_reliability(
            {'member 0': (probs[:, 0], labels),
             f'ensemble of {e.num_members}': (probs.mean(1), labels)},
            os.path.join(workdir, 'reliability.png'), e.ece_bins,
            title=f'{config.data.source}, test')
    if config.trees.enabled:
      rows = comparison.compare(config)
      entries.update(comparison.summary_entries(rows))
      if workdir:
        loop.write_text(workdir, 'comparison.md', comparison.markdown(rows))
    return entries

  return loop.Task(init=init, step=step, num_steps=config.num_steps,
                   evaluate=evaluate, report=report,
                   name=f'deep ensemble of {e.num_members}')


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains the deep ensemble (resuming from `workdir`), then reports."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  mesh_lib.check_batch_size(config.ensemble.eval_batch_size, mesh)
  data = data_lib.load_splits(config)  # data errors before any write
  ood = data_lib.ood_images(config, data['test']['image'])
  task = make_task(config, data, ood, mesh, workdir)
  return loop.run(task, workdir, loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})
