"""HW10: adversarial attacks on image classifiers, transfer to unseen models, defences.

`train_and_evaluate(config, workdir)` runs `config.mode` (see config.py):

  attack                every proxy and victim is a stage: a lib.trainer run
                        in WORKDIR/models/<name>_seed<seed>, which a rerun
                        resumes, or reuses without training once finished.
                        The attacker sees only the proxies; evaluation.py
                        attacks a fixed subset of test images and scores the
                        unseen victims on them.
  adversarial_training  `adversarial_training.model` trained normally
                        (WORKDIR/standard) and with PGD-AT / fast FGSM-AT
                        (WORKDIR/pgd_at, WORKDIR/fgsm_at; the attack runs
                        inside the loss, defences.adversarial_loss_fn), each
                        a stage; then clean, FGSM and PGD accuracy of each.

Writes summary.json, results.md (report.py) and, in attack mode,
adversarial_examples.png.
"""

import copy
import dataclasses
import functools
import os
from typing import Callable

import ml_collections

from lib import image_classifier
from lib import loop
from lib import trainer
from lib.data import augment as augment_lib
from lib.data import images as image_data
from lib.data import splits
from projects.adversarial import config as config_lib
from projects.adversarial import defences
from projects.adversarial import evaluation
from projects.adversarial import report


def classifier_config(config, architecture: str, seed: int):
  """The lib.image_classifier config of one model: `config` with its model and seed."""
  model_config = copy.deepcopy(config)
  model_config.model = copy.deepcopy(config.architectures[architecture])
  model_config.seed = seed
  return model_config


def train_classifier(config, workdir: str, data: image_data.ImageData,
                     loss_fn: Callable | None = None):
  """One stage: trains, resumes or reuses a classifier; returns (Classifier, summary)."""
  experiment = image_classifier.build(config, data)
  if loss_fn is not None:
    experiment = dataclasses.replace(experiment,
                                     loss_fn=loss_fn(experiment.model))
  result = trainer.train_and_evaluate(config, workdir, experiment)
  state = result.state
  return (image_classifier.Classifier(experiment.model, state.params,
                                      state.model_state), result.metrics)


def _train_models(config, workdir, data, field: str):
  """The classifiers config.<field> names ('name:seed', ...), one stage each."""
  classifiers, metrics = {}, {}
  for architecture, seed in config_lib.model_specs(config, field):
    name = f'{architecture}_seed{seed}'
    classifiers[name], summary = train_classifier(
        classifier_config(config, architecture, seed),
        os.path.join(workdir, 'models', name), data)
    metrics[f'train/{name}/wall_seconds'] = summary['wall_seconds']
  return classifiers, metrics


def _attack_mode(config, workdir, data, runner, attacked):
  proxies, proxy_metrics = _train_models(config, workdir, data, 'proxies')
  victims, victim_metrics = _train_models(config, workdir, data, 'victims')
  universal_train = splits.random_subset(
      data.train, config.universal.num_examples, config.data.split_seed)
  metrics, examples = evaluation.transfer_metrics(
      config, runner, proxies, victims, attacked, universal_train)
  metrics = {**proxy_metrics, **victim_metrics, **metrics}
  sources = list(evaluation.surrogate_sets(config, proxies))
  report.write_text(workdir, 'results.md', report.attack_tables(
      config, metrics, sources, list(victims)))
  if config.plots and loop.is_chief() and len(examples.rows) > 1:
    report.plot_examples(config, examples, next(iter(victims)),
                         data.class_names,
                         os.path.join(workdir, 'adversarial_examples.png'))
  return trainer.TrainResult({'proxies': proxies, 'victims': victims},
                             metrics)


def _adversarial_training_mode(config, workdir, data, runner, attacked):
  training = config.adversarial_training
  augment = augment_lib.make_augment(config.augment)
  loss_fns = {'standard': None}
  for method in config_lib.names(training.methods):
    attack = defences.training_attack(method, epsilon=training.epsilon,
                                      step_size=training.step_size,
                                      num_steps=training.num_steps)
    loss_fns[f'{method}_at'] = functools.partial(
        defences.adversarial_loss_fn, attack=attack, augment=augment,
        label_smoothing=config.label_smoothing)
  model_config = classifier_config(config, training.model, config.seed)
  metrics, models = {}, {}
  for name, loss_fn in loss_fns.items():
    models[name], _ = train_classifier(
        model_config, os.path.join(workdir, name), data, loss_fn)
    robustness = evaluation.robustness_metrics(config, runner, models[name],
                                               attacked)
    metrics.update({f'{name}/{k}': v for k, v in robustness.items()})
  report.write_text(workdir, 'results.md', report.training_table(
      config, metrics, list(loss_fns), len(attacked['label'])))
  return trainer.TrainResult(models, metrics)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  config_lib.validate(config)
  data = image_data.load_images(config.data)
  runner = evaluation.Runner(config, data.num_classes)
  attacked = splits.random_subset(data.test, config.attack.num_examples,
                                  config.data.split_seed)
  mode = (_attack_mode if config.mode == 'attack'
          else _adversarial_training_mode)
  result = mode(config, workdir, data, runner, attacked)
  loop.write_json(workdir, 'summary.json', result.metrics)
  return result
