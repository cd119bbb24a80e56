"""Post-training weight quantization and weight clustering.

Quantization: symmetric uniform, per output channel (or per tensor), to
`bits` bits: q = clip(round(w / s), -(2^(b-1) - 1), 2^(b-1) - 1) with
s = max|w| / (2^(b-1) - 1). `fake_quantize` gives the float weights the
quantized model computes with (for accuracy); `quantized_bytes` stores the
integers bit-packed with `pack_bits` plus one float32 scale per channel.

Clustering (Han et al. 2016's weight sharing): 1-D k-means on each kernel's
weights, k = 2^bits; each weight becomes its centroid, stored as a `bits`-bit
index into a float32 codebook.

Each kernel is compressed by one jitted function per shape and setting.
Only kernels (conv filters, weight matrices) are compressed; biases and batch
norm stay float32 and are counted as such.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from projects.compression import measure


def _check_bits(bits: int):
  if not 2 <= bits <= 8:
    raise ValueError(f'bits={bits} must be in [2, 8]')


@functools.partial(jax.jit, static_argnames=('bits', 'per_channel'))
def quantize_tensor(w: jax.Array, bits: int, per_channel: bool = True):
  """(integers int8 [w.shape], float32 scale broadcastable to w)."""
  _check_bits(bits)
  levels = 2 ** (bits - 1) - 1
  axes = tuple(range(w.ndim - 1)) if per_channel else None
  largest = jnp.max(jnp.abs(w), axis=axes, keepdims=True)
  scale = jnp.where(largest > 0, largest / levels, 1.0).astype(jnp.float32)
  q = jnp.clip(jnp.round(w / scale), -levels, levels).astype(jnp.int8)
  return q, scale


def _map_kernels(fn, tree):
  return jax.tree_util.tree_map_with_path(
      lambda path, x: fn(x) if measure.is_kernel(path, x) else x, tree)


@functools.partial(jax.jit, static_argnames=('bits', 'per_channel'))
def _dequantized(w: jax.Array, bits: int, per_channel: bool) -> jax.Array:
  q, scale = quantize_tensor(w, bits, per_channel)
  return q.astype(w.dtype) * scale


def fake_quantize(params, bits: int, per_channel: bool = True):
  """`params` with every kernel replaced by its dequantized `bits`-bit version."""
  _check_bits(bits)
  return _map_kernels(lambda w: _dequantized(w, bits, per_channel), params)


def pack_bits(q: np.ndarray, bits: int) -> np.ndarray:
  """Signed integers in [-2^(b-1), 2^(b-1)) as a uint8 stream of b bits each."""
  unsigned = (np.asarray(q, np.int16).ravel() + 2 ** (bits - 1)).astype(
      np.uint8)
  planes = np.unpackbits(unsigned[:, None], axis=1)[:, 8 - bits:]
  return np.packbits(planes.ravel())


def unpack_bits(packed: np.ndarray, bits: int, shape) -> np.ndarray:
  """The inverse of pack_bits: int8 array of `shape`."""
  count = int(np.prod(shape))
  planes = np.unpackbits(packed)[:count * bits].reshape(count, bits)
  planes = np.pad(planes, ((0, 0), (8 - bits, 0)))
  unsigned = np.packbits(planes, axis=1)[:, 0].astype(np.int16)
  return (unsigned - 2 ** (bits - 1)).astype(np.int8).reshape(shape)


def quantized_bytes(variables, bits: int, per_channel: bool = True,
                    kernel_bytes=None) -> int:
  """Bytes of the model stored with `bits`-bit kernels + float32 scales.

  `kernel_bytes(q)`: the stored size of a kernel's integers (default: packed
  at `bits` bits each).
  """
  def packed_bytes(q):
    return pack_bits(q, bits).nbytes

  kernel_bytes = kernel_bytes or packed_bytes
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    if measure.is_kernel(path, leaf):
      q, scale = quantize_tensor(jnp.asarray(leaf), bits, per_channel)
      total += kernel_bytes(np.asarray(q)) + np.asarray(scale).nbytes
    else:
      total += np.asarray(leaf).nbytes
  return total


def kmeans_1d(values: jax.Array, k: int, num_iterations: int = 30):
  """Lloyd's k-means on scalars, centroids started evenly from min to max.

  Returns (sorted codebook [k], index of each value's centroid int32 [n]).
  In 1-D the nearest centroid is found by binary search between midpoints.
  """
  values = values.ravel()
  codebook = jnp.linspace(values.min(), values.max(), k)

  def assign(codebook):
    return jnp.searchsorted((codebook[1:] + codebook[:-1]) / 2, values)

  def step(_, codebook):
    index = assign(codebook)
    sums = jax.ops.segment_sum(values, index, k)
    counts = jax.ops.segment_sum(jnp.ones_like(values), index, k)
    return jnp.sort(jnp.where(counts > 0, sums / jnp.maximum(counts, 1),
                              codebook))

  codebook = jax.lax.fori_loop(0, num_iterations, step, codebook)
  return codebook, assign(codebook).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=('bits', 'num_iterations'))
def _shared(w: jax.Array, bits: int, num_iterations: int) -> jax.Array:
  codebook, index = kmeans_1d(w, 2 ** bits, num_iterations)
  return codebook[index].reshape(w.shape).astype(w.dtype)


def cluster(params, bits: int, num_iterations: int = 30):
  """`params` with each kernel's weights replaced by their k-means centroid."""
  _check_bits(bits)
  return _map_kernels(lambda w: _shared(w, bits, num_iterations), params)


def clustered_bytes(clustered_variables, bits: int) -> int:
  """Bytes of a clustered model: each kernel as its distinct values (the
  float32 codebook) and a packed `bits`-bit index per weight."""
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(clustered_variables):
    leaf = np.asarray(leaf)
    if measure.is_kernel(path, leaf):
      codebook, index = np.unique(leaf, return_inverse=True)
      if len(codebook) > 2 ** bits:
        raise ValueError(f'{jax.tree_util.keystr(path)} has {len(codebook)} '
                         f'distinct values, more than 2^{bits}')
      total += pack_bits(index - 2 ** (bits - 1), bits).nbytes + codebook.nbytes
    else:
      total += leaf.nbytes
  return total
