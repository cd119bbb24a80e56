"""HW9: the explanation methods' mathematical properties on models with known answers."""

import functools
import json
import os
import subprocess
import sys

from typing import Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import errors
from lib import mesh as mesh_lib
from lib import models
from lib.data import embedded
from projects.explainable import attribution
from projects.explainable import config as config_lib
from projects.explainable import explainer as explainer_lib
from projects.explainable import runner
from projects.explainable import sanity
from projects.explainable import surrogate
from projects.explainable import train
from projects.explainable import visualize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SHAPE = (8, 8, 2)  # H, W, C of the test images


def _linear(weights):
  """logits = flatten(x) @ W, W: [H*W*C, K]."""
  return lambda images: images.reshape(len(images), -1) @ weights


def _images_and_weights(batch=4, classes=3, seed=0):
  images = jax.random.uniform(jax.random.key(seed), (batch, *SHAPE))
  weights = jax.random.normal(jax.random.key(seed + 1),
                              (np.prod(SHAPE), classes))
  targets = jnp.arange(batch, dtype=jnp.int32) % classes
  return images, weights, targets


def _class_weights(weights, targets):
  return weights[:, targets].T.reshape(len(targets), *SHAPE)


def _small_cnn(seed=0):
  model = models.SmallCNN((8, 16), num_outputs=4)
  variables = model.init(jax.random.key(seed), jnp.zeros((1, *SHAPE)))
  model_state = {'batch_stats': variables['batch_stats']}
  return model, variables['params'], model_state


def _explain_config(**overrides):
  config = config_lib.get_config('quick')
  config.integrated_gradients.steps = 16
  config.smoothgrad.num_samples = 4
  config.lime.num_samples = 32
  config.occlusion.update(patch=2, stride=2)
  config.update(overrides)
  return config


def test_saliency_of_a_linear_model_is_the_weights_magnitude():
  images, weights, targets = _images_and_weights()
  maps = jax.jit(functools.partial(attribution.saliency, _linear(weights)))(
      images, targets)
  chex.assert_shape(maps, (4, 8, 8))
  expected = jnp.abs(_class_weights(weights, targets)).max(axis=-1)
  chex.assert_trees_all_close(maps, expected, rtol=1e-6)


@pytest.mark.parametrize('rule', attribution.IG_RULES)
def test_integrated_gradients_of_a_linear_model_is_input_times_weights(rule):
  images, weights, targets = _images_and_weights()
  logits_fn = _linear(weights)
  baselines = jnp.zeros_like(images)
  attributions = attribution.integrated_gradients(
      logits_fn, images, targets, baselines, steps=3, rule=rule)
  chex.assert_shape(attributions, images.shape)
  chex.assert_trees_all_close(
      attributions, images * _class_weights(weights, targets), atol=1e-5)
  gap, difference = attribution.completeness_gap(logits_fn, images, targets,
                                                 baselines, attributions)
  chex.assert_trees_all_close(gap, jnp.zeros(4), atol=1e-4)
  assert float(jnp.abs(difference).min()) > 0.1


def test_integrated_gradients_is_complete_on_a_nonlinear_cnn():
  model, params, model_state = _small_cnn()
  logits_fn = lambda x: model.apply({'params': params, **model_state}, x)
  images, _, targets = _images_and_weights(batch=8)

  @functools.partial(jax.jit, static_argnames='steps')
  def relative_gap(baselines, steps):
    attributions = attribution.integrated_gradients(
        logits_fn, images, targets, baselines, steps=steps)
    gap, difference = attribution.completeness_gap(
        logits_fn, images, targets, baselines, attributions)
    return jnp.abs(gap).sum() / jnp.abs(difference).sum(), attributions

  for baseline in attribution.BASELINES:
    baselines = attribution.make_baseline(images, baseline, blur_sigma=1.0)
    coarse, _ = relative_gap(baselines, 2)
    fine, attributions = relative_gap(baselines, 64)
    chex.assert_tree_all_finite(attributions)
    assert float(fine) < 0.02, (baseline, coarse, fine)
    assert float(fine) < float(coarse), (baseline, coarse, fine)


