"""The attribution methods applied to a trained flax classifier, each jitted once.

`Explainer(model, model_state, config)` turns lib.models' image classifiers
into the functions that projects/explainable/attribution.py explains:
`logits(params, images)` and `feature_logits(params, images, delta)` (the
last feature map A, seen through the 'intermediates' collection, and the
logits computed from A + delta through the 'perturbations' collection). Its
`maps[method](params, images, targets, key) -> [B, H, W]` are jitted with the
parameters as an argument, so the sanity check's randomized models reuse them.

The backward-rule methods run the same parameters through modified models:
guided backprop and DeepLIFT through `model.clone(activation=...)` (lib.models'
image classifiers take their ReLU as a field), LRP through flax's
`nn.intercept_methods`, which marks every Dense/Conv/BatchNorm output.
"""

import functools

import flax.linen as nn
import jax
import ml_collections

from projects.explainable import attribution

ATTRIBUTION_METHODS = ('saliency', 'smoothgrad', 'integrated_gradients',
                       'grad_cam', 'occlusion', 'lime', 'guided_backprop',
                       'lrp', 'deeplift')
# Methods whose maps are signed (red: for the class, blue: against it).
SIGNED_METHODS = ('integrated_gradients', 'occlusion', 'lime', 'lrp',
                  'deeplift')
# The affine layers whose outputs LRP's epsilon rule stabilizes (BatchNorm in
# eval mode is an affine map per channel).
AFFINE_LAYERS = (nn.Dense, nn.Conv, nn.BatchNorm)


def lrp_interceptor(epsilon: float):
  """A flax method interceptor marking affine layers' outputs for LRP."""
  def intercept(next_fun, args, kwargs, context):
    outputs = next_fun(*args, **kwargs)
    if (context.method_name == '__call__' and
        isinstance(context.module, AFFINE_LAYERS)):
      return attribution.epsilon_stabilized(outputs, epsilon)
    return outputs
  return intercept


def with_activation(model: nn.Module, activation) -> nn.Module:
  """`model` with its ReLUs replaced (lib.models' `activation` field)."""
  if not hasattr(model, 'activation'):
    raise ValueError(f'{type(model).__name__} has no activation field: '
                     'guided backprop and DeepLIFT need one')
  return model.clone(activation=activation)


class Explainer:
  """Jitted attribution maps of `model` (eval mode) configured by `config`."""

  def __init__(self, model: nn.Module, model_state: dict,
               config: ml_collections.ConfigDict):
    self.model = model
    self.model_state = model_state
    self.config = config
    chunk = config.chunk or None
    ig = config.integrated_gradients
    sg = config.smoothgrad
    occ = config.occlusion
    lime_config = config.lime

    def saliency(params, images, targets, key):
      del key
      return attribution.saliency(functools.partial(self.logits, params),
                                  images, targets)

    def smoothgrad(params, images, targets, key):
      return attribution.smoothgrad(
          functools.partial(self.logits, params), images, targets, key,
          num_samples=sg.num_samples, noise_level=sg.noise_level, chunk=chunk)

    def ig_maps(params, images, targets, key):
      del key
      return self.integrated_gradients(params, images, targets).sum(axis=-1)

    def grad_cam(params, images, targets, key):
      del key
      return attribution.grad_cam(
          functools.partial(self.feature_logits, params), images, targets)

    def occlusion(params, images, targets, key):
      del key
      return attribution.occlusion(
          functools.partial(self.logits, params), images, targets,
          patch=occ.patch, stride=occ.stride,
          fill=self.fill(images, occ.fill), chunk=chunk)

    def lime(params, images, targets, key):
      maps, _ = attribution.lime(
          functools.partial(self.logits, params), images, targets, key,
          grid=lime_config.grid, num_samples=lime_config.num_samples,
          kernel_width=lime_config.kernel_width, ridge=lime_config.ridge,
          fill=self.fill(images, lime_config.fill),
          output=lime_config.output, chunk=chunk)
      return maps

    def guided_backprop(params, images, targets, key):
      del key
      guided = with_activation(self.model, attribution.guided_relu)
      return attribution.guided_backprop(
          functools.partial(self.logits, params, model=guided), images,
          targets)

    def lrp(params, images, targets, key):
      del key
      return self.lrp(params, images, targets).sum(axis=-1)

    def deeplift(params, images, targets, key):
      del key
      return self.deeplift(params, images, targets).sum(axis=-1)

    def lrp_relevance(params, images, targets):
      def stabilized_logits(x):
        with nn.intercept_methods(lrp_interceptor(config.lrp.epsilon)):
          return self.logits(params, x)
      return attribution.lrp_epsilon(stabilized_logits, images, targets)

    def deeplift_attributions(params, images, targets):
      rescaled = with_activation(self.model, attribution.rescale_relu)
      return attribution.deeplift_rescale(
          functools.partial(self.logits, params, model=rescaled), images,
          targets, self.fill(images, config.deeplift.baseline))

    def ig_attributions(params, images, targets):
      return attribution.integrated_gradients(
          functools.partial(self.logits, params), images, targets,
          self.fill(images, ig.baseline), steps=ig.steps, rule=ig.rule,
          chunk=chunk)

    def completeness(params, images, targets, attributions):
      return attribution.completeness_gap(
          functools.partial(self.logits, params), images, targets,
          self.fill(images, ig.baseline), attributions)

    def deletion(params, images, targets, maps, insertion):
      return attribution.deletion_curve(
          functools.partial(self.logits, params), images, targets, maps,
          steps=config.deletion.steps,
          fill=self.fill(images, config.deletion.fill), insertion=insertion,
          chunk=chunk)

    self.integrated_gradients = jax.jit(ig_attributions)
    self.lrp = jax.jit(lrp_relevance)
    self.deeplift = jax.jit(deeplift_attributions)
    self.completeness_gap = jax.jit(completeness)
    self.deletion_curve = jax.jit(deletion, static_argnames='insertion')
    self.maps = {name: jax.jit(fn) for name, fn in (
        ('saliency', saliency), ('smoothgrad', smoothgrad),
        ('integrated_gradients', ig_maps), ('grad_cam', grad_cam),
        ('occlusion', occlusion), ('lime', lime),
        ('guided_backprop', guided_backprop), ('lrp', lrp),
        ('deeplift', deeplift))}

  def logits(self, params, images, model: nn.Module | None = None):
    """The logits of `model` (default: the explained one) in eval mode."""
    model = self.model if model is None else model
    return model.apply({'params': params, **self.model_state}, images,
                       train=False)

  def feature_logits(self, params, images, delta):
    """(logits from A + delta, A): lib.models perturb and sow 'features'."""
    variables = {'params': params, **self.model_state,
                 'perturbations': {'features': delta}}
    logits, state = self.model.apply(variables, images, train=False,
                                     mutable=['intermediates'])
    return logits, state['intermediates']['features'][0]

  def fill(self, images, kind: str):
    return attribution.make_baseline(
        images, kind, blur_sigma=self.config.blur_sigma)


def feature_scores(model: nn.Module, model_state: dict, params, images):
  """Spatial means of the last feature map's channels: [B, K]."""
  _, state = model.apply({'params': params, **model_state}, images,
                         train=False, mutable=['intermediates'])
  return state['intermediates']['features'][0].mean(axis=(1, 2))
