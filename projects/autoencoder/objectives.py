"""Losses and scores of the auto-encoders: reconstruction, the ELBO, IWAE, vector quantization.

`make_fns(config, model)` gives the loss and eval pair of lib.steps'
contract; `score_fn` gives per-example anomaly scores and features; the
pieces (KL, quantization, the importance-weighted bound) are tested alone.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

_LOG_2PI = math.log(2 * math.pi)
_IMAGE_AXES = (-3, -2, -1)  # (H, W, C)


def _call(model, params, method: str, x):
  return model.apply({'params': params}, x, method=method)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, I)) per example, in closed form."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x | logits) per image, summed over its pixels (x in [0, 1])."""
  return -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x),
                  axis=_IMAGE_AXES)


def squared_error(logits: jax.Array, x: jax.Array) -> jax.Array:
  """Mean squared error of sigmoid(logits) against x, per image."""
  return jnp.mean((jax.nn.sigmoid(logits) - x)**2, axis=_IMAGE_AXES)


def quantize(z_e: jax.Array, codebook: jax.Array):
  """Nearest codebook entries of `z_e` (..., D): (indices, quantized vectors)."""
  distances = (jnp.sum(z_e**2, -1, keepdims=True) - 2 * z_e @ codebook.T +
               jnp.sum(codebook**2, -1))
  indices = jnp.argmin(distances, -1)
  return indices, codebook[indices]


def straight_through(z_e: jax.Array, z_q: jax.Array) -> jax.Array:
  """z_q in the forward pass; the identity's gradient to z_e in the backward."""
  return z_e + jax.lax.stop_gradient(z_q - z_e)


def vq_losses(z_e: jax.Array, z_q: jax.Array):
  """(codebook loss, commitment loss): each moves one side towards the other."""
  codebook = jnp.mean((jax.lax.stop_gradient(z_e) - z_q)**2)
  commitment = jnp.mean((z_e - jax.lax.stop_gradient(z_q))**2)
  return codebook, commitment


def split_gaussian(stats: jax.Array):
  mean, logvar = jnp.split(stats, 2, axis=-1)
  return mean, jnp.clip(logvar, -12.0, 8.0)


def elbo_terms(model, params, x, key):
  """(log p(x|z), KL) per example for one reparameterized sample z."""
  mean, logvar = split_gaussian(_call(model, params, 'encode', x))
  z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
  logits = _call(model, params, 'decode', z)
  return bernoulli_log_likelihood(logits, x), gaussian_kl(mean, logvar)


