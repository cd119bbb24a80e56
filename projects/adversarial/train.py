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
  robustness            each model of `models` a stage (WORKDIR/models), then
                        attacked directly: FGSM, PGD, the one-pixel attack,
                        the randomization defence with and without EOT.
  backdoor              `backdoor.model` trained on clean data (WORKDIR/clean)
                        and on poisoned data (WORKDIR/backdoored, backdoor.py);
                        clean accuracy and attack success rate of each.
  reprogram             `reprogram.model` trained on config.data (WORKDIR/frozen),
                        then an adversarial program that makes it count
                        squares (reprogramming.py), for it and for the same
                        network untrained (WORKDIR/program_{trained,random}).

Writes summary.json, results.md (report.py) and, in attack mode,
adversarial_examples.png.
"""

import copy
import dataclasses
import functools
import os
from typing import Callable

import jax
import ml_collections
import numpy as np

from lib import config as lib_config
from lib import image_classifier
from lib import loop
from lib import models as lib_models
from lib.config import require
from lib import trainer
from lib.data import augment as augment_lib
from lib.data import images as image_data
from lib.data import splits
from projects.adversarial import backdoor
from projects.adversarial import config as config_lib
from projects.adversarial import defences
from projects.adversarial import evaluation
from projects.adversarial import report
from projects.adversarial import reprogramming


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
  models = {name: train_classifier(model_config, os.path.join(workdir, name),
                                  data, loss_fn)[0]
            for name, loss_fn in loss_fns.items()}
  metrics = _robustness(config, runner, models, attacked)
  report.write_text(workdir, 'results.md', report.training_table(
      config, metrics, list(loss_fns), len(attacked['label'])))
  return trainer.TrainResult(models, metrics)


def _robustness(config, runner, models: dict, attacked) -> dict[str, float]:
  """evaluation.robustness_metrics of each model, under '<name>/'."""
  metrics = {}
  for name, classifier in models.items():
    robustness = evaluation.robustness_metrics(config, runner, classifier,
                                               attacked)
    metrics.update({f'{name}/{k}': v for k, v in robustness.items()})
  return metrics


def _robustness_mode(config, workdir, data, runner, attacked):
  models, metrics = _train_models(config, workdir, data, 'models')
  metrics.update(_robustness(config, runner, models, attacked))
  report.write_text(workdir, 'results.md', report.robustness_table(
      config, metrics, list(models), len(attacked['label'])))
  return trainer.TrainResult(models, metrics)


def _backdoor_mode(config, workdir, data, runner, attacked):
  del attacked  # every test image is scored
  settings = config.backdoor
  require(settings.target_class < data.num_classes,
          f'config.backdoor.target_class={settings.target_class} must be '
          f'below the number of classes ({data.num_classes})')
  trigger = dict(target_class=settings.target_class,
                 size=settings.trigger_size)
  poisoned = data._replace(train=backdoor.poison(
      data.train, fraction=settings.poison_fraction,
      seed=config.data.split_seed, **trigger))
  test = splits.shard_for_process(data.test)
  triggered = splits.shard_for_process(backdoor.triggered_test(data.test,
                                                               **trigger))
  model_config = classifier_config(config, settings.model, config.seed)
  key = jax.random.key(config.seed)
  metrics = {'backdoor/poisoned_examples': int(np.sum(
      poisoned.train['label'] != data.train['label']))}
  models = {}
  for name, train_data in (('clean', data), ('backdoored', poisoned)):
    models[name], _ = train_classifier(model_config,
                                       os.path.join(workdir, name), train_data)
    predict = runner.predictor([models[name]])
    outputs = predict(triggered, key)
    metrics.update({
        f'{name}/clean_accuracy': evaluation.accuracy(predict(test, key)),
        f'{name}/triggered_accuracy': evaluation.accuracy(outputs),
        f'{name}/attack_success_rate': float(np.mean(
            outputs['prediction'] == settings.target_class))})
  report.write_text(workdir, 'results.md', report.backdoor_table(
      config, metrics, len(data.test['label']), len(triggered['label'])))
  return trainer.TrainResult(models, metrics)


def _reprogram_mode(config, workdir, data, runner, attacked):
  del runner, attacked
  settings = config.reprogram
  frame = data.train['image'].shape[1:]
  cell = frame[0] // 2 // settings.grid  # the task fills the central half
  require(cell >= 1, f'config.reprogram.grid={settings.grid}: the central '
          f'half of a {frame[0]}-pixel frame holds at most {frame[0] // 2} '
          'cells a side')
  require(settings.num_classes <= min(data.num_classes, settings.grid ** 2),
          f'config.reprogram.num_classes={settings.num_classes} must be at '
          f'most the frozen model\'s {data.num_classes} classes and the '
          f'{settings.grid ** 2} cells')
  model_config = classifier_config(config, settings.model, config.seed)
  frozen, frozen_metrics = train_classifier(
      model_config, os.path.join(workdir, 'frozen'), data)
  random_net = lib_models.make_image_classifier(model_config.model,
                                                data.num_classes)
  variables = random_net.init(jax.random.key(config.seed),
                              data.train['image'][:1])
  networks = {'trained': frozen, 'random': image_classifier.Classifier(
      random_net, variables.pop('params'), variables)}
  sizes = {'train': settings.num_train, 'val': settings.num_test,
           'test': settings.num_test}
  task = {split: reprogramming.counting_squares(
      size, grid=settings.grid, cell=cell, num_classes=settings.num_classes,
      channels=frame[-1], seed=config.seed * 3 + i)
          for i, (split, size) in enumerate(sizes.items())}
  program_config = lib_config.stage_config(config, settings.num_steps)
  program_config.optimizer.learning_rate = settings.learning_rate
  metrics = {'frozen/test_accuracy': frozen_metrics['test/accuracy']}
  programs = {}
  for name, network in networks.items():
    experiment = reprogramming.experiment(
        functools.partial(network.logits, network.params), frame, task,
        num_classes=settings.num_classes,
        weight_decay=settings.weight_decay)
    result = trainer.train_and_evaluate(
        program_config, os.path.join(workdir, f'program_{name}'), experiment)
    programs[name] = result.state.params
    metrics[f'program_{name}/test_accuracy'] = result.metrics['test/accuracy']
  metrics['baseline/chance_accuracy'] = 1.0 / settings.num_classes
  report.write_text(workdir, 'results.md', report.reprogram_table(
      config, metrics, frame, cell))
  if config.plots and loop.is_chief():
    report.plot_programs(reprogramming.Program(frame), programs, task['test'],
                         os.path.join(workdir, 'reprogrammed.png'))
  return trainer.TrainResult({'frozen': frozen, 'programs': programs},
                             metrics)


MODES = {'attack': _attack_mode,
         'adversarial_training': _adversarial_training_mode,
         'robustness': _robustness_mode,
         'backdoor': _backdoor_mode,
         'reprogram': _reprogram_mode}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  config_lib.validate(config)
  data = image_data.load_images(config.data)
  runner = evaluation.Runner(config, data.num_classes)
  attacked = splits.random_subset(data.test, config.attack.num_examples,
                                  config.data.split_seed)
  result = MODES[config.mode](config, workdir, data, runner, attacked)
  loop.write_json(workdir, 'summary.json', result.metrics)
  return result