def test_baselines_have_the_images_shape_and_keep_constant_images():
  images, _, _ = _images_and_weights()
  constant = jnp.full((2, 8, 8, 2), 0.3)
  for kind in attribution.BASELINES:
    chex.assert_shape(attribution.make_baseline(images, kind), images.shape)
  chex.assert_trees_all_close(attribution.make_baseline(constant, 'blur'),
                              constant, atol=1e-6)
  chex.assert_trees_all_close(attribution.make_baseline(constant, 'mean'),
                              constant, atol=1e-6)


def test_smoothgrad_without_noise_is_saliency_and_is_finite_with_noise():
  images, weights, targets = _images_and_weights()
  logits_fn = _linear(weights)
  key = jax.random.key(3)
  plain = attribution.saliency(logits_fn, images, targets)
  smooth = jax.jit(functools.partial(
      attribution.smoothgrad, logits_fn, num_samples=3, noise_level=0.0))(
          images, targets, key)
  chex.assert_trees_all_close(smooth, plain, rtol=1e-6)
  model, params, model_state = _small_cnn()
  cnn = lambda x: model.apply({'params': params, **model_state}, x)
  noisy = jax.jit(functools.partial(attribution.smoothgrad, cnn,
                                    num_samples=4))(images, targets, key)
  chex.assert_shape(noisy, (4, 8, 8))
  chex.assert_tree_all_finite(noisy)
  assert float(jnp.abs(noisy - attribution.saliency(cnn, images,
                                                    targets)).max()) > 0


def test_grad_cam_on_a_global_pooling_model_is_class_activation_mapping():
  # logits = mean_hw(A) @ W with A = the image: Grad-CAM = ReLU(A . W_c) / HW.
  images, _, targets = _images_and_weights()
  head = jax.random.normal(jax.random.key(5), (SHAPE[-1], 3))
  feature_logits = lambda x, delta: ((x + delta).mean(axis=(1, 2)) @ head, x)
  cam = jax.jit(functools.partial(attribution.grad_cam, feature_logits))(
      images, targets)
  expected = jax.nn.relu(jnp.einsum('bhwk,bk->bhw', images, head[:, targets].T)
                         ) / (SHAPE[0] * SHAPE[1])
  chex.assert_trees_all_close(cam, expected, atol=1e-6)


def test_grad_cam_of_a_cnn_is_an_image_sized_non_negative_map():
  model, params, model_state = _small_cnn()
  explainer = explainer_lib.Explainer(model, model_state, _explain_config())
  images, _, targets = _images_and_weights(batch=3)
  _, features = explainer.feature_logits(params, images, 0.0)
  chex.assert_shape(features, (3, 2, 2, 16))  # two 2x2 max-pools of 8x8
  cam = explainer.maps['grad_cam'](params, images, targets,
                                   jax.random.key(0))
  chex.assert_shape(cam, (3, 8, 8))
  chex.assert_tree_all_finite(cam)
  assert float(cam.min()) >= 0.0 and float(cam.max()) > 0.0


def test_occlusion_is_zero_where_the_model_looks_nowhere():
  images, weights, targets = _images_and_weights()
  # The model ignores the left half of the image.
  ignored = jnp.zeros(SHAPE).at[:, :4].set(1.0).reshape(-1, 1)
  weights = weights * (1 - ignored)
  maps = attribution.occlusion(_linear(weights), images, targets, patch=2,
                               stride=2)
  chex.assert_shape(maps, (4, 8, 8))
  chex.assert_trees_all_close(maps[:, :, :4], jnp.zeros((4, 8, 4)), atol=1e-6)
  assert float(jnp.abs(maps[:, :, 4:]).min()) > 0
  # One-pixel patches blanked to 0 measure x * W_c summed over channels.
  pixels = attribution.occlusion(_linear(weights), images, targets, patch=1,
                                 stride=1)
  chex.assert_trees_all_close(
      pixels, (images * _class_weights(weights, targets)).sum(-1), atol=1e-5)


