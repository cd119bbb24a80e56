"""HW9: explain a trained image classifier, locally and globally.

`train_and_evaluate(config, workdir)` trains the classifier that `config`
describes (lib.image_classifier) in WORKDIR/classifier, or reuses the one
there, then runs each of `config.methods` and writes PNGs to WORKDIR:
  attributions.png         rows = test images, columns = the attribution
                           methods (saliency, smoothgrad, integrated_gradients,
                           grad_cam, occlusion, lime) as overlays
  deletion_curves.png      p(target) as the top-ranked pixels are deleted and
                           inserted, per method and for a random ranking
  filters.png, activations.png     first-layer kernels; `filters.layer`'s
                           output on the first image
  activation_maximization.png      inputs that maximize each class logit and
                           some channels of the last feature map
  sanity_check.png, sanity_maps.png    cascading model randomization
and the metrics to WORKDIR/summary.json: the classifier's accuracy,
deletion/insertion AUC per method (and for a random ranking), IG's
completeness gap, the logit gain of activation maximization, and the rank
correlation of each method's maps with the trained model's as layers are
re-initialized.
"""

import functools
import json
import os

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import config as config_lib
from lib import image_classifier
from lib import mesh as mesh_lib
from lib import plots
from lib import trainer
from lib.data import images as image_data
from lib.errors import ConfigError
from projects.explainable import attribution
from projects.explainable import config as config_file
from projects.explainable import explainer as explainer_lib
from projects.explainable import overlays
from projects.explainable import sanity
from projects.explainable import visualize


def _require(ok: bool, message: str):
  if not ok:
    raise ConfigError(message)


def _positive_int(value, name: str):
  _require(isinstance(value, int) and value > 0,
           f'config.{name}={value!r} must be a positive integer')


