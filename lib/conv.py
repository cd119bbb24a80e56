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
case every model here uses is rewritten: 4-D NHWC/HWIO, no groups; anything
else goes to `lax.conv_general_dilated` unchanged. Input and kernel dilations
are rewritten too, because a strided convolution's gradients are dilated
ones: a second derivative (a gradient of a gradient, as MAML and WGAN-GP's
penalty take) stays canonical only if those are. Being a `jax.custom_vjp`,
the rewritten case supports reverse mode to any order but not forward mode
(`jax.jvp`, `jax.hessian`).
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
  if (lhs.ndim != 4 or feature_group_count != 1 or batch_group_count != 1
      or preferred_element_type is not None
      or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  strides = tuple(window_strides)
  lhs_dilation = tuple(lhs_dilation or (1, 1))
  rhs_dilation = tuple(rhs_dilation or (1, 1))
  if isinstance(padding, str):  # as lax: the dilated window, undilated input
    padding = lax.padtype_to_pads(
        lhs.shape[1:3], _dilate(rhs.shape[:2], rhs_dilation), strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _conv(lhs, rhs, strides, pads, lhs_dilation, rhs_dilation, precision)


def _dilate(sizes, dilation):
  """Sizes after putting dilation - 1 zeros between neighbours."""
  return [0 if n == 0 else 1 + d * (n - 1) for n, d in zip(sizes, dilation)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x, kernel, strides, pads, lhs_dilation, rhs_dilation, precision):
  return lax.conv_general_dilated(
      x, kernel, strides, pads, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=_NHWC, precision=precision)


def _conv_fwd(x, kernel, strides, pads, lhs_dilation, rhs_dilation, precision):
  return _conv(x, kernel, strides, pads, lhs_dilation, rhs_dilation,
               precision), (x, kernel)


def _conv_bwd(strides, pads, lhs_dilation, rhs_dilation, precision,
              residuals, g):
  """lax's transpose rules, written as canonical (NHWC/HWIO) convolutions."""
  x, kernel = residuals
  sizes = _dilate(x.shape[1:3], lhs_dilation)
  window = _dilate(kernel.shape[:2], rhs_dilation)
  out_sizes = _dilate(g.shape[1:3], strides)
  # d/dx: the output gradient, dilated by the strides, convolved with the
  # flipped kernel whose I and O are swapped, strided by the input dilation.
  dx_pads = [(k - 1 - lo, n - o + lo) for n, k, o, (lo, _) in
             zip(sizes, window, out_sizes, pads)]
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = conv_general_dilated(
      g, flipped, lhs_dilation, dx_pads, lhs_dilation=strides,
      rhs_dilation=rhs_dilation, dimension_numbers=_NHWC, precision=precision)
  # d/dkernel: channels as the batch, the batch as features, and the output
  # gradient (dilated by the strides) as the kernel. An input dilation is
  # written out, with the padding, as zeros: XLA swaps the operands of a
  # convolution whose kernel is larger than its (undilated, unpadded) input
  # into a reversed, non-canonical one that runs as a naive loop nest; here
  # that is the kernel gradient of a strided convolution's input gradient,
  # which second derivatives (WGAN-GP's penalty) take.
  dk_pads = [(lo, o - n + k - lo - 1) for n, k, o, (lo, _) in
             zip(sizes, window, out_sizes, pads)]
  if lhs_dilation != (1, 1):
    x = lax.pad(x, jnp.zeros((), x.dtype),
                ((0, 0, 0), (*dk_pads[0], lhs_dilation[0] - 1),
                 (*dk_pads[1], lhs_dilation[1] - 1), (0, 0, 0)))
    dk_pads = [(0, 0), (0, 0)]
  dk = conv_general_dilated(
      x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), rhs_dilation, dk_pads,
      rhs_dilation=strides, dimension_numbers=_NHWC, precision=precision)
  return dx, dk.transpose(1, 2, 0, 3)


_conv.defvjp(_conv_fwd, _conv_bwd)

Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
