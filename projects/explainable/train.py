"""HW9: explain a trained image classifier, locally and globally.

`train_and_evaluate(config, workdir)` trains the classifier that `config`
describes (lib.image_classifier, through lib.trainer) in WORKDIR/classifier,
a stage of its own that a rerun restores instead of retraining. It then runs
each of `config.methods` (runner.py) on `config.num_metric_images` test images
and writes to WORKDIR (reports.py):
  attributions.png         rows = test images, columns = the attribution
                           methods (saliency, smoothgrad, integrated_gradients,
                           grad_cam, occlusion, lime, guided_backprop, lrp,
                           deeplift) as overlays
  deletion_curves.png, insertion_curves.png   p(target) as the top-ranked
                           pixels are deleted and inserted, per method and for
                           a random ranking
  filters.png, activations.png     first-layer kernels; `filters.layer`'s
                           output on the first image
  activation_maximization.png      inputs that maximize each class logit and
                           some channels of the last feature map
  sanity_check.png, sanity_maps.png    cascading model randomization
  surrogate.png            a decision tree's fidelity to the network and
                           accuracy against its depth, and the deepest
                           tree's pixel importances
  results.md               a table of the metrics per method
and the metrics to WORKDIR/summary.json: the classifier's accuracy,
deletion/insertion AUC per method (and for a random ranking), IG's
completeness gap, the logit gain of activation maximization, and the rank
correlation of each method's maps with the trained model's as layers are
re-initialized, and each surrogate tree's fidelity, accuracy and leaves.
"""

import os

import jax
import ml_collections
import numpy as np

from lib import image_classifier
from lib import loop
from lib import mesh as mesh_lib
from lib import trainer
from lib.data import images as image_data
from projects.explainable import config as config_file
from projects.explainable import explainer as explainer_lib
from projects.explainable import reports
from projects.explainable import runner


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  config_file.validate(config)
  data = image_data.load_images(config.data)
  experiment = image_classifier.build(config, data)
  trained = trainer.train_and_evaluate(
      config, os.path.join(workdir, 'classifier'), experiment)
  state, model = trained.state, experiment.model
  params = state.params
  variables = {'params': params, **state.model_state}
  explainer = explainer_lib.Explainer(model, state.model_state, config)
  key = jax.random.key(config.seed)
  run = runner.Runner(explainer, mesh_lib.make_mesh(config.num_devices), key)
  methods = tuple(config.methods)
  chief = loop.is_chief()
  metrics = {f'classifier/{name}': trained.metrics[name]
             for name in ('val/accuracy', 'test/accuracy')}
  metrics.update(experiment.baselines)

  # The figure's images lead the images the metrics average over, so each
  # method runs once, on one batch shape.
  images = runner.explained_images(data.test, config)
  images['predicted'] = run('predicted', params, images)
  images['target'] = images[config.target].astype(np.int32)
  names = data.class_names
  row_labels = [f'{names[label]} (pred {names[predicted]})'
                for label, predicted in zip(images['label'],
                                            images['predicted'])]

  attributed = runner.attribute(
      run, params, images,
      tuple(m for m in explainer_lib.ATTRIBUTION_METHODS if m in methods))
  metrics.update(attributed.metrics)
  if chief and len(attributed.maps) > 1:
    reports.attribution_figures(workdir, config, images['image'], row_labels,
                                attributed)

  if 'filters' in methods:
    filters, activations = runner.filter_views(model, variables,
                                               images['image'][0], config)
    if chief:
      reports.filter_figures(workdir, filters, activations,
                             config.filters.layer, names[images['label'][0]])

  if 'activation_maximization' in methods:
    maximized, channels, gain = runner.activation_maximization(
        model, variables, images['image'].shape[1:], data.num_classes,
        config, key)
    metrics.update(gain)
    if chief:
      reports.activation_maximization_figure(workdir, config, maximized,
                                             channels, names)

  if 'sanity_check' in methods and config.sanity.methods:
    checked = runner.sanity_check(run, model, params, images, config,
                                  attributed.maps)
    metrics.update(checked.metrics)
    if chief:
      reports.sanity_figures(workdir, images['image'][0], checked)

  if 'surrogate' in methods:
    trees = runner.global_surrogate(run, params, data.train, data.test,
                                    config)
    metrics.update(trees.metrics)
    if chief:
      reports.surrogate_figure(workdir, config, trees)

  if chief:
    reports.write_results(workdir, config, metrics)
  loop.write_json(workdir, 'summary.json', metrics)
  return loop.TrainResult(state, metrics)
