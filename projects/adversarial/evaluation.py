"""The attack/predict runner, and the two evaluations built on it.

`Runner` turns an attack or a classifier ensemble (behind an optional passive
defence) into a `lib.predict.Predictor`: compiled once, the batch sharded over
the mesh, every process attacking and predicting its own share of the
examples. Attacks return this process's adversarial images; predictions come
back for every process's examples, so every process computes the same
accuracies.

  transfer_metrics    attack mode: white-box, black-box (the unseen victims),
                      universal perturbation and passive defences
  robustness_metrics  adversarial-training and robustness modes: clean, FGSM
                      and PGD accuracy of one model against itself, and maybe
                      the one-pixel attack and the randomization defence
"""

import functools
from typing import Callable, NamedTuple

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import image_classifier
from lib import mesh as mesh_lib
from lib import predict
from lib.data import splits
from lib.errors import ConfigError
from projects.adversarial import attacks
from projects.adversarial import config as config_lib
from projects.adversarial import defences

Source = dict[str, np.ndarray]  # {'image', 'label'}
Classifiers = list[image_classifier.Classifier]


def ensemble_logits(classifiers: Classifiers, params) -> attacks.LogitsFn:
  """The classifiers' logit ensemble under `params` (one per classifier)."""
  return attacks.ensemble([functools.partial(c.logits, p)
                           for c, p in zip(classifiers, params)])


def target_classes(labels, num_classes: int):
  """The targeted attacks' target: the next class."""
  return (labels + 1) % num_classes


def _global_max(values: np.ndarray) -> float:
  """The largest of `values` over every process's examples."""
  value = np.float32(np.max(values, initial=0.0))
  if jax.process_count() > 1:
    value = multihost_utils.process_allgather(value).max()
  return float(value)


class Runner:
  """Attacks and predictions of classifier ensembles in batches of config.attack.batch_size."""

  def __init__(self, config: ml_collections.ConfigDict, num_classes: int):
    self._mesh = mesh_lib.make_mesh(config.num_devices)
    self._batch_size = config.attack.batch_size
    if self._batch_size % self._mesh.size:
      raise ConfigError(f'config.attack.batch_size={self._batch_size} must be '
                        'a multiple of the number of devices '
                        f'({self._mesh.size})')
    self.num_classes = num_classes

  def attacker(self, attack_fn: Callable, surrogates: Classifiers, *,
               targeted: bool = False) -> Callable[[Source, jax.Array],
                                                   np.ndarray]:
    """attack(source, key) -> `attack_fn`'s images against the surrogates' ensemble."""

    def run(params, batch, key):
      labels = batch['label']
      targets = target_classes(labels, self.num_classes) if targeted else None
      return attack_fn(ensemble_logits(surrogates, params), batch['image'],
                       labels, key, targets=targets)

    predictor = predict.Predictor(run, self._mesh)
    params = [c.params for c in surrogates]
    return lambda source, key: predictor(params, source, self._batch_size, key)

  def predictor(self, classifiers: Classifiers,
                defence: Callable | None = None) -> Callable[[Source, jax.Array],
                                                             dict]:
    """predict(source, key) -> {'prediction', 'confidence', 'label'} of every process's examples."""

    def run(params, batch, key):
      images = batch['image']
      if defence is not None:
        images = defence(key, images)
      logits = ensemble_logits(classifiers, params)(images)
      return {'prediction': jnp.argmax(logits, -1),
              'confidence': jax.nn.softmax(logits).max(-1),
              'label': batch['label']}

    predictor = predict.Predictor(run, self._mesh)
    params = [c.params for c in classifiers]
    return lambda source, key: predictor(params, source, self._batch_size, key,
                                         all_processes=True)


def accuracy(outputs: dict) -> float:
  return float(np.mean(outputs['prediction'] == outputs['label']))


def error_confidence(outputs: dict) -> float:
  """The mean confidence of the wrong predictions (nan when none is wrong)."""
  wrong = outputs['prediction'] != outputs['label']
  return float(outputs['confidence'][wrong].mean()) if wrong.any() else np.nan


class Examples(NamedTuple):
  """What adversarial_examples.png shows: this process's images per row."""
  labels: np.ndarray
  rows: dict[str, np.ndarray]  # name -> images
  predictions: dict[str, np.ndarray]  # name -> the first victim's (all processes)


def surrogate_sets(config: ml_collections.ConfigDict,
                   proxies: dict) -> dict[str, Classifiers]:
  """The attacker's surrogates: all proxies' ensemble, and maybe the first alone."""
  sources = {'ensemble': list(proxies.values())}
  if config.attack.from_single_proxy and len(proxies) > 1:
    sources['proxy'] = list(proxies.values())[:1]
  return sources