def test_occlusion_masks_cover_every_pixel():
  masks = attribution.occlusion_masks(7, 9, patch=3, stride=2)
  # Rows start at 0, 2, 4; columns at 0, 2, 4, 6: the last flush with the edge.
  assert masks.shape == (12, 7, 9)
  assert masks.sum(axis=0).min() >= 1
  np.testing.assert_array_equal(masks[-1, 4:, 6:], np.ones((3, 3)))
  assert set(np.unique(masks.sum(axis=(1, 2)))) == {9.0}


def test_lime_recovers_a_model_linear_in_the_patch_masks():
  grid = 4
  cell_weights = jax.random.normal(jax.random.key(7), (2, grid * grid))
  index = attribution.patch_index(8, 8, grid)
  per_pixel = cell_weights[:, index]  # [K=2, H, W]

  def logits_fn(images):  # sum over pixels of w_cell * x: linear in the masks
    return jnp.einsum('bhwc,khw->bk', images, per_pixel) + 1.0

  images = jnp.ones((2, *SHAPE))
  targets = jnp.array([0, 1])
  maps, weights = jax.jit(functools.partial(
      attribution.lime, logits_fn, grid=grid, num_samples=200, ridge=1e-6,
      output='logit'))(images, targets, jax.random.key(0))
  chex.assert_shape(maps, (2, 8, 8))
  chex.assert_shape(weights, (2, grid * grid))
  cell_size = 2 * 2 * SHAPE[-1]  # pixels x channels per cell
  chex.assert_trees_all_close(weights, cell_weights[targets] * cell_size,
                              atol=1e-3)
  chex.assert_trees_all_close(maps, per_pixel[targets] * cell_size,
                              atol=1e-3)


def test_deletion_of_the_true_attribution_beats_its_reverse():
  images, weights, targets = _images_and_weights()
  logits_fn = _linear(weights * 5)
  truth = (images * _class_weights(weights, targets)).sum(-1)
  curves = {sign: attribution.deletion_curve(logits_fn, images, targets,
                                             sign * truth, steps=8)
            for sign in (1, -1)}
  chex.assert_shape(curves[1], (9, 4))
  probabilities = jax.nn.softmax(logits_fn(images))[jnp.arange(4), targets]
  chex.assert_trees_all_close(curves[1][0], probabilities, rtol=1e-5)
  chex.assert_trees_all_close(curves[1][-1], jnp.full(4, 1 / 3), rtol=1e-5)
  assert bool(jnp.all(attribution.curve_auc(curves[1]) <
                      attribution.curve_auc(curves[-1])))
  inserted = attribution.deletion_curve(logits_fn, images, targets, truth,
                                        steps=8, insertion=True)
  chex.assert_trees_all_close(inserted[-1], probabilities, rtol=1e-5)


def test_activation_maximization_increases_the_target_logit():
  model, params, model_state = _small_cnn()
  logits_fn = lambda x: model.apply({'params': params, **model_state}, x)
  start = jnp.full((4, *SHAPE), 0.5)
  targets = jnp.arange(4)
  images, history = jax.jit(functools.partial(
      visualize.activation_maximization, logits_fn, steps=30,
      learning_rate=0.05, l2=0.1, tv=0.1, jitter=1))(
          start, targets, jax.random.key(0))
  chex.assert_shape(images, start.shape)
  chex.assert_shape(history, (30, 4))
  assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
  before = logits_fn(start)[jnp.arange(4), targets]
  after = logits_fn(images)[jnp.arange(4), targets]
  assert bool(jnp.all(after > before)), (before, after)
  assert float(jnp.mean(after - before)) > 0.3, (before, after)


def test_total_variation_is_zero_for_constant_images_only():
  chex.assert_trees_all_close(visualize.total_variation(jnp.ones((2, 4, 4, 1))),
                              jnp.zeros(2))
  checker = (jnp.indices((4, 4)).sum(0) % 2).astype(jnp.float32)
  chex.assert_trees_all_close(
      visualize.total_variation(checker[None, :, :, None]), jnp.array([2.0]))


