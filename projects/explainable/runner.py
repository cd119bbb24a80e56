"""The attribution runner: the explanation methods on a trained classifier.

Every batched computation is a `lib.predict.Predictor` (one compilation per
method, the batch sharded over the mesh's 'data' axis): each process explains
its own contiguous share of the images and gets every process's outputs back
in the images' order, so all processes compute the same metrics and figures
(only the chief writes them).

  explained_images         the figure's images (one per class first), then a
                           random subset of the rest of the test set
  Runner                   per-example maps, completeness and deletion curves
  attribute                each method's maps and deletion/insertion AUCs
  sanity_check             the maps as layers are re-initialized
  filter_views             first-layer kernels and one layer's activations
  activation_maximization  inputs that maximize class logits and channels
  global_surrogate         decision trees fitted to the network's predictions
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import mesh as mesh_lib
from lib import predict
from lib.data import batches as batches_lib
from lib.data import splits
from projects.explainable import attribution
from projects.explainable import explainer as explainer_lib
from projects.explainable import sanity
from projects.explainable import surrogate
from projects.explainable import visualize

Source = dict[str, np.ndarray]
MODES = ('deletion', 'insertion')


def figure_indices(labels: np.ndarray, count: int) -> np.ndarray:
  """`count` test images, one per class in class order first."""
  firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
  taken = set(firsts)
  rest = [i for i in range(len(labels)) if i not in taken]
  return np.asarray((firsts + rest)[:count])


def explained_images(test: Source, config: ml_collections.ConfigDict) -> Source:
  """The `config.num_metric_images` test images the metrics average over.

  The figure's `config.num_images` (one per class first) lead; the rest are
  drawn at random (`config.seed`) from the other test images.
  """
  shown = figure_indices(test['label'], config.num_images)
  rest = np.setdiff1d(np.arange(len(test['label'])), shown)
  extra = config.num_metric_images - len(shown)
  drawn = splits.random_subset({'index': rest}, extra,
                               config.seed)['index'] if extra else rest[:0]
  return splits.take(test, np.concatenate([shown, drawn]))


def _per_example_fns(explainer: explainer_lib.Explainer) -> dict:
  """fn(params, batch, key) -> per-example outputs, by name.

  A batch holds 'image' and 'target' (the class explained); 'curves' also
  needs the 'map' that ranks the pixels.
  """
  def method(name):
    def maps(params, batch, key):
      return {'map': explainer.maps[name](params, batch['image'],
                                          batch['target'], key)}
    return maps

  def integrated_gradients(params, batch, key):
    del key
    images, targets = batch['image'], batch['target']
    attributions = explainer.integrated_gradients(params, images, targets)
    gap, difference = explainer.completeness_gap(params, images, targets,
                                                 attributions)
    return {'map': attributions.sum(axis=-1), 'completeness_gap': gap,
            'difference': difference}

  def random(params, batch, key):
    del params
    return {'map': jax.random.uniform(key, batch['image'].shape[:3])}

  def curves(params, batch, key):
    del key
    return {mode: explainer.deletion_curve(
        params, batch['image'], batch['target'], batch['map'],
        mode == 'insertion').T for mode in MODES}

  def predicted(params, batch, key):
    del key
    return jnp.argmax(explainer.logits(params, batch['image']), axis=-1)

  fns = {name: method(name) for name in explainer_lib.ATTRIBUTION_METHODS}
  fns.update(integrated_gradients=integrated_gradients, random=random,
             curves=curves, predicted=predicted)
  return fns


class Runner:
  """The explainer's per-example functions over sources, on every process."""

  def __init__(self, explainer: explainer_lib.Explainer, mesh, key):
    self.mesh, self.key = mesh, key
    self._predictors = {name: predict.Predictor(fn, mesh)
                        for name, fn in _per_example_fns(explainer).items()}

  def __call__(self, name: str, params, source: Source,
               batch_size: int | None = None):
    """`name`'s outputs for every example of `source` (a source every
    process holds whole), in order: batches of `batch_size` (default: one
    batch), padded to the mesh."""
    count = batches_lib.num_examples(source)
    count = min(batch_size, count) if batch_size else count
    batch_size = -(-count // self.mesh.size) * self.mesh.size
    return self._predictors[name](
        params, splits.contiguous_share(source), batch_size, self.key,
        all_processes=True)


@dataclasses.dataclass
class Attributions:
  maps: dict[str, np.ndarray]  # [N, H, W] per method, 'random' last
  curves: dict[str, dict[str, np.ndarray]]  # mode -> method -> mean [steps + 1]
  metrics: dict[str, float]


def attribute(run: Runner, params, images: Source,
              methods: tuple[str, ...]) -> Attributions:
  """Each method's maps and how fast its ranking deletes (inserts) p(target).

  `images` holds 'image' and 'target'. A random ranking is the reference;
  integrated gradients also reports its completeness gap.
  """
  maps, metrics = {}, {}
  curves = {mode: {} for mode in MODES}
  for name in (*methods, 'random'):
    outputs = run(name, params, images)
    maps[name] = outputs['map']
    if name == 'integrated_gradients':
      gap = np.abs(outputs['completeness_gap'])
      difference = np.abs(outputs['difference'])
      metrics['integrated_gradients/completeness_gap'] = float(gap.mean())
      metrics['integrated_gradients/completeness_relative_error'] = float(
          gap.sum() / max(difference.sum(), 1e-12))
    per_example = run('curves', params, {**images, 'map': maps[name]})
    for mode in MODES:
      curve = per_example[mode]  # [N, steps + 1]
      curves[mode][name] = curve.mean(axis=0)
      metrics[f'{mode}_auc/{name}'] = float(
          attribution.curve_auc(curve.T).mean())
  return Attributions(maps, curves, metrics)


def displayed(name: str, maps: np.ndarray) -> np.ndarray:
  """Maps as the sanity check compares them: magnitudes for signed methods."""
  return np.abs(maps) if name in explainer_lib.SIGNED_METHODS else maps


@dataclasses.dataclass
class Sanity:
  layers: list[str]  # re-initialized in this order, the output layer first
  maps: dict[str, list[np.ndarray]]  # method -> after 0..len(layers) layers
  correlations: dict[str, list[float]]  # mean Spearman with the trained maps
  metrics: dict[str, float]


def sanity_check(run: Runner, model: nn.Module, params, images: Source,
                 config: ml_collections.ConfigDict,
                 trained_maps: dict[str, np.ndarray]) -> Sanity:
  """Cascading randomization (Adebayo et al. 2018) of `config.sanity.methods`.

  The layers are re-initialized (seed `config.sanity.seed`) from the output
  down; `trained_maps` are reused for the trained model where given.
  """
  sample = images['image'][:1]
  init_key = jax.random.key(config.sanity.seed)
  layers = sanity.cascade_layers(
      jax.eval_shape(model.init, init_key, sample)['params'])
  fresh = jax.jit(lambda k: model.init(k, sample)['params'],
                  out_shardings=mesh_lib.replicated(run.mesh))(init_key)
  spearman = jax.jit(sanity.spearman)
  maps, correlations, metrics = {}, {}, {}
  for name in config.sanity.methods:
    stages = [trained_maps[name]] if name in trained_maps else []
    for count in range(len(stages), len(layers) + 1):
      randomized = sanity.randomize_top(params, fresh, layers, count)
      stages.append(run(name, randomized, images)['map'])
    maps[name] = [displayed(name, m) for m in stages]
    correlations[name] = [float(np.mean(spearman(maps[name][0], m)))
                          for m in maps[name]]
    metrics[f'sanity/{name}/rank_correlation_top_layer'] = correlations[name][1]
    metrics[f'sanity/{name}/rank_correlation_all_layers'] = correlations[
        name][-1]
  return Sanity(layers, maps, correlations, metrics)


def filter_views(model: nn.Module, variables: dict, image: np.ndarray,
                 config: ml_collections.ConfigDict):
  """(first-layer kernels [K, kh, kw, C] in [0, 1], the first
  `config.filters.num_channels` channels of `config.filters.layer`'s output
  on one image [channels, h, w])."""
  filters = visualize.first_layer_filters(variables['params'])
  activations = jax.jit(lambda v, x: visualize.layer_activations(
      model, v, x, config.filters.layer))(variables, image[None])
  activations = np.asarray(activations)[0, ..., :config.filters.num_channels]
  return filters, np.moveaxis(activations, -1, 0)


def activation_maximization(model: nn.Module, variables: dict,
                            image_shape: tuple[int, ...], num_classes: int,
                            config: ml_collections.ConfigDict, key):
  """Inputs maximizing each class logit, then the first
  `activation_maximization.num_channels` channels of the last feature map,
  from a grey image: (images [classes + channels, H, W, C], the number of
  channels, {'activation_maximization/class_logit_gain': mean over classes})."""
  am = config.activation_maximization
  params, model_state = variables['params'], {
      k: v for k, v in variables.items() if k != 'params'}

  @functools.partial(jax.jit, static_argnames='channels')
  def maximize(params, targets, key, channels: bool):
    if channels:
      score_fn = lambda x: explainer_lib.feature_scores(model, model_state,
                                                         params, x)
    else:
      score_fn = lambda x: model.apply({'params': params, **model_state}, x,
                                       train=False)
    start = jnp.full((len(targets), *image_shape), 0.5)
    images, history = visualize.activation_maximization(
        score_fn, start, targets, key, steps=am.steps,
        learning_rate=am.learning_rate, l2=am.l2, tv=am.tv, jitter=am.jitter)
    start_scores = score_fn(start)[jnp.arange(len(targets)), targets]
    return images, history[-1] - start_scores

  class_images, class_gain = maximize(params, jnp.arange(num_classes), key,
                                      False)
  feature_count = jax.eval_shape(
      lambda p: explainer_lib.feature_scores(
          model, model_state, p, jnp.zeros((1, *image_shape))),
      params).shape[-1]
  channels = min(am.num_channels, feature_count)
  channel_images, _ = maximize(params, jnp.arange(channels),
                               jax.random.fold_in(key, 2), True)
  images = np.concatenate([np.asarray(class_images),
                           np.asarray(channel_images)])
  return images, channels, {
      'activation_maximization/class_logit_gain': float(np.mean(class_gain))}


def global_surrogate(run: Runner, params, train: Source, test: Source,
                     config: ml_collections.ConfigDict
                     ) -> surrogate.Surrogates:
  """Trees of `config.surrogate.depths` mimicking the network's predicted
  classes on `surrogate.num_train` training images (drawn with `seed`),
  scored on every test image."""
  sur = config.surrogate
  train = splits.random_subset({'image': train['image']}, sur.num_train,
                               config.seed)
  train_predicted = run('predicted', params, train, sur.batch_size)
  test_predicted = run('predicted', params, {'image': test['image']},
                       sur.batch_size)
  return surrogate.fit_trees(train['image'], train_predicted, test['image'],
                             test_predicted, test['label'],
                             tuple(sur.depths), config.seed)
