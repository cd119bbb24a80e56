"""HW3: image classification with a CNN or a ResNet, and the tricks around it.

`build(config)` is the Experiment for one classifier (lib.image_classifier:
augmentation, mixup and label smoothing inside the jitted loss, the optimizer's
warm-up + cosine schedule). `train_and_evaluate(config, workdir)` runs
`config.mode`:
  supervised    one model in `workdir`;
  ensemble      `ensemble.num_members` models (seeds seed, seed+1, ...) in
                `workdir/member_<i>`, their softmax outputs averaged;
  pseudo_label  a model on the labelled part of the training split in
                `workdir/round_0`, then per round a new model on the labelled
                images plus the unlabeled ones the last model labelled
                confidently, in `workdir/round_<r>`.
Every model is one stage: a run of the shared loop in its own folder, so a
rerun restores the stages that finished without training them and resumes
the one that stopped. With `tta.flip` or `tta.shift` on, each split also
reports `<split>/tta_accuracy` (projects/cnn/tta.py).
"""

import dataclasses
import os

import ml_collections
import numpy as np

from lib import image_classifier
from lib import loop
from lib import mesh as mesh_lib
from lib import plots
from lib import trainer
from lib.data import images as image_data
from lib.errors import ConfigError
from projects.cnn import config as config_lib
from projects.cnn import ensemble
from projects.cnn import evaluation
from projects.cnn import pseudo_label


def build(config: ml_collections.ConfigDict,
          data: image_data.ImageData | None = None) -> trainer.Experiment:
  config_lib.validate(config)
  return image_classifier.build(config, data)


def _fit(config, workdir: str, experiment: trainer.Experiment, mesh,
         report=None) -> loop.TrainResult:
  """One stage: trains a model in `workdir`, resuming or restoring it there."""
  task = dataclasses.replace(trainer.make_task(config, experiment, mesh),
                             report=report)
  return loop.run(task, workdir, loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
  return {f'{prefix}/{k}': v for k, v in metrics.items()
          if not k.startswith('baseline/')}


def _supervised(config, workdir, data, mesh) -> loop.TrainResult:
  experiment = build(config, data)
  evaluator = evaluation.Evaluator(config, experiment.model,
                                   experiment.eval_data, mesh)
  return _fit(config, workdir, experiment, mesh, evaluator.tta_report)


def _ensemble(config, workdir, data, mesh) -> loop.TrainResult:
  experiment = build(config, data)
  evaluator = evaluation.Evaluator(config, experiment.model,
                                   experiment.eval_data, mesh)
  states, member_outputs = [], []
  for member in range(config.ensemble.num_members):
    member_config = config.copy_and_resolve_references()
    member_config.seed = config.seed + member
    state = _fit(member_config, os.path.join(workdir, f'member_{member}'),
                 experiment, mesh).state
    states.append(state)
    member_outputs.append(evaluator.split_outputs(state))
  metrics, curves = ensemble.summarize(member_outputs)
  metrics.update(experiment.baselines)
  loop.write_json(workdir, 'summary.json', metrics)
  if config.plots and loop.is_chief():
    ensemble.plot_size(curves, os.path.join(workdir, 'ensemble_size.png'),
                       title=f'{config.project}: ensemble')
  return loop.TrainResult(states, metrics)


def _pseudo_label(config, workdir, data, mesh) -> loop.TrainResult:
  settings = config.pseudo_label
  labelled, unlabelled, hidden_labels = pseudo_label.split_labelled(
      data.train, settings.labelled_fraction, config.data.split_seed)
  experiment = build(config, data._replace(train=labelled))
  evaluator = evaluation.Evaluator(config, experiment.model,
                                   experiment.eval_data, mesh)
  result = _fit(config, os.path.join(workdir, 'round_0'), experiment, mesh,
                evaluator.tta_report)
  metrics = {'labelled_examples': float(len(labelled['label'])),
             'unlabelled_examples': float(len(unlabelled['image'])),
             **_prefixed('round_0', result.metrics)}
  curves = {'test/accuracy': [(0, result.metrics['test/accuracy'])],
            'selected fraction': [(0, 0.0)]}
  for round_ in range(1, settings.rounds + 1):
    # The previous model labels the unlabeled images (with TTA when it is on).
    probs = evaluator.probs(result.state, unlabelled['image'])
    combined, chosen = pseudo_label.with_pseudo_labels(
        labelled, unlabelled, probs, settings.threshold)
    if not len(chosen):
      raise ConfigError(
          f'round {round_}: no unlabeled image has confidence above '
          f'config.pseudo_label.threshold={settings.threshold}; lower it')
    result = _fit(config, os.path.join(workdir, f'round_{round_}'),
                  build(config, data._replace(train=combined)), mesh,
                  evaluator.tta_report)
    metrics.update(_prefixed(f'round_{round_}', result.metrics))
    metrics[f'round_{round_}/pseudo_labels'] = float(len(chosen))
    # Reported only: how many chosen pseudo-labels are right.
    metrics[f'round_{round_}/pseudo_label_accuracy'] = float(np.mean(
        np.argmax(probs[chosen], -1) == hidden_labels[chosen]))
    curves['test/accuracy'].append((round_, result.metrics['test/accuracy']))
    curves['selected fraction'].append(
        (round_, len(chosen) / len(unlabelled['image'])))
  metrics.update(result.metrics)
  loop.write_json(workdir, 'summary.json', metrics)
  if config.plots and loop.is_chief():
    plots.plot_curves(curves, os.path.join(workdir, 'pseudo_labels.png'),
                      xlabel='round', title=f'{config.project}: pseudo-labels')
  return loop.TrainResult(result.state, metrics)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains what `config.mode` asks for in `workdir`; resumes a stopped run."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  data = image_data.load_images(config.data)
  run = {'supervised': _supervised, 'ensemble': _ensemble,
         'pseudo_label': _pseudo_label}[config.mode]
  return run(config, workdir, data, mesh)
