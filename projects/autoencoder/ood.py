"""Out-of-distribution detection by a classifier's confidence (Hendrycks & Gimpel).

Trains an image classifier on the in-distribution set (lib.trainer's
Experiment on the shared loop) and scores every test image by its maximum
softmax probability: a low one flags an outsider. For each set of
config.ood.sets the report gives AUROC and AUPR (out: outsiders positive;
in: test images positive) over the whole in-distribution test split and the
outsiders together, WORKDIR/ood.md and WORKDIR/ood_roc.png.
"""

import os

import jax
import ml_collections
import numpy as np
from sklearn import metrics as sk_metrics

from lib import classifier
from lib import loop
from lib import models as lib_models
from lib import predict
from lib import report as report_lib
from lib import trainer
from lib.data import images
from lib.data import splits
from projects.autoencoder import data as data_lib
from projects.autoencoder import figures
from projects.autoencoder import metrics


def run(config: ml_collections.ConfigDict, workdir: str,
        data: images.ImageData, mesh) -> loop.TrainResult:
  model = lib_models.make_image_classifier(config.classifier, data.num_classes)
  loss_fn, eval_fn = classifier.classifier_fns(model, input_key='image')
  experiment = trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=eval_fn,
      train_data=splits.shard_for_process(data.train),
      eval_data={'val': splits.shard_for_process(data.val)},
      sample_input=data.train['image'][:1])
  outsiders = data_lib.ood_sets(config, data.test['image'].shape[1:])

  def confidence(variables, batch, key):
    del key
    logits, _ = lib_models.apply_model(model, *variables, batch['image'],
                                       train=False)
    probs = jax.nn.softmax(logits)
    return {'msp': probs.max(-1), 'prediction': probs.argmax(-1)}

  predictor = predict.Predictor(confidence, mesh)

  def report(state, summary):
    del summary
    def predict_on(x):
      return predictor((state.params, state.model_state),
                       splits.contiguous_share({'image': x}),
                       config.eval_batch_size, all_processes=True)
    inside = predict_on(data.test['image'])
    entries = {'test/accuracy': float(np.mean(
        inside['prediction'] == data.test['label']))}
    rows, curves = [], {}
    for name, x in outsiders.items():
      msp = np.concatenate([inside['msp'], predict_on(x)['msp']])
      outsider = np.repeat([False, True], [len(inside['msp']), len(x)])
      found = metrics.detection(-msp, outsider)
      found['aupr_in'] = float(sk_metrics.average_precision_score(~outsider,
                                                                  msp))
      entries.update({f'ood/{name}/{k}': v for k, v in found.items()})
      rows.append({'set': name, **found})
      curves[name] = (-msp, outsider)
    entries['ood/mean_auroc'] = float(np.mean([r['auroc'] for r in rows]))
    loop.write_text(workdir, 'ood.md', report_lib.markdown_table(
        rows, {'set': 'out-of-distribution set', 'auroc': 'AUROC',
               'aupr': 'AUPR out', 'aupr_in': 'AUPR in'}, digits=4))
    if config.plots and loop.is_chief():
      figures.roc_curves(curves, os.path.join(workdir, 'ood_roc.png'),
                         'maximum softmax probability, MNIST in distribution')
    return entries

  task = trainer.make_task(config, experiment, mesh)
  task.report = report
  return loop.run(task, workdir, loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})