def test_filters_and_layer_activations_have_the_models_shapes():
  model, params, model_state = _small_cnn()
  filters = visualize.first_layer_filters(params)
  chex.assert_shape(filters, (8, 3, 3, 2))
  assert filters.min() >= 0 and filters.max() <= 1
  variables = {'params': params, **model_state}
  images = jnp.ones((2, *SHAPE))
  chex.assert_shape(visualize.layer_activations(model, variables, images,
                                                'Conv_0'), (2, 8, 8, 8))
  chex.assert_shape(visualize.layer_activations(model, variables, images),
                    (2, 2, 2, 16))
  with pytest.raises(ValueError, match='Conv_9'):
    visualize.layer_activations(model, variables, images, 'Conv_9')


def test_spearman_is_one_for_monotone_maps_and_minus_one_reversed():
  spearman = jax.jit(sanity.spearman)
  maps = jax.random.uniform(jax.random.key(0), (3, 5, 5))
  chex.assert_trees_all_close(spearman(maps, maps**3 + 2), jnp.ones(3),
                              atol=1e-6)
  chex.assert_trees_all_close(spearman(maps, -maps), -jnp.ones(3), atol=1e-6)
  ties = jnp.array([[1.0, 1.0, 2.0, 3.0]])  # average ranks 1.5, 1.5, 3, 4
  other = jnp.array([[1.0, 2.0, 3.0, 4.0]])
  chex.assert_trees_all_close(spearman(ties, ties), jnp.ones(1), atol=1e-6)
  chex.assert_trees_all_close(spearman(ties, other),
                              jnp.array([4.5 / np.sqrt(4.5 * 5)]), atol=1e-6)


def test_cascading_randomization_changes_the_saliency_map():
  model, params, model_state = _small_cnn(seed=0)
  layers = sanity.cascade_layers(params)
  assert layers == ['Dense_0', 'Conv_1', 'Conv_0']
  fresh = model.init(jax.random.key(9), jnp.zeros((1, *SHAPE)))['params']
  explainer = explainer_lib.Explainer(model, model_state, _explain_config())
  images, _, targets = _images_and_weights(batch=8)
  key = jax.random.key(0)
  saliency = explainer.maps['saliency']
  original = saliency(params, images, targets, key)
  chex.assert_trees_all_close(
      sanity.spearman(original, saliency(
          sanity.randomize_top(params, fresh, layers, 0), images, targets,
          key)), jnp.ones(8), atol=1e-6)
  randomized = saliency(sanity.randomize_top(params, fresh, layers, 3), images,
                        targets, key)
  assert float(sanity.spearman(original, randomized).mean()) < 0.5
  one = sanity.randomize_top(params, fresh, layers, 1)
  chex.assert_trees_all_close(one['Conv_0'], params['Conv_0'])
  chex.assert_trees_all_close(one['Dense_0'], fresh['Dense_0'])


@pytest.mark.parametrize('method', explainer_lib.ATTRIBUTION_METHODS)
def test_every_method_batched_equals_per_example_and_sharded(method):
  model, params, model_state = _small_cnn()
  explainer = explainer_lib.Explainer(model, model_state, _explain_config())
  images, _, targets = _images_and_weights(batch=8)
  key = jax.random.key(0)
  fn = explainer.maps[method]
  batched = fn(params, images, targets, key)
  chex.assert_shape(batched, (8, 8, 8))
  chex.assert_tree_all_finite(batched)
  if method not in ('smoothgrad', 'lime'):  # their noise is drawn per batch
    single = jnp.concatenate([fn(params, images[i:i + 1], targets[i:i + 1],
                                 key) for i in range(2)])
    chex.assert_trees_all_close(batched[:2], single, atol=1e-5, rtol=1e-4)
  # The runner shards the batch over the 8 devices; its one batch's key is
  # `key` folded with the batch index 0.
  run = runner.Runner(explainer, mesh_lib.make_mesh(), key)
  sharded = run(method, params, {'image': np.asarray(images),
                                 'target': np.asarray(targets)})['map']
  chex.assert_trees_all_close(
      sharded, fn(params, images, targets, jax.random.fold_in(key, 0)),
      atol=1e-5, rtol=1e-4)


