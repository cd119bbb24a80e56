"""2-D convolution whose gradients stay on XLA's fast CPU kernels inside loops.

XLA's CPU backend runs a convolution with its Eigen kernels only in canonical
form (NHWC input, HWIO kernel, NHWC output). The gradient convolutions that
JAX's autodiff emits are not canonical (the input gradient swaps the kernel's
I and O, the kernel gradient treats the batch as features), and the pass that
transposes them into canonical form (`ConvCanonicalization`) visits only the
top-level computation. Inside any `while` body (`lax.fori_loop`, `lax.scan`,
`lax.map`: attack steps, SmoothGrad samples, MAML's inner loop) they run as
naive loop nests, 2-3x slower per step. `conv_general_dilated` here writes the
gradients as explicitly transposed canonical convolutions, so they are fast
everywhere; outside loops it compiles to what XLA's own canonicalization makes.

It is a drop-in for `lax.conv_general_dilated` (flax: `nn.Conv(...,
conv_general_dilated=conv.conv_general_dilated)`, or `Conv` below). Only the
case every model here uses is rewritten: 4-D NHWC/HWIO, no dilation, no
groups; anything else goes to `lax.conv_general_dilated` unchanged. Being a
`jax.custom_vjp`, the rewritten case supports reverse mode to any order
(grad of grad, as MAML needs) but not forward mode (`jax.jvp`, `jax.hessian`).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, with loop-friendly gradients for NHWC/HWIO."""
  fallback = functools.partial(
      lax.conv_general_dilated, lhs, rhs, window_strides, padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  if (lhs.ndim != 4 or feature_group_count != 1 or batch_group_count != 1
      or preferred_element_type is not None
      or any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
      or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    return fallback()
  strides = tuple(window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides,
                                  padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _conv(lhs, rhs, strides, pads, precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, kernel, strides, pads, precision):
  return lax.conv_general_dilated(x, kernel, strides, pads,
                                  dimension_numbers=_NHWC, precision=precision)


def _conv_fwd(x, kernel, strides, pads, precision):
  return _conv(x, kernel, strides, pads, precision), (x, kernel)


def _conv_bwd(strides, pads, precision, residuals, g):
  x, kernel = residuals
  sizes, window = x.shape[1:3], kernel.shape[:2]
  # Rows (columns) of the padded input past the last window, per dimension.
  rest = [(n + lo + hi - k) % s for n, (lo, hi), k, s in
          zip(sizes, pads, window, strides)]
  # d/dx: the output gradient, dilated by the strides, convolved with the
  # flipped kernel whose I and O are swapped.
  dx_pads = [(k - 1 - lo, k - 1 - hi + r) for (lo, hi), k, r in
             zip(pads, window, rest)]
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = conv_general_dilated(g, flipped, (1, 1), dx_pads, lhs_dilation=strides,
                            dimension_numbers=_NHWC, precision=precision)
  # d/dkernel: channels as the batch, the batch as features, and the output
  # gradient (dilated by the strides) as the kernel.
  dk_pads = [(lo, hi - r) for (lo, hi), r in zip(pads, rest)]
  dk = conv_general_dilated(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3),
                            (1, 1), dk_pads, rhs_dilation=strides,
                            dimension_numbers=_NHWC, precision=precision)
  return dx, dk.transpose(1, 2, 0, 3)


_conv.defvjp(_conv_fwd, _conv_bwd)

Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
