"""Growing the network with the tasks: progressive columns and Net2WiderNet.

  pnn      Progressive Neural Networks (Rusu et al. 2016): one MLP column per
           task. Column t reads, besides its own layer k, every earlier
           column's hidden layer k through a lateral (bias-free) Dense into its
           layer k + 1; earlier columns are frozen while column t trains, and
           task t is evaluated with column t.
  net2net  Net2WiderNet (Chen et al. 2016): before each new task every hidden
           layer gains `widen_by` units, copies of random existing ones whose
           outgoing weights are shared out among the copies, so the widened
           network computes the same function (up to `noise`).

Both keep one set of parameter shapes for the whole run, so the one train step
compiles once: every column is allocated up front (a column is used from its
task on), and Net2Net's MLP has its final width from the start, the units not
yet grown held at zero (zero in and out weights: they compute nothing).
"""

import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ProgressiveColumn(nn.Module):
  """One column: Dense -> relu per hidden layer, plus laterals from `earlier`."""
  features: Sequence[int]
  num_outputs: int

  @nn.compact
  def __call__(self, x, earlier):
    """(hidden activations, logits); `earlier`: each earlier column's hiddens."""
    hiddens = []
    widths = (*self.features, self.num_outputs)
    for k, width in enumerate(widths):
      z = nn.Dense(width, name=f'layer{k}')(x)
      if k:
        for j, column in enumerate(earlier):
          z += nn.Dense(width, use_bias=False,
                        name=f'lateral{k}_from{j}')(column[k - 1])
      if k == len(self.features):
        return hiddens, z
      x = nn.relu(z)
      hiddens.append(x)


class ProgressiveMLP(nn.Module):
  """`num_columns` columns; the logits of `column` (a Python int; default the last)."""
  features: Sequence[int]
  num_outputs: int
  num_columns: int

  @nn.compact
  def __call__(self, x, column: int | None = None, *, train: bool = False):
    del train
    x = x.reshape((x.shape[0], -1))
    last = self.num_columns - 1 if column is None else column
    earlier = []
    for c in range(last + 1):
      hiddens, logits = ProgressiveColumn(self.features, self.num_outputs,
                                          name=f'column_{c}')(x, earlier)
      earlier.append(jax.lax.stop_gradient(hiddens))  # frozen for later ones
    return logits


def column_apply(model: ProgressiveMLP):
  """apply(params, x, column) for a traced column: computes columns 0..column only."""
  def apply(params, x, column):
    branches = [lambda p, x, c=c: model.apply({'params': p}, x, c)
                for c in range(model.num_columns)]
    return jax.lax.switch(column, branches, params, x)
  return apply


def column_owners(params):
  """Each leaf's column, as an int32 scalar (its task)."""
  return {name: jax.tree.map(lambda _, c=int(name.split('_')[1]): jnp.int32(c),
                             tree)
          for name, tree in params.items()}


def column_sizes(params) -> list[int]:
  """Parameters per column: column t's own layers and its laterals."""
  return [sum(x.size for x in jax.tree.leaves(params[f'column_{c}']))
          for c in range(len(params))]


def final_widths(features: Sequence[int], widen_by: int,
                 num_tasks: int) -> tuple[int, ...]:
  """Net2Net's hidden widths after the last task's widening."""
  return tuple(w + widen_by * (num_tasks - 1) for w in features)


def _dense_layers(params) -> list[str]:
  """models.MLP's layers in order (Dense_0, Dense_1, ...)."""
  return sorted(params, key=lambda name: int(re.findall(r'\d+', name)[-1]))


def pad_to(params, shapes):
  """Embeds a narrow MLP's parameters in zeros of the final widths."""
  return jax.tree.map(
      lambda p, s: jnp.pad(p, [(0, n - m) for m, n in zip(p.shape, s.shape)]),
      params, shapes)


def grown_masks(params, active):
  """True where a weight belongs to units grown so far (`active` [L] widths)."""
  layers = _dense_layers(params)
  masks = {}
  for k, name in enumerate(layers):
    kernel = params[name]['kernel']
    rows = (jnp.arange(kernel.shape[0]) < active[k - 1] if k
            else jnp.ones(kernel.shape[0], bool))
    cols = (jnp.arange(kernel.shape[1]) < active[k] if k < len(layers) - 1
            else jnp.ones(kernel.shape[1], bool))
    masks[name] = {'kernel': rows[:, None] & cols[None, :], 'bias': cols}
  return masks


def wider_net(params, active, widen_by: int, key, noise: float = 0.0):
  """Net2WiderNet: `widen_by` more units in every hidden layer.

  `active` [L] are the widths so far (units beyond are zero). Each new unit of
  layer k copies the incoming weights and bias of a random existing unit;
  every unit's outgoing weights (layer k + 1's rows) are divided by the number
  of units that now share them, so the output is unchanged. `noise` adds
  normal noise, that times the std of the copied layer's weights, to the new
  units' incoming weights, to break their symmetry with the originals.
  """
  params = dict(params)
  layers = _dense_layers(params)
  for k, (name, following) in enumerate(zip(layers, layers[1:])):
    layer, after = dict(params[name]), dict(params[following])
    width = layer['bias'].shape[0]
    units = jnp.arange(width)
    old, new = active[k], active[k] + widen_by
    added = (units >= old) & (units < new)
    pick_key, noise_key = jax.random.split(jax.random.fold_in(key, k))
    source = jnp.where(added, jax.random.randint(pick_key, (width,), 0, old),
                       units)
    shares = jnp.zeros(width).at[source].add((units < new).astype(jnp.float32))
    kernel = layer['kernel'][:, source]
    spread = jnp.std(layer['kernel'], where=units[None, :] < old)
    layer['kernel'] = kernel + added * noise * spread * jax.random.normal(
        noise_key, kernel.shape)
    layer['bias'] = layer['bias'][source]
    after['kernel'] = jnp.where(
        (units < new)[:, None],
        after['kernel'][source] / jnp.maximum(shares[source], 1.0)[:, None],
        after['kernel'])
    params[name], params[following] = layer, after
  return params