def test_guided_backprop_keeps_positive_paths_of_a_one_hidden_layer_net():
  # logits = relu(x W1) W2 on flattened pixels: guided gradient of logit c is
  # W1 ((x W1 > 0) * (W2[:, c] > 0) * W2[:, c]); plain gradient keeps W2 < 0.
  images, _, targets = _images_and_weights(batch=4)
  hidden = jax.random.normal(jax.random.key(11), (np.prod(SHAPE), 6))
  head = jax.random.normal(jax.random.key(12), (6, 3))

  def net(activation):
    return lambda x: activation(x.reshape(len(x), -1) @ hidden) @ head

  guided = jax.jit(functools.partial(attribution.guided_backprop,
                                     net(attribution.guided_relu)))(
                                         images, targets)
  plain = attribution.saliency(net(jax.nn.relu), images, targets)
  flat = images.reshape(4, -1)
  active = (flat @ hidden > 0).astype(jnp.float32)  # [B, 6]
  upstream = head[:, targets].T  # [B, 6]
  gradient = (active * jnp.maximum(upstream, 0)) @ hidden.T
  expected = jnp.abs(gradient.reshape(4, *SHAPE)).max(axis=-1)
  chex.assert_shape(guided, (4, 8, 8))
  chex.assert_trees_all_close(guided, expected, rtol=1e-5, atol=1e-6)
  assert float(jnp.min(upstream)) < 0  # the plain gradient has negative parts
  assert float(jnp.abs(guided - plain).max()) > 1e-3
  # Through the Explainer, the CNN's clone with guided ReLUs differs too.
  model, params, model_state = _small_cnn()
  explainer = explainer_lib.Explainer(model, model_state, _explain_config())
  key = jax.random.key(0)
  cnn_guided = explainer.maps['guided_backprop'](params, images, targets, key)
  cnn_plain = explainer.maps['saliency'](params, images, targets, key)
  chex.assert_tree_all_finite(cnn_guided)
  assert float(jnp.abs(cnn_guided - cnn_plain).max()) > 1e-4


class _ProbedNet(nn.Module):
  """Conv -> ReLU -> average pool -> Dense -> ReLU -> Dense, each layer's
  input sown ('intermediates') and perturbable ('perturbations')."""
  use_bias: bool = False
  activation: Callable[[jax.Array], jax.Array] = nn.relu

  def _probe(self, name, x):
    self.sow('intermediates', name, x)
    return self.perturb(name, x)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train
    x = nn.Conv(4, (3, 3), use_bias=self.use_bias)(self._probe('conv', x))
    x = nn.avg_pool(self.activation(x), (2, 2), (2, 2))
    x = self._probe('dense', x.reshape(len(x), -1))
    x = self.activation(nn.Dense(8, use_bias=self.use_bias)(x))
    return nn.Dense(3, use_bias=self.use_bias)(self._probe('head', x))


def _layer_relevances(model, params, images, targets, epsilon):
  """LRP-epsilon relevance summed at each probed layer's input: {name: [B]}."""
  variables = model.init(jax.random.key(0), images)
  deltas = jax.tree.map(jnp.zeros_like, variables['perturbations'])

  def score(deltas):
    with nn.intercept_methods(explainer_lib.lrp_interceptor(epsilon)):
      logits, state = model.apply({'params': params, 'perturbations': deltas},
                                  images, mutable=['intermediates'])
    scores = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]
    return scores.sum(), state['intermediates']

  grads, inputs = jax.grad(score, has_aux=True)(deltas)
  return {name: (inputs[name][0] * grads[name]).reshape(len(images), -1).sum(1)
          for name in grads}


def test_lrp_epsilon_conserves_relevance_on_a_bias_free_net_layer_by_layer():
  model = _ProbedNet(use_bias=False)
  images, _, targets = _images_and_weights(batch=4)
  params = model.init(jax.random.key(1), images)['params']
  logits = model.apply({'params': params}, images)
  target_logits = logits[jnp.arange(4), targets]
  config = _explain_config()
  config.lrp.epsilon = 1e-9
  explainer = explainer_lib.Explainer(model, {}, config)
  relevance = explainer.lrp(params, images, targets)
  chex.assert_shape(relevance, images.shape)
  chex.assert_trees_all_close(relevance.reshape(4, -1).sum(1), target_logits,
                              rtol=1e-4, atol=1e-5)
  layers = _layer_relevances(model, params, images, targets, 1e-9)
  assert set(layers) == {'conv', 'dense', 'head'}
  for name, total in layers.items():
    chex.assert_trees_all_close(total, target_logits, rtol=1e-4, atol=1e-5,
                                custom_message=name)
  # A large epsilon absorbs relevance: the input's share shrinks.
  scale = float(jnp.abs(target_logits).max())
  config.lrp.epsilon = 10 * scale
  absorbed = explainer_lib.Explainer(model, {}, config).lrp(
      params, images, targets).reshape(4, -1).sum(1)
  assert bool(jnp.all(jnp.abs(absorbed) < 0.5 * jnp.abs(target_logits))), (
      absorbed, target_logits)


