"""The one-class protocol: each class in turn is normal, the rest of the test split anomalous.

For every class in config.normal_classes an auto-encoder is trained on that
class of the training split only (its own run of the shared loop in
WORKDIR/class_<c>, so a re-run resumes where it stopped), then scores the
whole test split: AUROC and AUPR over the split. Beside it, on the same
split: the untrained model's score, the distance to the mean normal image,
and a one-class SVM and an isolation forest on the model's codes and on the
pixels. Writes WORKDIR/one_class.md and, with config.plots, the figures.
"""

import os

import jax
import ml_collections
import numpy as np

from lib import errors
from lib import loop
from lib import plots
from lib import predict
from lib import report
from lib.data import images
from lib.data import splits
from projects.autoencoder import data as data_lib
from projects.autoencoder import figures
from projects.autoencoder import metrics
from projects.autoencoder import models
from projects.autoencoder import objectives
from projects.autoencoder import training


class Scorer:
  """Scores and codes of a whole split, compiled once for every class."""

  def __init__(self, config, model, mesh):
    self._predictor = predict.Predictor(objectives.score_fn(config, model),
                                        mesh)
    self._batch, self._key = config.eval_batch_size, jax.random.key(config.seed)

  def __call__(self, params, source: dict) -> dict[str, np.ndarray]:
    return self._predictor(params, splits.contiguous_share(source),
                           self._batch, self._key, all_processes=True)


def _methods(config) -> list[str]:
  return ['model', 'untrained', 'mean_image'] + [
      f'{method}_{features}' for features in config.baselines.features
      for method in ('ocsvm', 'iforest')]


def class_scores(config, runs: training.Runs, scorer: Scorer, params,
                 normal_train: dict, test: dict, seed: int) -> dict:
  """Every method's anomaly scores of the test split, one class normal."""
  out = scorer(params, test)
  scores = {'model': out['score'],
            'untrained': scorer(runs.init(seed).params, test)['score'],
            'mean_image': metrics.mean_image_distance(normal_train['image'],
                                                      test['image'])}
  features = {'latent': (scorer(params, normal_train)['features'],
                         out['features']),
              'pixels': (normal_train['image'], test['image'])}
  for name in config.baselines.features:
    fitted = metrics.classical_scores(*features[name], seed,
                                      config.baselines.max_train_examples)
    scores.update({f'{k}_{name}': v for k, v in fitted.items()})
  return {'scores': scores, 'features': out['features']}


def _figures(config, workdir, model, params, test, features, label):
  rebuild = jax.jit(lambda p, x: jax.nn.sigmoid(
      objectives.reconstruct(model, p, x)[0]))
  shown = test['image'][:16]
  figures.reconstructions(shown, np.asarray(rebuild(params, shown)),
                          os.path.join(workdir, 'reconstructions.png'),
                          f'{config.model.kind}, normal class {label}: '
                          'test images (top), reconstructions (bottom)')
  figures.latent_plane(features, test['label'],
                       os.path.join(workdir, 'latent.png'),
                       f'{config.model.kind} codes of the test split '
                       f'(trained on class {label})')
  if config.model.kind == 'vae':
    z = jax.random.normal(jax.random.key(config.seed),
                          (32, config.model.latent_dim))
    samples = jax.nn.sigmoid(model.apply({'params': params}, z,
                                         method='decode'))
    plots.image_grid(np.asarray(samples),
                     os.path.join(workdir, 'samples.png'),
                     title=f'VAE samples, normal class {label}')


def table(rows: list[dict], config) -> str:
  columns = {'class': 'normal class', 'model/auroc': 'AUROC',
             'model/aupr': 'AUPR'}
  columns.update({f'{m}/auroc': f'{m} AUROC' for m in _methods(config)[1:]})
  return report.markdown_table(rows, columns, digits=3)


def run(config: ml_collections.ConfigDict, workdir: str,
        data: images.ImageData, mesh) -> loop.TrainResult:
  shape = data.train['image'].shape[1:]
  model = models.make_model(config, shape)
  runs = training.Runs(config, model, data.train['image'][:1], mesh)
  scorer = Scorer(config, model, mesh)
  rows, curves, state = [], {}, None
  for label in config.normal_classes:
    normal_train = data_lib.of_class(data.train, label)
    if len(normal_train['label']) < config.batch_size:
      raise errors.DataError(
          f'class {label} has {len(normal_train["label"])} training images, '
          f'fewer than config.batch_size={config.batch_size}; check '
          'config.normal_classes')
    seed = config.seed + label
    task = runs.task(normal_train, data_lib.of_class(data.val, label), seed,
                     f'{config.model.kind}, normal class {label}')
    state = runs.run(task, os.path.join(workdir, f'class_{label}')).state
    anomalous = data.test['label'] != label
    scored = class_scores(config, runs, scorer, state.params, normal_train,
                          data.test, seed)
    row = {'class': data.class_names[label]}
    for method, scores in scored['scores'].items():
      row.update({f'{method}/{k}': v for k, v in
                  metrics.detection(scores, anomalous).items()})
    rows.append(row)
    curves[f'class {data.class_names[label]}'] = (scored['scores']['model'],
                                                  anomalous)
    if config.plots and loop.is_chief() and label == config.normal_classes[0]:
      _figures(config, workdir, model, state.params, data.test,
               scored['features'], data.class_names[label])
  mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]
          if k != 'class'}
  summary = {'one_class/mean_auroc': mean['model/auroc'],
             'one_class/mean_aupr': mean['model/aupr'],
             **{f'one_class/class_{r["class"]}/auroc': r['model/auroc']
                for r in rows},
             **{f'baseline/{m}_mean_auroc': mean[f'{m}/auroc']
                for m in _methods(config)[1:]},
             'score': objectives.score_name(config)}
  loop.write_text(workdir, 'one_class.md',
                  table([*rows, {'class': 'mean', **mean}], config))
  if config.plots and loop.is_chief():
    figures.roc_curves(curves, os.path.join(workdir, 'roc.png'),
                       f'{config.model.kind}, score: '
                       f'{objectives.score_name(config)}')
  loop.write_json(workdir, 'summary.json', summary)
  return loop.TrainResult(state, summary)
