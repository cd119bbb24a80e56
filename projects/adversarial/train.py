"""HW10: adversarial attacks on image classifiers, transfer to unseen models, defences.

`train_and_evaluate(config, workdir)` runs `config.mode` (see config.py):

  attack                classifiers from lib.image_classifier are trained (or,
                        when their checkpoints exist, reused) in
                        WORKDIR/models/<name>_seed<seed>; the attacker sees
                        only the proxies. Each attack of `attack.names` runs
                        on a fixed subset of test images against the proxies'
                        logit ensemble (and the first proxy alone). Reported:
                        white-box accuracy (the proxies themselves), black-box
                        accuracy of the unseen victims on the transferred
                        images (lower = stronger attack; HW10's metric), a
                        universal perturbation, and each passive defence in
                        front of the victims (clean and attacked accuracy).
  adversarial_training  `adversarial_training.model` trained normally
                        (WORKDIR/standard) and with PGD-AT / fast FGSM-AT
                        (WORKDIR/pgd_at, WORKDIR/fgsm_at); clean, FGSM and
                        PGD accuracy of each.

Writes summary.json, results.md (the tables) and, in attack mode,
adversarial_examples.png. Attacks, predictions and defences are jitted once
each, with the batch sharded over the mesh. Single-process.
"""

import copy
import dataclasses
import functools
import json
import os
from typing import Callable

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import image_classifier
from lib import mesh as mesh_lib
from lib import plots
from lib import trainer
from lib.data import augment as augment_lib
from lib.data import batches as batches_lib
from lib.data import images as image_data
from lib.data import splits
from lib.errors import ConfigError
from projects.adversarial import attacks
from projects.adversarial import defences

MODES = ('attack', 'adversarial_training')
# HW10 (2022)'s graded accuracy of the unseen models: simple, medium, strong, boss.
HOMEWORK_LEVELS = {'fgsm': 0.70, 'ifgsm': 0.50, 'mifgsm': 0.30,
                   'dim_mifgsm': 0.15}


def _names(value: str) -> list[str]:
  return [n.strip() for n in value.split(',') if n.strip()]


def parse_models(spec: str, field: str, architectures) -> list[tuple[str, int]]:
  """'resnet:0,small_cnn:1' -> [('resnet', 0), ('small_cnn', 1)]."""
  parsed = []
  for item in _names(spec):
    name, _, seed = item.partition(':')
    if name not in architectures or not seed.isdigit():
      raise ConfigError(
          f'config.{field}={spec!r}: each entry must be name:seed with name '
          f'one of {sorted(architectures)} and seed an integer >= 0, got '
          f'{item!r}')
    parsed.append((name, int(seed)))
  return parsed