def test_lrp_with_a_tiny_epsilon_is_gradient_times_input_on_a_cnn():
  model, params, model_state = _small_cnn()
  config = _explain_config()
  config.lrp.epsilon = 1e-9
  explainer = explainer_lib.Explainer(model, model_state, config)
  images, _, targets = _images_and_weights(batch=3)
  logits_fn = functools.partial(explainer.logits, params)
  expected = images * attribution.input_gradients(logits_fn, images, targets)
  chex.assert_trees_all_close(explainer.lrp(params, images, targets),
                              expected, rtol=1e-3, atol=1e-5)


def test_deeplift_sums_to_the_logit_difference_on_a_relu_net_with_biases():
  model = _ProbedNet(use_bias=True)
  images, _, targets = _images_and_weights(batch=6)
  params = model.init(jax.random.key(2), images)['params']
  # Non-zero biases, so ReLUs switch between the input and the reference.
  params = jax.tree.map(lambda p: p + 0.1 * jnp.sign(p) + 0.05, params)
  for baseline in ('zero', 'blur'):
    config = _explain_config()
    config.deeplift.baseline = baseline
    explainer = explainer_lib.Explainer(model, {}, config)
    attributions = explainer.deeplift(params, images, targets)
    chex.assert_shape(attributions, images.shape)
    references = explainer.fill(images, baseline)
    logits_fn = functools.partial(explainer.logits, params)
    delta = (attribution.target_scores(logits_fn, images, targets) -
             attribution.target_scores(logits_fn, references, targets))
    chex.assert_trees_all_close(attributions.reshape(6, -1).sum(1), delta,
                                rtol=1e-4, atol=1e-5)
    gradient_times_delta = (images - references) * attribution.input_gradients(
        logits_fn, images, targets)
    assert float(jnp.abs(gradient_times_delta - attributions).max()) > 1e-3


def test_deeplift_rescale_differs_from_gradient_times_delta_by_hand():
  # f(x) = relu(x - 1), x = 2, x0 = 0: the gradient at x is 1, so
  # gradient x delta = 2; the rescale slope (1 - 0) / 2 gives 1 = f(x) - f(x0).
  def logits_fn(activation):
    return lambda x: jnp.stack([activation(x[:, 0, 0, 0] - 1.0),
                                -x[:, 0, 0, 0]], axis=1)

  images = jnp.full((1, 1, 1, 1), 2.0)
  targets = jnp.zeros(1, jnp.int32)
  attributions = attribution.deeplift_rescale(
      logits_fn(attribution.rescale_relu), images, targets,
      jnp.zeros_like(images))
  chex.assert_trees_all_close(attributions, jnp.ones((1, 1, 1, 1)))
  gradient = attribution.input_gradients(logits_fn(jax.nn.relu), images,
                                         targets)
  chex.assert_trees_all_close(gradient * images, jnp.full((1, 1, 1, 1), 2.0))
  # Where input and reference agree, the multiplier is the ordinary gradient.
  same = attribution.deeplift_rescale(logits_fn(attribution.rescale_relu),
                                      images, targets, images)
  chex.assert_trees_all_close(same, jnp.zeros((1, 1, 1, 1)))


