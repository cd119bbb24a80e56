"""The two players: MLPs for 2-D mixtures, DCGAN-shaped convnets for images.

Both players take class labels (None for an unconditional GAN). A
conditional generator appends a learned class embedding to its latent; a
conditional discriminator is a projection discriminator (Miyato & Koyama
2018): score = w . phi(x) + embed(y) . phi(x).
"""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from lib import generative
from lib import models

class MLPFeatures(nn.Module):
  """x -> its last hidden layer, optionally spectrally normalized."""
  hidden: tuple[int, ...]
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.leaky_relu(generative.spectrally_normalized(
          nn.Dense(width), self.spectral_norm, train)(x), 0.2)
    return x


class Generator(nn.Module):
  """(z, labels) -> a sample; `body` maps the (label-extended) latent."""
  body: nn.Module
  num_classes: int = 0

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = False):
    if self.num_classes:
      z = jnp.concatenate([z, nn.Embed(self.num_classes, z.shape[-1])(labels)],
                          axis=-1)
    return self.body(z, train=train)


class Discriminator(nn.Module):
  """(x, labels) -> one score per example [N]; `body` gives features."""
  body: nn.Module
  num_classes: int = 0
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = False):
    features = nn.leaky_relu(self.body(x, train=train), 0.2)
    score = generative.spectrally_normalized(
        nn.Dense(1), self.spectral_norm, train)(features)[:, 0]
    if self.num_classes:
      embedding = nn.Embed(self.num_classes, features.shape[-1])(labels)
      score = score + jnp.sum(embedding * features, axis=-1)
    return score


def make_players(config: ml_collections.ConfigDict, sample_shape: tuple,
                 num_classes: int) -> tuple[Generator, Discriminator]:
  """The generator and discriminator of `config.model` for samples of
  `sample_shape`: MLPs for 2-D points (2,), convnets for images (H, W, C)."""
  m = config.model
  classes = num_classes if config.conditional else 0
  sn = config.spectral_norm
  if len(sample_shape) == 1:
    g_body = models.MLP(tuple(m.hidden), num_outputs=sample_shape[-1])
    d_body = MLPFeatures(tuple(m.hidden), spectral_norm=sn)
  else:
    size, _, channels = sample_shape
    g_body = generative.ConvDecoder(size, channels, width=m.width,
                                    norm=m.g_norm, output='tanh')
    d_body = generative.ConvEncoder(m.features, width=m.width, norm=m.d_norm,
                                    activation=lambda x: nn.leaky_relu(x, 0.2),
                                    spectral_norm=sn)
  return (Generator(g_body, classes),
          Discriminator(d_body, classes, spectral_norm=sn))