def iwae_log_likelihood(model, params, x, key, num_samples: int,
                        chunk: int) -> jax.Array:
  """The importance-weighted bound log 1/k sum_k p(x, z_k) / q(z_k | x), per
  example (k = num_samples; k = 1 is the ELBO), drawn `chunk` samples at a time."""
  mean, logvar = split_gaussian(_call(model, params, 'encode', x))
  chunk = min(chunk, num_samples)
  num_chunks = -(-num_samples // chunk)

  def log_weights(key):
    eps = jax.random.normal(key, (chunk, *mean.shape))
    z = mean + jnp.exp(0.5 * logvar) * eps
    logits = _call(model, params, 'decode', z.reshape(-1, mean.shape[-1]))
    log_px = bernoulli_log_likelihood(logits.reshape(chunk, *x.shape), x)
    log_pz = -0.5 * jnp.sum(z**2 + _LOG_2PI, -1)
    log_qz = -0.5 * jnp.sum(eps**2 + _LOG_2PI + logvar, -1)
    return log_px + log_pz - log_qz  # (chunk, N)

  weights = jax.lax.map(log_weights, jax.random.split(key, num_chunks))
  weights = weights.reshape(num_chunks * chunk, -1)[:num_samples]
  return jax.nn.logsumexp(weights, 0) - math.log(num_samples)


def binarize(key, x: jax.Array) -> jax.Array:
  """A Bernoulli draw with each pixel's intensity as its probability."""
  return jax.random.bernoulli(key, x).astype(x.dtype)


def kl_weight(config: ml_collections.ConfigDict, step) -> jax.Array:
  if not config.kl_warmup_steps:
    return jnp.asarray(config.kl_weight, jnp.float32)
  ramp = jnp.minimum(1.0, step / config.kl_warmup_steps)
  return config.kl_weight * ramp


def _reconstruction_loss(config, logits, x):
  if config.reconstruction == 'bce':
    return -jnp.mean(bernoulli_log_likelihood(logits, x)) / math.prod(
        x.shape[1:])
  return jnp.mean(squared_error(logits, x))


def make_fns(config: ml_collections.ConfigDict, model):
  """(loss_fn(params, model_state, batch, key, step), eval_fn) for lib.steps."""
  kind = model.kind

  def loss_fn(params, model_state, batch, key, step):
    noise_key, sample_key, binarize_key = jax.random.split(key, 3)
    x = batch['image']
    if config.data.binarize:
      x = binarize(binarize_key, x)
    if kind == 'vae':
      log_px, kl = elbo_terms(model, params, x, sample_key)
      elbo = jnp.mean(log_px - kl)
      loss = -jnp.mean(log_px - kl_weight(config, step) * kl)
      return loss, ({'elbo': elbo, 'kl': jnp.mean(kl)}, model_state)
    inputs = x
    if kind == 'dae':
      inputs = x + config.noise_std * jax.random.normal(noise_key, x.shape)
    z = _call(model, params, 'encode', inputs)
    metrics = {}
    extra = 0.0
    if kind == 'vqvae':
      z_e = z.reshape(z.shape[0], model.num_latents, model.latent_dim)
      indices, z_q = quantize(z_e, params['codebook'])
      codebook_loss, commitment = vq_losses(z_e, z_q)
      extra = codebook_loss + config.commitment * commitment
      z = straight_through(z_e, z_q).reshape(z.shape)
      usage = jnp.mean(jax.nn.one_hot(indices, model.num_codes), (0, 1))
      metrics['code_perplexity'] = jnp.exp(
          -jnp.sum(usage * jnp.log(usage + 1e-10)))
    logits = _call(model, params, 'decode', z)
    reconstruction = _reconstruction_loss(config, logits, x)
    metrics['reconstruction_error'] = jnp.mean(squared_error(logits, x))
    return reconstruction + extra, (metrics, model_state)

  def eval_fn(params, model_state, batch):
    del model_state
    return per_example(config, model, params, batch['image'],
                       jax.random.key(0))

  return loss_fn, eval_fn


def reconstruct(model, params, x) -> tuple[jax.Array, jax.Array]:
  """(logits of the deterministic reconstruction, the features it came from)."""
  z = _call(model, params, 'encode', x)
  if model.kind == 'vae':
    z = split_gaussian(z)[0]
  features = z
  if model.kind == 'vqvae':
    z_e = z.reshape(z.shape[0], model.num_latents, model.latent_dim)
    z = quantize(z_e, params['codebook'])[1].reshape(z.shape)
  return _call(model, params, 'decode', z), features


def per_example(config, model, params, x, key) -> dict[str, jax.Array]:
  """Per-example reconstruction error (and the ELBO for a VAE)."""
  logits, _ = reconstruct(model, params, x)
  out = {'reconstruction_error': squared_error(logits, x)}
  if model.kind == 'vae':
    elbos = [log_px - kl for log_px, kl in (
        elbo_terms(model, params, x, k)
        for k in jax.random.split(key, config.score_samples))]
    out['elbo'] = jnp.mean(jnp.stack(elbos), 0)
  return out


def score_name(config: ml_collections.ConfigDict) -> str:
  if config.score == 'auto':
    return 'elbo' if config.model.kind == 'vae' else 'reconstruction'
  return config.score


def score_fn(config: ml_collections.ConfigDict, model):
  """fn(params, batch, key) -> {'score': higher is more anomalous, 'features'}."""
  name = score_name(config)

  def fn(params, batch, key):
    x = batch['image']
    out = per_example(config, model, params, x, key)
    score = -out['elbo'] if name == 'elbo' else out['reconstruction_error']
    _, features = reconstruct(model, params, x)
    return {'score': score, 'features': features}

  return fn
