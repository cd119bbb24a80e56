"""The backbone, projector and predictor, applied functionally.

The backbone is lib.models' ResNet (or SmallCNN for digits); its
representation is the global average of its last feature map, read from the
'intermediates' the model sows (its own linear head is left unused, so XLA
drops it, and fine-tuning reuses the same module with that head trained).
The projector and predictor are lib.models.MLP with batch norm.
"""

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import ml_collections

from lib import models


class Networks(NamedTuple):
  backbone: nn.Module
  projector: nn.Module
  predictor: nn.Module | None


def make_networks(config: ml_collections.ConfigDict, num_classes: int,
                  predictor: bool) -> Networks:
  head = config.head
  return Networks(
      backbone=models.make_image_classifier(config.model, num_classes),
      projector=models.MLP((head.hidden,) * head.projector_layers,
                           head.dim, batch_norm=True),
      predictor=models.MLP((head.predictor_hidden,), head.dim,
                           batch_norm=True) if predictor else None)


def embed(backbone: nn.Module, params, model_state, images, *, train: bool):
  """(features [B, D], new model_state): the pooled last feature map."""
  mutable = ['intermediates', *model_state] if train else ['intermediates']
  _, variables = backbone.apply({'params': params, **model_state}, images,
                                train=train, mutable=mutable)
  variables = dict(variables)
  features = variables.pop('intermediates')['features'][0].mean(axis=(1, 2))
  return features, variables if train else model_state


def _split(variables):
  variables = {k: v for k, v in variables.items()
               if k not in ('intermediates', 'perturbations')}
  return variables.pop('params'), variables


@functools.partial(jax.jit, static_argnums=0)
def init(networks: Networks, sample_image, key):
  """(params, model_state), each {'backbone', 'projector'[, 'predictor']}.

  Compiled once per set of networks: the random baseline and every method
  start from the same draw."""
  keys = jax.random.split(key, 3)
  params, state = {}, {}
  params['backbone'], state['backbone'] = _split(
      networks.backbone.init(keys[0], sample_image, train=False))
  features = jax.eval_shape(lambda p, s: embed(
      networks.backbone, p, s, sample_image, train=False)[0],
                            params['backbone'], state['backbone'])
  sample = jax.numpy.zeros(features.shape, features.dtype)
  params['projector'], state['projector'] = _split(
      networks.projector.init(keys[1], sample, train=False))
  if networks.predictor is not None:
    sample = jax.numpy.zeros(sample.shape[:1] + (
        networks.projector.num_outputs,), sample.dtype)
    params['predictor'], state['predictor'] = _split(
        networks.predictor.init(keys[2], sample, train=False))
  return params, state
