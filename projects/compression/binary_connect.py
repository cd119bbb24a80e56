"""BinaryConnect (Courbariaux et al. 2015): binary weights in the forward pass.

Every kernel (conv filters and weight matrices) runs as sign(w) times a
per-output-channel scale, the mean |w| of that channel (XNOR-Net's; the paper
had none, which the batch norm after each conv absorbs but the head's logits
would not); biases and batch norm stay float32. The gradient of the binarized
weights passes straight through to the real-valued ones, which accumulate the
updates and are clipped to [-1, 1] after each step (`clip_kernels`).
"""

import jax
import jax.numpy as jnp
import optax

from projects.compression import measure
from projects.compression import quantization


def binarize(kernel: jax.Array) -> jax.Array:
  """sign(kernel) x each output channel's mean |kernel|, with the identity's
  gradient (straight through)."""
  axes = tuple(range(kernel.ndim - 1))
  scale = jnp.mean(jnp.abs(kernel), axis=axes, keepdims=True)
  binary = jnp.where(kernel >= 0, scale, -scale)
  return kernel + jax.lax.stop_gradient(binary - kernel)


def binarize_kernels(params):
  return jax.tree_util.tree_map_with_path(
      lambda path, p: binarize(p) if measure.is_kernel(path, p) else p, params)


def clip_kernels(limit: float = 1.0) -> optax.GradientTransformation:
  """Updates that leave every kernel within [-limit, limit] (chain it last)."""

  def update(updates, state, params):
    return jax.tree_util.tree_map_with_path(
        lambda path, u, p: jnp.clip(p + u, -limit, limit) - p
        if measure.is_kernel(path, p) else u, updates, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(),
                                      update)


def binarized_fns(loss_fn, eval_fn):
  """lib.steps' (loss_fn, eval_fn) run on the binarized kernels."""

  def binary_loss(params, model_state, batch, key):
    return loss_fn(binarize_kernels(params), model_state, batch, key)

  def binary_eval(params, model_state, batch):
    return eval_fn(binarize_kernels(params), model_state, batch)

  return binary_loss, binary_eval


def binary_bytes(variables) -> int:
  """1 bit per kernel weight plus a float32 scale per output channel; every
  other array as stored."""
  return quantization.quantized_bytes(
      variables, 2, per_channel=True, kernel_bytes=lambda q: -(-q.size // 8))
