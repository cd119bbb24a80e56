"""Size and cost of a model: parameters, FLOPs per image and bytes on disk.

FLOPs are counted analytically from shapes: every nn.Conv and nn.Dense call
is intercepted (flax's `intercept_methods`) during an abstract forward pass
(`jax.eval_shape`, nothing computed), and costs
  output elements per image x (kernel size / output channels)
multiply-adds (grouped and depthwise convs included); FLOPs = 2 x that.
Batch norm, activations and pooling are left out (under 5% for these nets).
"""

import flax.linen as nn
import jax
import numpy as np

Path = tuple[str, ...]


def layer_macs(model: nn.Module, variables, image: jax.Array,
               **call_kwargs) -> dict[Path, int]:
  """Multiply-adds per image of each Conv/Dense layer, keyed by its params path."""
  macs = {}

  def count(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if (context.method_name == '__call__'
        and isinstance(module, (nn.Conv, nn.Dense))):
      kernel = module.get_variable('params', 'kernel')
      per_output = kernel.size // kernel.shape[-1]
      path = tuple(module.path)
      macs[path] = macs.get(path, 0) + (out.size // out.shape[0]) * per_output
    return out

  with nn.intercept_methods(count):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False, **call_kwargs),
                   variables, image[:1])
  return macs


def _kernel(params, path: Path):
  for name in path:
    params = params[name]
  return params['kernel']


def flops(model: nn.Module, variables, image: jax.Array, *,
          sparse: bool = False, **call_kwargs) -> int:
  """FLOPs per image (2 x multiply-adds of convs and dense layers).

  `sparse`: each layer's count scales with its kernel's fraction of nonzero
  weights, the cost of a sparse kernel that skips zeros.
  """
  total = 0
  for path, count in layer_macs(model, variables, image,
                                **call_kwargs).items():
    if sparse:
      kernel = np.asarray(_kernel(variables['params'], path))
      count = count * np.count_nonzero(kernel) / kernel.size
    total += count
  return int(round(2 * total))


def is_kernel(path, leaf) -> bool:
  """Weight matrices and conv filters: what pruning, quantization and clustering touch."""
  name = getattr(path[-1], 'key', None)
  return name == 'kernel' and np.ndim(leaf) >= 2


def num_nonzero(params) -> int:
  return sum(int(np.count_nonzero(np.asarray(x)))
             for x in jax.tree.leaves(params))


def float_bytes(tree) -> int:
  """Bytes of every array of `tree` as stored (float32: 4 per value)."""
  return sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(tree))


def sparse_bytes(variables) -> int:
  """Bytes of a pruned model stored sparse: each kernel as its nonzero
  float32 values plus a 1-bit-per-weight mask; everything else dense."""
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    leaf = np.asarray(leaf)
    if is_kernel(path, leaf):
      nonzero = leaf != 0
      total += leaf[nonzero].nbytes + np.packbits(nonzero).nbytes
    else:
      total += leaf.nbytes
  return total