def test_surrogate_trees_grow_more_faithful_with_depth_on_digits():
  digits = embedded.load_digits()
  images, labels = digits['image'], digits['label']
  train_x, test_x = images[:1200], images[1200:]
  # "The network": a least-squares linear classifier of the pixels.
  features = lambda x: np.concatenate(
      [x.reshape(len(x), -1), np.ones((len(x), 1), np.float32)], axis=1)
  weights = np.linalg.lstsq(features(train_x), np.eye(10)[labels[:1200]],
                            rcond=None)[0]
  predict = lambda x: np.argmax(features(x) @ weights, axis=1)
  trees = surrogate.fit_trees(train_x, predict(train_x), test_x,
                              predict(test_x), labels[1200:], (2, 16), seed=0)
  low, high = trees.fidelity
  assert 0.0 <= low <= high <= 1.0, trees.fidelity
  assert high > trees.metrics['surrogate/chance_fidelity'] + 0.3
  assert trees.leaves[0] <= 4 < trees.leaves[1]
  assert all(0.0 <= a <= 1.0 for a in trees.accuracy)
  chex.assert_shape(trees.importances, (8, 8))
  assert set(trees.metrics) == {
      'surrogate/chance_fidelity',
      *(f'surrogate/depth_{d}/{k}' for d in (2, 16)
        for k in ('fidelity', 'accuracy', 'leaves'))}


def test_quick_config_is_valid_and_bad_fields_are_named():
  for variant in config_lib.VARIANTS:
    config_lib.validate(config_lib.get_config(variant))
  bad = [('methods', ('saliency', 'tarot')), ('integrated_gradients.rule',
                                               'simpson'),
         ('occlusion.patch', 0), ('lime.fill', 'noise'), ('target', 'best'),
         ('sanity.methods', ('filters',)), ('activation_maximization.jitter',
                                            -1), ('lrp.epsilon', 0.0),
         ('lrp.epsilon', -1e-3), ('deeplift.baseline', 'noise'),
         ('surrogate.depths', (2, 0)), ('surrogate.depths', ()),
         ('surrogate.num_train', -1), ('surrogate.batch_size', 0)]
  for field, value in bad:
    config = config_lib.get_config('quick')
    parent, _, leaf = ('.' + field).rpartition('.')
    node = config
    for part in parent.split('.')[1:]:
      node = node[part]
    node[leaf] = value
    with pytest.raises(errors.ConfigError, match=field.split('.')[-1]):
      config_lib.validate(config)
  with pytest.raises(errors.ConfigError):
    config_lib.get_config('imagenet')
  config = config_lib.get_config('quick')
  config.model.name = 'separable'  # no activation field to swap
  config_lib.validate(config)  # fine without the backward-rule methods
  config.methods = config_lib.METHODS
  with pytest.raises(errors.ConfigError, match='model.name'):
    config_lib.validate(config)


def test_figure_indices_show_each_class_first():
  labels = np.array([3, 3, 1, 0, 1, 2, 0])
  np.testing.assert_array_equal(runner.figure_indices(labels, 5),
                                [3, 2, 5, 0, 1])


def test_explained_images_lead_with_the_figure_and_draw_the_rest():
  labels = np.arange(50) % 5
  test = {'image': np.arange(50.0), 'label': labels}
  config = config_lib.get_config('quick')
  config.update(num_images=3, num_metric_images=12)
  images = runner.explained_images(test, config)
  np.testing.assert_array_equal(images['image'][:3], [0, 1, 2])
  drawn = images['image'][3:]
  assert len(set(drawn)) == 9 and not set(drawn) & {0, 1, 2}
  assert list(drawn) != list(range(3, 12))  # a random subset, not the next ones
  again = runner.explained_images(test, config)
  np.testing.assert_array_equal(again['image'], images['image'])
  config.num_metric_images = 3
  np.testing.assert_array_equal(
      runner.explained_images(test, config)['image'], [0, 1, 2])


