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
Every model trains with lib.trainer (checkpoints, resumption, logs), so a
re-run resumes where it stopped. With `tta.flip` or `tta.shift` on, each split
also reports `<split>/tta_accuracy` (projects/cnn/tta.py).
"""

import copy
import json
import os

from etils import epath
import jax
import ml_collections
import numpy as np

from lib import image_classifier
from lib import mesh as mesh_lib
from lib import plots
from lib import trainer
from lib.data import images as image_data
from lib.errors import ConfigError
from projects.cnn import pseudo_label
from projects.cnn import tta

MODES = ('supervised', 'ensemble', 'pseudo_label')
EVAL_SPLITS = ('val', 'test')


def validate(config: ml_collections.ConfigDict) -> None:
  if config.mode not in MODES:
    raise ConfigError(f'config.mode={config.mode!r}: choose one of {MODES}')
  tta.validate(config.tta)
  members = config.ensemble.num_members
  if not (isinstance(members, int) and members >= 1):
    raise ConfigError(f'config.ensemble.num_members={members!r} must be an '
                      'integer >= 1')
  pseudo_label.validate(config.pseudo_label)


def build(config: ml_collections.ConfigDict,
          data: image_data.ImageData | None = None) -> trainer.Experiment:
  validate(config)
  return image_classifier.build(config, data)


class _Evaluator:
  """Class probabilities of trained states on val and test, with(out) TTA."""

  def __init__(self, config, experiment: trainer.Experiment,
               data: image_data.ImageData):
    self._batch_size = config.batch_size
    self._mesh = mesh_lib.make_mesh(config.num_devices)
    self._data = data
    self._plain = tta.make_predict_fn(experiment.model, self._mesh)
    self._tta = None
    if tta.is_on(config.tta):
      self._tta = tta.make_predict_fn(experiment.model, self._mesh,
                                      flip=config.tta.flip,
                                      shift=config.tta.shift)

  @property
  def uses_tta(self) -> bool:
    return self._tta is not None

  def probs(self, state, images: np.ndarray, *, with_tta: bool) -> np.ndarray:
    predict = self._tta if with_tta else self._plain
    return tta.predict_probs(predict, state.params, state.model_state, images,
                             self._batch_size, self._mesh)

  def split_probs(self, state) -> dict[str, np.ndarray]:
    """{'val': ..., 'test': ..., and 'val_tta', 'test_tta' when TTA is on}."""
    out = {}
    for split in EVAL_SPLITS:
      split_images = getattr(self._data, split)['image']
      out[split] = self.probs(state, split_images, with_tta=False)
      if self.uses_tta:
        out[f'{split}_tta'] = self.probs(state, split_images, with_tta=True)
    return out

  def accuracies(self, probs: dict[str, np.ndarray]) -> dict[str, float]:
    """{'<split>/accuracy', '<split>/tta_accuracy'} of `split_probs`."""
    out = {}
    for name, values in probs.items():
      split, _, suffix = name.partition('_')
      labels = getattr(self._data, split)['label']
      metric = 'tta_accuracy' if suffix else 'accuracy'
      out[f'{split}/{metric}'] = tta.accuracy(values, labels)
    return out

  def tta_accuracies(self, state) -> dict[str, float]:
    """{'<split>/tta_accuracy'} of one state."""
    return {f'{split}/tta_accuracy': tta.accuracy(
        self.probs(state, getattr(self._data, split)['image'], with_tta=True),
        getattr(self._data, split)['label']) for split in EVAL_SPLITS}


def _write_summary(workdir: str, metrics: dict[str, float]) -> None:
  if jax.process_index() == 0:
    (epath.Path(workdir) / 'summary.json').write_text(
        json.dumps(metrics, indent=1))


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
  return {f'{prefix}/{k}': v for k, v in metrics.items()
          if not k.startswith('baseline/')}


def _train(config, workdir, experiment, evaluator) -> trainer.TrainResult:
  """One model by lib.trainer, plus '<split>/tta_accuracy' when TTA is on."""
  result = trainer.train_and_evaluate(config, workdir, experiment)
  if not evaluator.uses_tta:
    return result
  metrics = {**result.metrics, **evaluator.tta_accuracies(result.state)}
  _write_summary(workdir, metrics)
  return trainer.TrainResult(result.state, metrics)


def _supervised(config, workdir, data) -> trainer.TrainResult:
  experiment = build(config, data)
  return _train(config, workdir, experiment,
                _Evaluator(config, experiment, data))


def average_probs(member_probs: list[dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
  """The ensemble's prediction: each split's softmax averaged over members."""
  return {name: np.mean([probs[name] for probs in member_probs], axis=0)
          for name in member_probs[0]}


def _ensemble(config, workdir, data) -> trainer.TrainResult:
  experiment = build(config, data)
  evaluator = _Evaluator(config, experiment, data)
  states, member_probs, metrics = [], [], {}
  for member in range(config.ensemble.num_members):
    member_config = copy.deepcopy(config)
    member_config.seed = config.seed + member
    result = trainer.train_and_evaluate(
        member_config, os.path.join(workdir, f'member_{member}'), experiment)
    states.append(result.state)
    member_probs.append(evaluator.split_probs(result.state))
    metrics.update(_prefixed(f'member_{member}',
                             evaluator.accuracies(member_probs[-1])))
  # The ensemble of the first k members, for k = 1 .. num_members.
  curves = {}
  for k in range(1, len(states) + 1):
    averaged = average_probs(member_probs[:k])
    for name, value in evaluator.accuracies(averaged).items():
      curves.setdefault(name, []).append((k, value))
  for name, points in curves.items():
    metrics[name] = points[-1][1]
    metrics[f'member_mean/{name}'] = float(np.mean(
        [metrics[f'member_{i}/{name}'] for i in range(len(states))]))
  metrics.update(experiment.baselines)
  _write_summary(workdir, metrics)
  if config.plots and jax.process_index() == 0:
    plots.plot_curves(curves, os.path.join(workdir, 'ensemble_size.png'),
                      xlabel='members averaged', ylabel='accuracy',
                      title=f'{config.project}: ensemble')
  return trainer.TrainResult(states, metrics)


def _pseudo_label(config, workdir, data) -> trainer.TrainResult:
  settings = config.pseudo_label
  labelled, unlabelled, hidden_labels = pseudo_label.split_labelled(
      data.train, settings.labelled_fraction, config.data.split_seed)
  experiment = build(config, data._replace(train=labelled))
  evaluator = _Evaluator(config, experiment, data)
  result = _train(config, os.path.join(workdir, 'round_0'), experiment,
                  evaluator)
  metrics = {'labelled_examples': float(len(labelled['label'])),
             'unlabelled_examples': float(len(unlabelled['image'])),
             **_prefixed('round_0', result.metrics)}
  curves = {'test/accuracy': [(0, result.metrics['test/accuracy'])],
            'selected fraction': [(0, 0.0)]}
  for round_ in range(1, settings.rounds + 1):
    # The previous model labels the unlabeled images (with TTA when it is on).
    probs = evaluator.probs(result.state, unlabelled['image'],
                            with_tta=evaluator.uses_tta)
    combined, chosen = pseudo_label.with_pseudo_labels(
        labelled, unlabelled, probs, settings.threshold)
    if not len(chosen):
      raise ConfigError(
          f'round {round_}: no unlabeled image has confidence above '
          f'config.pseudo_label.threshold={settings.threshold}; lower it')
    round_experiment = build(config, data._replace(train=combined))
    result = _train(config, os.path.join(workdir, f'round_{round_}'),
                    round_experiment, evaluator)
    metrics.update(_prefixed(f'round_{round_}', result.metrics))
    metrics[f'round_{round_}/pseudo_labels'] = float(len(chosen))
    # Reported only: how many chosen pseudo-labels are right.
    metrics[f'round_{round_}/pseudo_label_accuracy'] = float(np.mean(
        np.argmax(probs[chosen], -1) == hidden_labels[chosen]))
    curves['test/accuracy'].append((round_, result.metrics['test/accuracy']))
    curves['selected fraction'].append(
        (round_, len(chosen) / len(unlabelled['image'])))
  metrics.update(result.metrics)
  _write_summary(workdir, metrics)
  if config.plots and jax.process_index() == 0:
    plots.plot_curves(curves, os.path.join(workdir, 'pseudo_labels.png'),
                      xlabel='round', title=f'{config.project}: pseudo-labels')
  return trainer.TrainResult(result.state, metrics)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  """Trains what `config.mode` asks for in `workdir`; resumes a stopped run."""
  validate(config)
  data = image_data.load_images(config.data)
  run = {'supervised': _supervised, 'ensemble': _ensemble,
         'pseudo_label': _pseudo_label}[config.mode]
  return run(config, workdir, data)