def _choice(value, name: str, choices):
  _require(value in choices, f'config.{name}={value!r}: choose one of '
           f'{tuple(choices)}')


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first unusable field."""
  config_lib.validate(config)
  methods = tuple(config.methods)
  _require(methods and set(methods) <= set(config_file.METHODS) and
           len(set(methods)) == len(methods),
           f'config.methods={methods!r}: choose distinct methods from '
           f'{config_file.METHODS}')
  for name in ('num_images', 'num_metric_images'):
    _positive_int(config[name], name)
  _require(config.num_metric_images >= config.num_images,
           f'config.num_metric_images={config.num_metric_images} must be >= '
           f'config.num_images={config.num_images} (the figure shows the '
           'first of them)')
  _require(isinstance(config.chunk, int) and config.chunk >= 0,
           f'config.chunk={config.chunk!r} must be an integer >= 0')
  _choice(config.target, 'target', ('label', 'predicted'))
  _require(config.blur_sigma > 0,
           f'config.blur_sigma={config.blur_sigma} must be > 0')
  _positive_int(config.smoothgrad.num_samples, 'smoothgrad.num_samples')
  _require(config.smoothgrad.noise_level >= 0,
           f'config.smoothgrad.noise_level={config.smoothgrad.noise_level} '
           'must be >= 0')
  ig = config.integrated_gradients
  _positive_int(ig.steps, 'integrated_gradients.steps')
  _choice(ig.rule, 'integrated_gradients.rule', attribution.IG_RULES)
  _choice(ig.baseline, 'integrated_gradients.baseline', attribution.BASELINES)
  for name in ('patch', 'stride'):
    _positive_int(config.occlusion[name], f'occlusion.{name}')
  _choice(config.occlusion.fill, 'occlusion.fill', attribution.BASELINES)
  lime = config.lime
  for name in ('grid', 'num_samples'):
    _positive_int(lime[name], f'lime.{name}')
  _require(lime.kernel_width > 0,
           f'config.lime.kernel_width={lime.kernel_width} must be > 0')
  _require(lime.ridge > 0, f'config.lime.ridge={lime.ridge} must be > 0')
  _choice(lime.fill, 'lime.fill', attribution.BASELINES)
  _choice(lime.output, 'lime.output', attribution.LIME_OUTPUTS)
  _positive_int(config.deletion.steps, 'deletion.steps')
  _choice(config.deletion.fill, 'deletion.fill', attribution.BASELINES)
  _positive_int(config.filters.num_channels, 'filters.num_channels')
  am = config.activation_maximization
  for name in ('steps', 'num_channels'):
    _positive_int(am[name], f'activation_maximization.{name}')
  for name in ('learning_rate', 'l2', 'tv'):
    _require(am[name] >= 0, f'config.activation_maximization.{name}='
             f'{am[name]} must be >= 0')
  _require(isinstance(am.jitter, int) and am.jitter >= 0,
           f'config.activation_maximization.jitter={am.jitter!r} must be an '
           'integer >= 0')
  sanity_methods = tuple(config.sanity.methods)
  _require(set(sanity_methods) <= set(explainer_lib.ATTRIBUTION_METHODS),
           f'config.sanity.methods={sanity_methods!r}: choose from '
           f'{explainer_lib.ATTRIBUTION_METHODS}')


def figure_indices(labels: np.ndarray, count: int) -> np.ndarray:
  """`count` test images, one per class in class order first."""
  firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
  taken = set(firsts)
  rest = [i for i in range(len(labels)) if i not in taken]
  return np.asarray((firsts + rest)[:count])


class _Runner:
  """Calls a jitted method on a batch padded to the mesh and sharded over it."""

  def __init__(self, mesh):
    self.mesh = mesh

  def __call__(self, fn, params, batch: tuple, *args, batch_axis: int = 0):
    count = len(batch[0])
    padded = -(-count // self.mesh.size) * self.mesh.size
    batch = tuple(np.concatenate([b, np.repeat(b[-1:], padded - count, 0)])
                  for b in map(np.asarray, batch))
    out = fn(params, *mesh_lib.shard_batch(batch, self.mesh), *args)
    return jax.tree.map(
        lambda x: np.take(np.asarray(x), np.arange(count), axis=batch_axis),
        out)


def _display(name: str, maps: np.ndarray) -> np.ndarray:
  """Maps as compared in the sanity check: magnitudes for signed methods."""
  return np.abs(maps) if name in explainer_lib.SIGNED_METHODS else maps


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  validate(config)
  data = image_data.load_images(config.data)
  experiment = image_classifier.build(config, data)
  trained = trainer.train_and_evaluate(
      config, os.path.join(workdir, 'classifier'), experiment)
  state = trained.state
  params, model = state.params, experiment.model
  mesh = mesh_lib.make_mesh(config.num_devices)
  run = _Runner(mesh)
  explainer = explainer_lib.Explainer(model, state.model_state, config)
  logits = jax.jit(explainer.logits)
  methods = tuple(config.methods)
  key = jax.random.key(config.seed)
  metrics = {f'classifier/{name}': trained.metrics[name]
             for name in ('val/accuracy', 'test/accuracy')}
  metrics.update(experiment.baselines)

  # The figure's images (one per class first) lead the images the metrics
  # average over, so each method runs once, on one batch shape.
  test = data.test
  shown = figure_indices(test['label'], config.num_metric_images)
  images, labels = test['image'][shown], test['label'][shown]
  predicted = np.argmax(run(logits, params, (images,)), axis=-1)
  targets = (labels if config.target == 'label' else predicted).astype(
      np.int32)
  row_labels = [f'{data.class_names[l]} (pred {data.class_names[p]})'
                for l, p in zip(labels, predicted)][:config.num_images]

  attribution_methods = [m for m in explainer_lib.ATTRIBUTION_METHODS
                         if m in methods]
  figure_maps, curves = {}, {}
  if 'integrated_gradients' in methods:
    ig_attributions = run(explainer.integrated_gradients, params,
                          (images, targets))
    gap, difference = run(explainer.completeness_gap, params,
                          (images, targets, ig_attributions))
    metrics['integrated_gradients/completeness_gap'] = float(
        np.abs(gap).mean())
    metrics['integrated_gradients/completeness_relative_error'] = float(
        np.abs(gap).sum() / max(np.abs(difference).sum(), 1e-12))
  for name in attribution_methods + ['random']:
    if name == 'random':
      maps = np.asarray(jax.random.uniform(jax.random.fold_in(key, 1),
                                           images.shape[:3]))
    elif name == 'integrated_gradients':
      maps = ig_attributions.sum(axis=-1)
    else:
      maps = run(explainer.maps[name], params, (images, targets), key)
    if name != 'random':
      figure_maps[name] = maps[:config.num_images]
    for mode in ('deletion', 'insertion'):
      curve = run(explainer.deletion_curve, params, (images, targets, maps),
                  mode == 'insertion', batch_axis=1)
      curves[(name, mode)] = curve.mean(axis=1)
      metrics[f'{mode}_auc/{name}'] = float(attribution.curve_auc(curve).mean())

  if attribution_methods:
    overlays.attribution_grid(
        images[:config.num_images], row_labels, figure_maps, set(explainer_lib.SIGNED_METHODS),
        os.path.join(workdir, 'attributions.png'),
        title=f'{config.data.name}: target = {config.target}')
    fractions = np.linspace(0.0, 1.0, config.deletion.steps + 1)
    for mode in ('deletion', 'insertion'):
      plots.plot_curves(
          {name: list(zip(fractions, curves[(name, m)]))
           for (name, m) in curves if m == mode},
          os.path.join(workdir, f'{mode}_curves.png'),
          xlabel=f'fraction of pixels {"deleted" if mode == "deletion" else "inserted"}',
          ylabel='p(target)',
          title=f'{mode} (mean over {len(images)} test images)')

  if 'filters' in methods:
    filters = visualize.first_layer_filters(params)
    overlays.image_grid(filters, os.path.join(workdir, 'filters.png'),
                        title='first-layer kernels',
                        cmap='viridis' if filters.shape[-1] == 1 else 'gray')
    variables = {'params': params, **state.model_state}
    activations = np.asarray(jax.jit(
        lambda v, x: visualize.layer_activations(model, v, x,
                                                 config.filters.layer))(
                                                     variables, images[:1]))[0]
    channels = min(config.filters.num_channels, activations.shape[-1])
    overlays.image_grid(
        np.moveaxis(activations[..., :channels], -1, 0),
        os.path.join(workdir, 'activations.png'),
        titles=[f'ch {c}' for c in range(channels)], cmap='viridis',
        title=f'{config.filters.layer or "last feature map"} on a '
        f'{data.class_names[labels[0]]}')

  if 'activation_maximization' in methods:
    metrics.update(_activation_maximization(config, model, state, data,
                                            workdir, key))

  if 'sanity_check' in methods and config.sanity.methods:
    metrics.update(_sanity_check(config, model, explainer, params, run, images,
                                 targets, data, workdir))

  if jax.process_index() == 0:
    (epath.Path(workdir) / 'summary.json').write_text(
        json.dumps(metrics, indent=1))
  return trainer.TrainResult(state, metrics)


def _activation_maximization(config, model, state, data, workdir, key):
  """Class logits and last-feature-map channels, from a grey image."""
  am = config.activation_maximization
  shape = data.test['image'].shape[1:]
  options = dict(steps=am.steps, learning_rate=am.learning_rate, l2=am.l2,
                 tv=am.tv, jitter=am.jitter)

  @functools.partial(jax.jit, static_argnames='channels')
  def maximize(params, targets, key, channels: bool):
    if channels:
      score_fn = lambda x: explainer_lib.feature_scores(
          model, state.model_state, params, x)
    else:
      score_fn = lambda x: model.apply({'params': params, **state.model_state},
                                       x, train=False)
    start = jnp.full((len(targets), *shape), 0.5)
    images, history = visualize.activation_maximization(
        score_fn, start, targets, key, **options)
    start_scores = score_fn(start)[jnp.arange(len(targets)), targets]
    return images, history[-1] - start_scores

  classes = jnp.arange(data.num_classes)
  class_images, class_gain = maximize(state.params, classes, key, False)
  feature_count = jax.eval_shape(
      lambda p: explainer_lib.feature_scores(
          model, state.model_state, p, jnp.zeros((1, *shape))),
      state.params).shape[-1]
  channels = jnp.arange(min(am.num_channels, feature_count))
  channel_images, _ = maximize(state.params, channels,
                               jax.random.fold_in(key, 2), True)
  titles = ([f'class {n}' for n in data.class_names] +
            [f'channel {int(c)}' for c in channels])
  overlays.image_grid(
      np.concatenate([np.asarray(class_images), np.asarray(channel_images)]),
      os.path.join(workdir, 'activation_maximization.png'), titles=titles,
      columns=max(data.num_classes, 8),
      title=f'activation maximization (l2 {am.l2}, tv {am.tv}, jitter '
      f'{am.jitter}), from grey')
  return {'activation_maximization/class_logit_gain': float(
      np.mean(class_gain))}


def _sanity_check(config, model, explainer, params, run, images, targets,
                  data, workdir):
  """Rank correlation of each method's maps with the trained model's, as
  layers are re-initialized from the output down."""
  sample = data.train['image'][:1]
  init_key = jax.random.key(config.sanity.seed)
  layers = sanity.cascade_layers(
      jax.eval_shape(model.init, init_key, sample)['params'])
  fresh = jax.jit(lambda k: model.init(k, sample)['params'],
                  out_shardings=mesh_lib.replicated(run.mesh))(init_key)
  key = jax.random.key(config.seed)
  maps = {name: [] for name in config.sanity.methods}
  for count in range(len(layers) + 1):
    randomized = sanity.randomize_top(params, fresh, layers, count)
    for name in config.sanity.methods:
      maps[name].append(_display(name, run(explainer.maps[name], randomized,
                                           (images, targets), key)))
  metrics, curves = {}, {}
  spearman = jax.jit(sanity.spearman)
  for name, stages in maps.items():
    correlations = [float(np.mean(spearman(stages[0], m))) for m in stages]
    curves[name] = list(enumerate(correlations))
    metrics[f'sanity/{name}/rank_correlation_top_layer'] = correlations[1]
    metrics[f'sanity/{name}/rank_correlation_all_layers'] = correlations[-1]
  plots.plot_curves(curves, os.path.join(workdir, 'sanity_check.png'),
                    xlabel='layers re-initialized (output first): ' +
                    ', '.join(layers), ylabel='Spearman rank correlation',
                    title='model-randomization sanity check')
  overlays.sanity_maps(images[0], ['trained'] + ['+' + n for n in layers],
                       {n: [s[0] for s in stages] for n, stages in maps.items()},
                       set(explainer_lib.SIGNED_METHODS),
                       os.path.join(workdir, 'sanity_maps.png'))
  return metrics
