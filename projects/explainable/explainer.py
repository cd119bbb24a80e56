"""The attribution methods applied to a trained flax classifier, each jitted once.

`Explainer(model, model_state, config)` turns lib.models' image classifiers
into the functions that projects/explainable/attribution.py explains:
`logits(params, images)` and `feature_logits(params, images, delta)` (the
last feature map A, seen through the 'intermediates' collection, and the
logits computed from A + delta through the 'perturbations' collection). Its
`maps[method](params, images, targets, key) -> [B, H, W]` are jitted with the
parameters as an argument, so the sanity check's randomized models reuse them.
"""

import functools

import flax.linen as nn
import jax
import ml_collections

from projects.explainable import attribution

ATTRIBUTION_METHODS = ('saliency', 'smoothgrad', 'integrated_gradients',
                       'grad_cam', 'occlusion', 'lime')
# Methods whose maps are signed (red: for the class, blue: against it).
SIGNED_METHODS = ('integrated_gradients', 'occlusion', 'lime')


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
    self.completeness_gap = jax.jit(completeness)
    self.deletion_curve = jax.jit(deletion, static_argnames='insertion')
    self.maps = {name: jax.jit(fn) for name, fn in (
        ('saliency', saliency), ('smoothgrad', smoothgrad),
        ('integrated_gradients', ig_maps), ('grad_cam', grad_cam),
        ('occlusion', occlusion), ('lime', lime))}

  def logits(self, params, images):
    return self.model.apply({'params': params, **self.model_state}, images,
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