def test_runner_attributes_an_uneven_batch_and_its_deletion_curves():
  model, params, model_state = _small_cnn()
  config = _explain_config()
  explainer = explainer_lib.Explainer(model, model_state, config)
  images, _, targets = _images_and_weights(batch=5)  # not a multiple of 8
  key = jax.random.key(0)
  run = runner.Runner(explainer, mesh_lib.make_mesh(), key)
  source = {'image': np.asarray(images), 'target': np.asarray(targets)}
  attributed = runner.attribute(run, params, source, ('saliency',))
  assert set(attributed.maps) == {'saliency', 'random'}
  maps = attributed.maps['saliency']
  chex.assert_shape(maps, (5, 8, 8))
  chex.assert_trees_all_close(
      maps, explainer.maps['saliency'](params, images, targets, key),
      atol=1e-5, rtol=1e-4)
  curves = explainer.deletion_curve(params, images, targets, maps, False)
  chex.assert_trees_all_close(attributed.curves['deletion']['saliency'],
                              curves.mean(axis=1), atol=1e-5)
  chex.assert_trees_all_close(
      attributed.metrics['deletion_auc/saliency'],
      float(attribution.curve_auc(curves).mean()), atol=1e-5)
  chex.assert_shape(attributed.curves['insertion']['random'],
                    (config.deletion.steps + 1,))


def test_train_and_evaluate_explains_a_trained_digits_classifier(tmp_path):
  config = config_lib.get_config('quick')
  config.num_steps = 100
  config.eval_every = 100
  config.plots = False
  config.num_images = 4
  config.num_metric_images = 16
  config.smoothgrad.num_samples = 4
  config.integrated_gradients.steps = 16
  config.lime.num_samples = 64
  config.activation_maximization.steps = 20
  config.activation_maximization.num_channels = 2
  config.filters.num_channels = 4
  config.num_devices = 2
  config.methods = config_lib.METHODS  # the quick variant may leave some out
  config.surrogate.depths = (2, 16)
  result = train.train_and_evaluate(config, str(tmp_path))
  metrics = result.metrics
  assert metrics['classifier/test/accuracy'] > 0.8
  for name in explainer_lib.ATTRIBUTION_METHODS + ('random',):
    assert 0.0 <= metrics[f'deletion_auc/{name}'] <= 1.0
    assert 0.0 <= metrics[f'insertion_auc/{name}'] <= 1.0
  # A faithful ranking deletes the evidence faster than a random one.
  assert (metrics['deletion_auc/integrated_gradients'] <
          metrics['deletion_auc/random'])
  assert metrics['integrated_gradients/completeness_relative_error'] < 0.05
  assert metrics['activation_maximization/class_logit_gain'] > 0
  assert metrics['sanity/saliency/rank_correlation_all_layers'] < 0.9
  assert (metrics['surrogate/depth_2/fidelity'] <=
          metrics['surrogate/depth_16/fidelity'] <= 1.0)
  for png in ('attributions', 'deletion_curves', 'insertion_curves',
              'filters', 'activations', 'activation_maximization',
              'sanity_check', 'sanity_maps', 'surrogate'):
    assert (tmp_path / f'{png}.png').stat().st_size > 1000, png
  results = (tmp_path / 'results.md').read_text()
  for name in ('lime', 'guided_backprop', 'lrp', 'deeplift'):
    assert f"| {name} | {metrics[f'deletion_auc/{name}']:.3g} |" in results
  assert (f"| 16 | {metrics['surrogate/depth_16/leaves']:.0f} | "
          f"{metrics['surrogate/depth_16/fidelity']:.3g} |") in results
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary[config.tour.metric] == metrics[config.tour.metric]
  assert config.tour.baseline in metrics
  # A second run restores the trained classifier: no training step runs, and
  # its stage's records and summary stay as the first run left them.
  stage = tmp_path / 'classifier'
  before = [(stage / name).read_text() for name in ('summary.json',
                                                    'metrics.jsonl')]
  config.methods = ('saliency',)
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again.metrics['classifier/test/accuracy'] == metrics[
      'classifier/test/accuracy']
  assert set(again.metrics) < set(metrics)
  assert [(stage / name).read_text() for name in ('summary.json',
                                                  'metrics.jsonl')] == before
  assert json.loads(before[0])['step'] == config.num_steps


def test_launcher_rejects_an_unknown_method_in_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'launch.train',
       '--config=projects/explainable/config.py:quick',
       f'--workdir={tmp_path}', '--config.methods=saliency,tarot'],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr
  assert 'config.methods' in result.stderr
  # The comma list arrived as one value; the error shows the tuple form.
  assert "--config.methods=('saliency', 'tarot')" in result.stderr
  assert not list(tmp_path.iterdir())