def validate(config: ml_collections.ConfigDict) -> None:
  if config.mode not in MODES:
    raise ConfigError(f'config.mode={config.mode!r}: choose one of {MODES}')
  settings = config.attack
  if not 0.0 <= settings.epsilon <= 1.0:
    raise ConfigError(f'config.attack.epsilon={settings.epsilon} must be in '
                      '[0, 1] (pixels are in [0, 1])')
  for name in ('num_steps', 'batch_size', 'pgd_eval_steps'):
    if not (isinstance(settings[name], int) and settings[name] > 0):
      raise ConfigError(f'config.attack.{name}={settings[name]!r} must be a '
                        'positive integer')
  if settings.step_size <= 0:
    raise ConfigError(f'config.attack.step_size={settings.step_size} must be '
                      '> 0')
  if not 0.0 <= settings.diversity_prob <= 1.0:
    raise ConfigError(f'config.attack.diversity_prob='
                      f'{settings.diversity_prob} must be in [0, 1]')
  if not 0.0 < settings.diversity_min_scale <= 1.0:
    raise ConfigError(f'config.attack.diversity_min_scale='
                      f'{settings.diversity_min_scale} must be in (0, 1]')
  if settings.num_examples < 0:
    raise ConfigError(f'config.attack.num_examples={settings.num_examples} '
                      'must be >= 0')
  for name in _names(settings.names):
    if name not in attacks.ATTACKS:
      raise ConfigError(f'config.attack.names: {name!r} is not one of '
                        f'{attacks.ATTACKS}')
  for name in _names(config.defence.names):
    if name not in defences.DEFENCES:
      raise ConfigError(f'config.defence.names: {name!r} is not one of '
                        f'{defences.DEFENCES}')
  if config.defence.attack and config.defence.attack not in _names(
      settings.names):
    raise ConfigError(f'config.defence.attack={config.defence.attack!r} must '
                      f'be one of config.attack.names={settings.names!r}')
  if not 1 <= config.defence.jpeg_quality <= 100:
    raise ConfigError(f'config.defence.jpeg_quality='
                      f'{config.defence.jpeg_quality} must be in [1, 100]')
  if config.defence.median_size < 1 or config.defence.median_size % 2 == 0:
    raise ConfigError(f'config.defence.median_size='
                      f'{config.defence.median_size} must be odd and >= 1')
  if config.defence.gaussian_sigma <= 0:
    raise ConfigError(f'config.defence.gaussian_sigma='
                      f'{config.defence.gaussian_sigma} must be > 0')
  training = config.adversarial_training
  for name in _names(training.methods):
    if name not in defences.ADVERSARIAL_TRAINING:
      raise ConfigError(f'config.adversarial_training.methods: {name!r} is '
                        f'not one of {defences.ADVERSARIAL_TRAINING}')
  if training.model not in config.architectures:
    raise ConfigError(f'config.adversarial_training.model={training.model!r}:'
                      f' choose one of {sorted(config.architectures)}')
  if not (isinstance(training.num_steps, int) and training.num_steps > 0):
    raise ConfigError(f'config.adversarial_training.num_steps='
                      f'{training.num_steps!r} must be a positive integer')
  proxies = parse_models(config.proxies, 'proxies', config.architectures)
  victims = parse_models(config.victims, 'victims', config.architectures)
  if config.mode == 'attack':
    if not proxies or not victims:
      raise ConfigError('config.proxies and config.victims must each name at '
                        'least one model (name:seed)')
    shared = sorted(set(proxies) & set(victims))
    if shared:
      raise ConfigError(f'config.victims shares {shared} with config.proxies:'
                        ' a victim must be unseen by the attacker')
  universal = config.universal
  for name in ('num_steps', 'batch_size'):
    if not (isinstance(universal[name], int) and universal[name] > 0):
      raise ConfigError(f'config.universal.{name}={universal[name]!r} must '
                        'be a positive integer')


