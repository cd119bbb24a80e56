"""The lecture's auto-encoders as one flax module: an encoder, a decoder, a codebook.

`kind` decides what the encoder's vector means: the code itself (ae, dae),
a Gaussian's mean and log-variance (vae), or `num_latents` vectors to be
quantized against a codebook of `num_codes` entries (vqvae). The decoder
returns logits; sigmoid(logits) is the reconstruction in [0, 1].
"""

import math

import flax.linen as nn
import jax
import ml_collections

from lib import generative
from lib import models


def encoder_width(kind: str, latent_dim: int, num_latents: int) -> int:
  if kind == 'vae':
    return 2 * latent_dim
  if kind == 'vqvae':
    return num_latents * latent_dim
  return latent_dim


class AutoEncoder(nn.Module):
  kind: str
  image_shape: tuple[int, int, int]
  encoder_kind: str = 'mlp'
  decoder_kind: str = 'mlp'
  hidden: tuple[int, ...] = (256, 128)
  width: int = 32
  latent_dim: int = 16
  num_codes: int = 64
  num_latents: int = 8

  def setup(self):
    outputs = encoder_width(self.kind, self.latent_dim, self.num_latents)
    if self.encoder_kind == 'mlp':
      self.encoder = models.MLP(tuple(self.hidden), outputs)
    else:
      self.encoder = generative.ConvEncoder(outputs, width=self.width)
    height, _, channels = self.image_shape
    if self.decoder_kind == 'mlp':
      self.decoder = models.MLP(tuple(self.hidden)[::-1],
                                math.prod(self.image_shape))
    else:
      self.decoder = generative.ConvDecoder(
          height, channels, width=self.width, norm='none', output='none')
    if self.kind == 'vqvae':
      # Small entries, as the VQ-VAE reference code's uniform(-1/K, 1/K):
      # entries far from the encoder's first outputs are never chosen.
      scale = 1.0 / self.num_codes
      self.codebook = self.param(
          'codebook', lambda key, shape: jax.random.uniform(
              key, shape, minval=-scale, maxval=scale),
          (self.num_codes, self.latent_dim))

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    """Latent (N, D) -> logits (N, H, W, C)."""
    return self.decoder(z).reshape((z.shape[0], *self.image_shape))

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    z = self.encode(x)
    if self.kind == 'vae':
      z = z[:, :self.latent_dim]
    return self.decode(z)


def make_model(config: ml_collections.ConfigDict,
               image_shape: tuple[int, int, int]) -> AutoEncoder:
  m = config.model
  return AutoEncoder(
      kind=m.kind, image_shape=tuple(image_shape), encoder_kind=m.encoder,
      decoder_kind=m.decoder, hidden=tuple(m.hidden), width=m.width,
      latent_dim=m.latent_dim, num_codes=m.num_codes,
      num_latents=m.num_latents)