def transfer_metrics(config: ml_collections.ConfigDict, runner: Runner,
                     proxies: dict, victims: dict, attacked: Source,
                     universal_train: Source) -> tuple[dict, Examples]:
  """Every attack of config.attack.names from the proxies, scored on the victims.

  `attacked` (the test images to attack) and `universal_train` (those the
  universal perturbation is fitted on) are whole in every process; each
  process attacks its share of `attacked` and fits the same perturbation.
  """
  settings = config.attack
  test = splits.shard_for_process(attacked)
  images = test['image']
  key, pgd_key, universal_key = jax.random.split(jax.random.key(config.seed),
                                                 3)
  sources = surrogate_sets(config, proxies)
  predict_sources = {name: runner.predictor(surrogates)
                     for name, surrogates in sources.items()}
  predict_victims = {name: runner.predictor([c]) for name, c in victims.items()}
  first_victim = {}  # row name -> the first victim's predictions

  def scores(prefix: str, adversarial: np.ndarray, source: str, *,
             row: str = '', targeted: bool = False) -> dict[str, float]:
    perturbed = {'image': adversarial, 'label': test['label']}
    whitebox = predict_sources[source](perturbed, key)
    victim_outputs = {name: predict(perturbed, key)
                      for name, predict in predict_victims.items()}
    if row:
      first_victim[row] = next(iter(victim_outputs.values()))['prediction']
    out = {f'{prefix}/whitebox_accuracy': accuracy(whitebox)}
    for name, outputs in victim_outputs.items():
      out[f'{prefix}/victim/{name}_accuracy'] = accuracy(outputs)
    out[f'{prefix}/blackbox_accuracy'] = float(np.mean(
        [accuracy(o) for o in victim_outputs.values()]))
    if targeted:
      hits = lambda o: np.mean(o['prediction'] == target_classes(
          o['label'], runner.num_classes))
      out[f'{prefix}/whitebox_target_rate'] = float(hits(whitebox))
      out[f'{prefix}/blackbox_target_rate'] = float(np.mean(
          [hits(o) for o in victim_outputs.values()]))
    out[f'{prefix}/linf'] = _global_max(np.abs(adversarial - images))
    return out

  metrics = {'clean/surrogate_accuracy': accuracy(
      predict_sources['ensemble'](test, key))}
  for name, predict in predict_victims.items():
    outputs = predict(test, key)
    first_victim.setdefault('clean', outputs['prediction'])
    metrics[f'clean/victim/{name}_accuracy'] = accuracy(outputs)
  metrics['clean/victim_mean_accuracy'] = float(np.mean(
      [metrics[f'clean/victim/{n}_accuracy'] for n in victims]))

  rows = {'clean': images}
  adversarial_sets = {}
  for attack_name in config_lib.names(settings.names):
    attack_fn = attacks.make_attack(attack_name, settings)
    for source, surrogates in sources.items():
      attack = runner.attacker(attack_fn, surrogates,
                               targeted=settings.targeted)
      adversarial = attack(test, jax.random.fold_in(key,
                                                    len(adversarial_sets)))
      adversarial_sets[attack_name, source] = adversarial
      row = attack_name if source == 'ensemble' else ''
      if row:
        rows[row] = adversarial
      metrics.update(scores(f'{attack_name}/{source}', adversarial, source,
                            row=row, targeted=settings.targeted))

  # Robust accuracy of the proxies under a stronger white-box PGD.
  pgd = runner.attacker(functools.partial(
      attacks.pgd, epsilon=settings.epsilon, step_size=settings.step_size,
      num_steps=settings.pgd_eval_steps), sources['ensemble'])
  metrics['whitebox/pgd_accuracy'] = accuracy(predict_sources['ensemble'](
      {'image': pgd(test, pgd_key), 'label': test['label']}, key))

  if config.universal.enabled:
    delta = universal_perturbation(config, sources['ensemble'],
                                   universal_train, universal_key)
    perturbed = np.clip(images + delta, 0.0, 1.0)
    rows['universal'] = perturbed
    metrics.update(scores('universal/ensemble', perturbed, 'ensemble',
                          row='universal'))

  if config_lib.names(config.defence.names) and adversarial_sets:
    defended_attack = defended_attack_name(config)
    metrics.update(defence_metrics(
        config, runner, victims, test,
        adversarial_sets[defended_attack, 'ensemble'], key))
    metrics['defence/none/clean_accuracy'] = metrics[
        'clean/victim_mean_accuracy']
    metrics['defence/none/blackbox_accuracy'] = metrics[
        f'{defended_attack}/ensemble/blackbox_accuracy']
  return metrics, Examples(test['label'], rows, first_victim)


def defence_metrics(config: ml_collections.ConfigDict, runner: Runner,
                    victims: dict, test: Source, adversarial: np.ndarray,
                    key: jax.Array) -> dict[str, float]:
  """The victims' mean accuracy behind each passive defence, clean and attacked."""
  perturbed = {'image': adversarial, 'label': test['label']}
  metrics = {}
  for name in config_lib.names(config.defence.names):
    defence = defences.make_defence(name, config.defence)
    clean, under_attack = [], []
    for classifier in victims.values():
      predict = runner.predictor([classifier], defence)
      clean.append(accuracy(predict(test, key)))
      under_attack.append(accuracy(predict(perturbed, key)))
    metrics[f'defence/{name}/clean_accuracy'] = float(np.mean(clean))
    metrics[f'defence/{name}/blackbox_accuracy'] = float(np.mean(under_attack))
  return metrics