def _write(workdir: str, name: str, text: str) -> None:
  if jax.process_index() == 0:
    path = epath.Path(workdir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def classifier_config(config, architecture: str, seed: int):
  """The lib.image_classifier config of one model: `config` with its model and seed."""
  model_config = copy.deepcopy(config)
  model_config.model = copy.deepcopy(config.architectures[architecture])
  model_config.seed = seed
  return model_config


def train_classifier(config, workdir: str, data: image_data.ImageData,
                     loss_fn: Callable | None = None):
  """Trains (or resumes, or reuses) one classifier; returns (Classifier, metrics)."""
  experiment = image_classifier.build(config, data)
  if loss_fn is not None:
    experiment = dataclasses.replace(experiment, loss_fn=loss_fn(
        experiment.model))
  result = trainer.train_and_evaluate(config, workdir, experiment)
  state = result.state
  return (image_classifier.Classifier(experiment.model, state.params,
                                      state.model_state), result.metrics)


class _Runner:
  """Jitted, batch-sharded attacks and predictions over arrays of any length."""

  def __init__(self, config, num_classes: int):
    self._mesh = mesh_lib.make_mesh(config.num_devices)
    self._batch_size = config.attack.batch_size
    if self._batch_size % self._mesh.size:
      raise ConfigError(f'config.attack.batch_size={self._batch_size} must be '
                        f'a multiple of the number of devices '
                        f'({self._mesh.size})')
    self._num_classes = num_classes
    self._replicated = mesh_lib.replicated(self._mesh)
    self._sharded = mesh_lib.batch_sharding(self._mesh)

  def _map(self, fn, arrays: dict[str, np.ndarray], key) -> np.ndarray:
    """fn(batch, key) over padded batches of `arrays`; padding rows dropped."""
    outputs = []
    size = batches_lib.num_examples(arrays)
    for i, batch in enumerate(batches_lib.eval_batches(arrays,
                                                       self._batch_size)):
      del batch['mask']
      out = fn(mesh_lib.shard_batch(batch, self._mesh),
               jax.random.fold_in(key, i))
      outputs.append(np.asarray(jax.device_get(out)))
    return np.concatenate(outputs)[:size]

  def attack(self, attack_fn: Callable, surrogates, images, labels, key, *,
             targeted: bool) -> np.ndarray:
    """Adversarial images from `attack_fn` against the surrogates' logit ensemble."""

    @functools.partial(jax.jit, out_shardings=self._replicated)
    def run(params, batch, key):
      logits_fn = attacks.ensemble([functools.partial(c.logits, p)
                                    for c, p in zip(surrogates, params)])
      targets = batch['target'] if targeted else None
      return attack_fn(logits_fn, batch['image'], batch['label'], key,
                       targets=targets)

    params = [c.params for c in surrogates]
    arrays = {'image': images, 'label': labels,
              'target': target_classes(labels, self._num_classes)}
    return self._map(lambda batch, key: run(params, batch, key), arrays, key)

  def predict_fn(self, classifiers, defence: Callable | None = None):
    """predict(images, key) -> labels of the classifiers' logit ensemble, after `defence`."""

    @functools.partial(jax.jit, out_shardings=self._replicated)
    def run(params, batch, key):
      images = batch['image']
      if defence is not None:
        images = defence(key, images)
      logits = attacks.ensemble([functools.partial(c.logits, p)
                                 for c, p in zip(classifiers, params)])(images)
      return jnp.argmax(logits, -1)

    params = [c.params for c in classifiers]
    return lambda images, key: self._map(
        lambda batch, key: run(params, batch, key), {'image': images}, key)

  def universal(self, surrogates, images, labels, key, settings,
                epsilon: float) -> np.ndarray:

    @jax.jit
    def run(params, images, labels, key):
      logits_fn = attacks.ensemble([functools.partial(c.logits, p)
                                    for c, p in zip(surrogates, params)])
      return attacks.universal_perturbation(
          logits_fn, images, labels, key, epsilon=epsilon,
          step_size=settings.step_size, num_steps=settings.num_steps,
          batch_size=min(settings.batch_size, len(labels)))

    return np.asarray(run([c.params for c in surrogates], images, labels, key))


def target_classes(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """The targeted attacks' target: the next class."""
  return ((labels + 1) % num_classes).astype(np.int32)


def _subset(source: dict, limit: int, seed: int) -> dict:
  size = len(source['label'])
  if not limit or limit >= size:
    return source
  return splits.take(source, np.sort(
      np.random.default_rng(seed).permutation(size)[:limit]))


def _model_name(architecture: str, seed: int) -> str:
  return f'{architecture}_seed{seed}'


def _train_pool(config, workdir, data, specs):
  classifiers, metrics = {}, {}
  for architecture, seed in specs:
    name = _model_name(architecture, seed)
    classifiers[name], result = train_classifier(
        classifier_config(config, architecture, seed),
        os.path.join(workdir, 'models', name), data)
    metrics[f'train/{name}/wall_seconds'] = result['wall_seconds']
  return classifiers, metrics


def _attack_mode(config, workdir, data):
  settings = config.attack
  proxy_specs = parse_models(config.proxies, 'proxies', config.architectures)
  victim_specs = parse_models(config.victims, 'victims', config.architectures)
  proxies, metrics = _train_pool(config, workdir, data, proxy_specs)
  victims, victim_metrics = _train_pool(config, workdir, data, victim_specs)
  metrics.update(victim_metrics)
  runner = _Runner(config, data.num_classes)
  test = _subset(data.test, settings.num_examples, config.data.split_seed)
  images, labels = test['image'], test['label']
  targets = target_classes(labels, data.num_classes)
  key, pgd_key, universal_key = jax.random.split(jax.random.key(config.seed),
                                                 3)
  predict_victims = {name: runner.predict_fn([c]) for name, c in
                     victims.items()}
  sources = {'ensemble': list(proxies.values())}
  if settings.from_single_proxy and len(proxies) > 1:
    sources['proxy'] = list(proxies.values())[:1]

  def accuracy(predictions):
    return float(np.mean(predictions == labels))

  predict_sources = {source: runner.predict_fn(surrogates)
                     for source, surrogates in sources.items()}

  def evaluate(prefix: str, adversarial, source: str) -> dict[str, float]:
    out = {}
    whitebox = predict_sources[source](adversarial, key)
    out[f'{prefix}/whitebox_accuracy'] = accuracy(whitebox)
    victim_predictions = {name: predict(adversarial, key)
                          for name, predict in predict_victims.items()}
    for name, predictions in victim_predictions.items():
      out[f'{prefix}/victim/{name}_accuracy'] = accuracy(predictions)
    out[f'{prefix}/blackbox_accuracy'] = float(np.mean(
        [accuracy(p) for p in victim_predictions.values()]))
    if settings.targeted:
      out[f'{prefix}/whitebox_target_rate'] = float(np.mean(
          whitebox == targets))
      out[f'{prefix}/blackbox_target_rate'] = float(np.mean(
          [np.mean(p == targets) for p in victim_predictions.values()]))
    out[f'{prefix}/linf'] = float(np.abs(adversarial - images).max())
    return out

  metrics['clean/surrogate_accuracy'] = accuracy(
      predict_sources['ensemble'](images, key))
  for name, predict in predict_victims.items():
    metrics[f'clean/victim/{name}_accuracy'] = accuracy(predict(images, key))
  metrics['clean/victim_mean_accuracy'] = float(np.mean(
      [metrics[f'clean/victim/{n}_accuracy'] for n in victims]))

  adversarial_sets = {}
  for attack_name in _names(settings.names):
    attack_fn = attacks.make_attack(attack_name, settings)
    for source, surrogates in sources.items():
      adversarial = runner.attack(attack_fn, surrogates, images, labels,
                                  jax.random.fold_in(key, len(
                                      adversarial_sets)),
                                  targeted=settings.targeted)
      adversarial_sets[attack_name, source] = adversarial
      metrics.update(evaluate(f'{attack_name}/{source}', adversarial, source))

  # Robust accuracy of the proxies under a stronger white-box PGD.
  pgd = functools.partial(attacks.pgd, epsilon=settings.epsilon,
                          step_size=settings.step_size,
                          num_steps=settings.pgd_eval_steps)
  adversarial = runner.attack(pgd, sources['ensemble'], images, labels,
                              pgd_key, targeted=False)
  metrics['whitebox/pgd_accuracy'] = accuracy(
      predict_sources['ensemble'](adversarial, key))

  universal_delta = None
  if config.universal.enabled:
    train = _subset(data.train, config.universal.num_examples,
                    config.data.split_seed)
    universal_delta = runner.universal(
        sources['ensemble'], train['image'], train['label'],
        universal_key, config.universal, settings.epsilon)
    perturbed = np.clip(images + universal_delta, 0.0, 1.0)
    universal_metrics = evaluate('universal/ensemble', perturbed, 'ensemble')
    universal_metrics.pop('universal/ensemble/whitebox_target_rate', None)
    universal_metrics.pop('universal/ensemble/blackbox_target_rate', None)
    metrics.update(universal_metrics)

  defence_names = _names(config.defence.names)
  if defence_names and adversarial_sets:
    defended_attack = config.defence.attack or _names(settings.names)[-1]
    attacked = adversarial_sets[defended_attack, 'ensemble']
    for defence_name in defence_names:
      defence = defences.make_defence(defence_name, config.defence)
      clean, under_attack = [], []
      for c in victims.values():
        predict = runner.predict_fn([c], defence)
        clean.append(accuracy(predict(images, key)))
        under_attack.append(accuracy(predict(attacked, key)))
      metrics[f'defence/{defence_name}/clean_accuracy'] = float(np.mean(clean))
      metrics[f'defence/{defence_name}/blackbox_accuracy'] = float(
          np.mean(under_attack))
    metrics['defence/none/clean_accuracy'] = metrics[
        'clean/victim_mean_accuracy']
    metrics['defence/none/blackbox_accuracy'] = metrics[
        f'{defended_attack}/ensemble/blackbox_accuracy']

  _write(workdir, 'results.md', attack_tables(config, metrics, list(sources),
                                              list(victims)))
  if config.plots and jax.process_index() == 0 and adversarial_sets:
    plot_examples(config, images, labels, adversarial_sets, universal_delta,
                  predict_victims, data.class_names, key,
                  os.path.join(workdir, 'adversarial_examples.png'))
  return trainer.TrainResult({'proxies': proxies, 'victims': victims},
                             metrics)


def attack_tables(config, metrics, sources, victim_names) -> str:
  """results.md: clean, attacks, universal perturbation and defences."""
  settings = config.attack
  victim_columns = ' | '.join(victim_names)
  lines = [
      f'Data: {config.data.name}; epsilon = {settings.epsilon:.4g} '
      f'(L-inf, pixels in [0, 1]); {settings.num_steps} steps of '
      f'{settings.step_size:.4g}; {"targeted (label + 1)" if settings.targeted else "untargeted"}.',
      f'Proxies (the attacker\'s surrogates): {config.proxies}; '
      f'victims (unseen): {config.victims}.', '',
      '| attack | surrogate | white-box accuracy | black-box accuracy '
      f'(victims\' mean) | {victim_columns} | HW10 level |',
      '|---|---|---|---|' + '---|' * len(victim_names) + '---|']

  def row(label, source, prefix, level=''):
    victims = ' | '.join(f"{metrics[f'{prefix}/victim/{n}_accuracy']:.3f}"
                         for n in victim_names)
    return (f"| {label} | {source} | {metrics[f'{prefix}/whitebox_accuracy']:.3f}"
            f" | {metrics[f'{prefix}/blackbox_accuracy']:.3f} | {victims} | "
            f'{level} |')

  clean_victims = ' | '.join(f"{metrics[f'clean/victim/{n}_accuracy']:.3f}"
                             for n in victim_names)
  lines.append(f"| none (clean) | ensemble | "
               f"{metrics['clean/surrogate_accuracy']:.3f} | "
               f"{metrics['clean/victim_mean_accuracy']:.3f} | "
               f'{clean_victims} | |')
  for name in _names(settings.names):
    for source in sources:
      level = HOMEWORK_LEVELS.get(name, '')
      lines.append(row(name, source, f'{name}/{source}',
                       f'{level:.2f}' if level else ''))
  if 'universal/ensemble/whitebox_accuracy' in metrics:
    lines.append(row('universal', 'ensemble', 'universal/ensemble'))
  lines += ['', f"White-box PGD-{settings.pgd_eval_steps} (random start) "
            f"accuracy of the proxies' ensemble: "
            f"{metrics['whitebox/pgd_accuracy']:.3f}."]
  defence_names = _names(config.defence.names)
  if defence_names and 'defence/none/clean_accuracy' in metrics:
    attack = config.defence.attack or _names(settings.names)[-1]
    lines += ['', f'Passive defences in front of the victims, against '
              f'{attack} from the ensemble (the attacker does not know the '
              'defence):', '',
              '| defence | clean accuracy | black-box accuracy under attack |',
              '|---|---|---|']
    for name in ['none'] + defence_names:
      lines.append(f"| {name} | {metrics[f'defence/{name}/clean_accuracy']:.3f}"
                   f" | {metrics[f'defence/{name}/blackbox_accuracy']:.3f} |")
  return '\n'.join(lines) + '\n'


def plot_examples(config, images, labels, adversarial_sets, universal_delta,
                  predict_victims, class_names, key, path):
  """Clean images, each attack's images (from the ensemble) and the perturbations."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  count = min(config.attack.num_plotted, len(labels))
  epsilon = max(config.attack.epsilon, 1e-12)
  rows = [('clean', images[:count])]
  for (name, source), adversarial in adversarial_sets.items():
    if source == 'ensemble':
      rows.append((name, adversarial[:count]))
  last = rows[-1]
  rows.append((f'{last[0]} perturbation (scaled)',
               0.5 + (last[1] - images[:count]) / (2 * epsilon)))
  if universal_delta is not None:
    rows.append(('universal', np.clip(images[:count] + universal_delta, 0, 1)))
  predict = next(iter(predict_victims.values()))
  victim = next(iter(predict_victims))
  fig, axes = plt.subplots(len(rows), count, squeeze=False,
                           figsize=(1.4 * count, 1.6 * len(rows)), dpi=100)
  for r, (name, row_images) in enumerate(rows):
    predictions = None
    if 'perturbation' not in name:
      predictions = predict(np.asarray(row_images, np.float32), key)
    for c in range(count):
      ax = axes[r, c]
      image = np.clip(row_images[c], 0, 1)
      ax.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                cmap='gray' if image.shape[-1] == 1 else None, vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      if predictions is not None:
        wrong = predictions[c] != labels[c]
        ax.set_title(class_names[predictions[c]], fontsize=7,
                     color='red' if wrong else 'black')
      if c == 0:
        ax.set_ylabel(name, fontsize=7)
  fig.suptitle(f'{config.data.name}, epsilon {config.attack.epsilon:.3g}: '
               f'predictions of the unseen victim {victim} (red = wrong)',
               fontsize=8)
  fig.tight_layout()
  plots.save_figure(fig, path)


def _adversarial_training_mode(config, workdir, data):
  training = config.adversarial_training
  settings = config.attack
  runner = _Runner(config, data.num_classes)
  test = _subset(data.test, settings.num_examples, config.data.split_seed)
  images, labels = test['image'], test['label']
  key = jax.random.key(config.seed)
  model_config = classifier_config(config, training.model, config.seed)
  augment = augment_lib.make_augment(config.augment)
  runs = {'standard': None}
  for method in _names(training.methods):
    attack = defences.training_attack(method, epsilon=training.epsilon,
                                      step_size=training.step_size,
                                      num_steps=training.num_steps)
    runs[f'{method}_at'] = functools.partial(
        defences.adversarial_loss_fn, attack=attack, augment=augment,
        label_smoothing=config.label_smoothing)
  evaluation = {
      'fgsm': functools.partial(attacks.fgsm, epsilon=settings.epsilon),
      'pgd': functools.partial(attacks.pgd, epsilon=settings.epsilon,
                               step_size=settings.step_size,
                               num_steps=settings.pgd_eval_steps)}
  metrics, models = {}, {}
  for name, loss_fn in runs.items():
    classifier, _ = train_classifier(
        model_config, os.path.join(workdir, name), data, loss_fn)
    models[name] = classifier
    predict = runner.predict_fn([classifier])
    metrics[f'{name}/clean_accuracy'] = float(np.mean(
        predict(images, key) == labels))
    for attack_name, attack_fn in evaluation.items():
      adversarial = runner.attack(attack_fn, [classifier], images, labels,
                                  key, targeted=False)
      metrics[f'{name}/{attack_name}_accuracy'] = float(np.mean(
          predict(adversarial, key) == labels))
  lines = [f'Data: {config.data.name}; model: {training.model}; '
           f'{config.num_steps} steps of batch {config.batch_size}; '
           f'training epsilon {training.epsilon:.4g} (PGD-AT: '
           f'{training.num_steps} steps of {training.step_size:.4g}); '
           f'evaluated at epsilon {settings.epsilon:.4g} on {len(labels)} '
           'test images.', '',
           '| training | clean accuracy | FGSM accuracy | '
           f'PGD-{settings.pgd_eval_steps} accuracy |',
           '|---|---|---|---|']
  for name in runs:
    lines.append(f"| {name} | {metrics[f'{name}/clean_accuracy']:.3f} | "
                 f"{metrics[f'{name}/fgsm_accuracy']:.3f} | "
                 f"{metrics[f'{name}/pgd_accuracy']:.3f} |")
  _write(workdir, 'results.md', '\n'.join(lines) + '\n')
  return trainer.TrainResult(models, metrics)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  validate(config)
  data = image_data.load_images(config.data)
  if config.mode == 'attack':
    result = _attack_mode(config, workdir, data)
  else:
    result = _adversarial_training_mode(config, workdir, data)
  _write(workdir, 'summary.json', json.dumps(result.metrics, indent=1))
  return result