def defended_attack_name(config: ml_collections.ConfigDict) -> str:
  """Whose adversarial images the passive defences face."""
  return config.defence.attack or config_lib.names(config.attack.names)[-1]


def universal_perturbation(config: ml_collections.ConfigDict,
                           surrogates: Classifiers, train: Source,
                           key: jax.Array) -> np.ndarray:
  """One perturbation for all images, fitted on `train` against the surrogates.

  Its random batches are drawn from the whole of `train`, so every process
  fits the same perturbation on its own devices.
  """
  settings = config.universal

  @jax.jit
  def fit(params, images, labels, key):
    return attacks.universal_perturbation(
        ensemble_logits(surrogates, params), images, labels, key,
        epsilon=config.attack.epsilon, step_size=settings.step_size,
        num_steps=settings.num_steps,
        batch_size=min(settings.batch_size, len(labels)))

  return np.asarray(fit([c.params for c in surrogates], train['image'],
                        train['label'], key))


def robustness_metrics(config: ml_collections.ConfigDict, runner: Runner,
                       classifier: image_classifier.Classifier,
                       attacked: Source) -> dict[str, float]:
  """Clean, FGSM and PGD (config.attack's epsilon) accuracy of `classifier`.

  PGD counts an image robust only when `attack.pgd_restarts` random starts all
  fail on it. With config.robustness.one_pixel, also the one-pixel attack's accuracy and
  success rate (of the images it classified right) on the first
  config.one_pixel.num_examples; with config.robustness.randomization, the
  accuracy behind random resize-and-pad: clean, under the PGD images made
  against the bare model (an attacker unaware of the defence), and under
  EOT-PGD through it. `attacked` is whole in every process; each attacks its
  share.
  """
  settings = config.attack
  test = splits.shard_for_process(attacked)
  key = jax.random.key(config.seed)
  predict = runner.predictor([classifier])
  steps = dict(epsilon=settings.epsilon, step_size=settings.step_size,
               num_steps=settings.pgd_eval_steps)
  evaluation = {
      'fgsm': functools.partial(attacks.fgsm, epsilon=settings.epsilon),
      'pgd': functools.partial(attacks.pgd, **steps)}
  metrics = {'clean_accuracy': accuracy(predict(test, key))}
  attackers = {name: runner.attacker(attack_fn, [classifier])
               for name, attack_fn in evaluation.items()}
  adversarial, outputs = {}, {}
  for name, attack in attackers.items():
    adversarial[name] = {'image': attack(test, key), 'label': test['label']}
    outputs[name] = predict(adversarial[name], key)
    metrics[f'{name}_accuracy'] = accuracy(outputs[name])
    metrics[f'{name}_error_confidence'] = error_confidence(outputs[name])
  # An image resists PGD only if it resists every restart.
  robust = outputs['pgd']['prediction'] == outputs['pgd']['label']
  for restart in range(1, settings.pgd_restarts):
    restarted = predict({'image': attackers['pgd'](
        test, jax.random.fold_in(key, restart)), 'label': test['label']}, key)
    robust &= restarted['prediction'] == restarted['label']
  metrics['pgd_accuracy'] = float(np.mean(robust))
  if config.robustness.one_pixel:
    metrics.update(_one_pixel_metrics(config, runner, classifier, attacked,
                                      key))
  if config.robustness.randomization:
    defence = defences.make_defence('resize_pad', config.defence)
    defended = runner.predictor([classifier], defence)
    eot = runner.attacker(functools.partial(
        attacks.eot_pgd, eot_samples=settings.eot_samples,
        min_scale=config.defence.resize_min_scale, **steps), [classifier])
    eot_images = {'image': eot(test, key), 'label': test['label']}
    metrics.update({
        'resize_pad/clean_accuracy': accuracy(defended(test, key)),
        'resize_pad/pgd_accuracy': accuracy(defended(adversarial['pgd'], key)),
        'resize_pad/eot_accuracy': accuracy(defended(eot_images, key))})
  return metrics


def _one_pixel_metrics(config, runner, classifier, attacked, key):
  subset = {k: v[:config.one_pixel.num_examples or None]
            for k, v in attacked.items()}
  test = splits.shard_for_process(subset)
  settings = config.one_pixel
  attack = runner.attacker(functools.partial(
      attacks.one_pixel, population=settings.population,
      generations=settings.generations, scale=settings.scale), [classifier])
  predict = runner.predictor([classifier])
  clean = predict(test, key)
  outputs = predict({'image': attack(test, key), 'label': test['label']}, key)
  right = clean['prediction'] == clean['label']
  return {'one_pixel/clean_accuracy': accuracy(clean),
          'one_pixel/accuracy': accuracy(outputs),
          'one_pixel/success_rate': float(np.mean(
              outputs['prediction'][right] != outputs['label'][right])),
          'one_pixel/error_confidence': error_confidence(outputs)}
