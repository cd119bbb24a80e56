"""GCN, GAT and GraphSAGE over an edge list, with `jax.ops.segment_sum`.

Every model maps (features, senders, receivers) of one graph to (logits,
hidden): the class scores of every node and its first layer's output (the
embedding the report plots). Features are a dense [N, F] array or
`SparseFeatures` (Planetoid's bag-of-words rows are about 1% non-zero, so the
first layer's product is a gather and a segment sum over the non-zeros).
Dropout needs the 'dropout' rng when `train` is set.
"""

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

MODELS = ('gcn', 'gat', 'sage', 'mlp')
glorot = nn.initializers.glorot_uniform()


@struct.dataclass
class SparseFeatures:
  """A [num_rows, num_cols] matrix as its non-zeros (COO)."""
  rows: jax.Array
  cols: jax.Array
  values: jax.Array
  shape: tuple[int, int] = struct.field(pytree_node=False)

  @classmethod
  def from_dense(cls, dense: np.ndarray) -> 'SparseFeatures':
    rows, cols = np.nonzero(dense)
    return cls(rows.astype(np.int32), cols.astype(np.int32),
               dense[rows, cols].astype(np.float32), dense.shape)


def num_rows(x) -> int:
  return x.shape[0]


def dropout(x, rate: float, train: bool):
  """Dropout of a dense array or of a sparse matrix's non-zeros (the same thing).

  Call it inside a compact module: the Dropout it makes belongs to that module.
  """
  drop = nn.Dropout(rate, deterministic=not train)
  if isinstance(x, SparseFeatures):
    return x.replace(values=drop(x.values))
  return drop(x)


def project(x, kernel: jax.Array) -> jax.Array:
  """x @ kernel, for dense or sparse x."""
  if isinstance(x, SparseFeatures):
    return jax.ops.segment_sum(x.values[:, None] * kernel[x.cols], x.rows,
                               x.shape[0])
  return x @ kernel


def with_self_loops(senders, receivers, num_nodes: int):
  loops = jnp.arange(num_nodes, dtype=senders.dtype)
  return (jnp.concatenate([senders, loops]),
          jnp.concatenate([receivers, loops]))


def gcn_edge_weights(senders, receivers, num_nodes: int) -> jax.Array:
  """1/sqrt(d_s d_r) per edge of A+I: the entries of D^-1/2 (A+I) D^-1/2."""
  degree = jax.ops.segment_sum(jnp.ones_like(receivers, jnp.float32),
                               receivers, num_nodes)
  return jax.lax.rsqrt(degree[senders] * degree[receivers])


def segment_softmax(logits, segments, num_segments: int) -> jax.Array:
  """Softmax of logits [E, ...] over the edges of each segment (receiver)."""
  top = jax.ops.segment_max(logits, segments, num_segments)
  exp = jnp.exp(logits - jax.lax.stop_gradient(top)[segments])
  return exp / jax.ops.segment_sum(exp, segments, num_segments)[segments]


class GCNLayer(nn.Module):
  """h' = D^-1/2 (A+I) D^-1/2 h W (Kipf and Welling: no bias)."""
  features: int

  @nn.compact
  def __call__(self, x, senders, receivers):
    n = num_rows(x)
    kernel = self.param('kernel', glorot, (x.shape[1], self.features))
    h = project(x, kernel)
    senders, receivers = with_self_loops(senders, receivers, n)
    weights = gcn_edge_weights(senders, receivers, n)
    return jax.ops.segment_sum(weights[:, None] * h[senders], receivers, n)


class GATLayer(nn.Module):
  """Multi-head graph attention over each node's neighbours and itself.

  As the GAT reference: dropout on the input and on the projected features,
  dropout on the attention coefficients, LeakyReLU scores, heads
  concatenated (or averaged, `concat=False`, for the output layer).
  """
  heads: int
  features: int
  dropout: float
  attention_dropout: float
  negative_slope: float = 0.2
  concat: bool = True

  @nn.compact
  def __call__(self, x, senders, receivers, train: bool = False,
               return_attention: bool = False):
    n = num_rows(x)
    x = dropout(x, self.dropout, train)
    kernel = self.param('kernel', glorot,
                        (x.shape[1], self.heads * self.features))
    h = project(x, kernel).reshape(n, self.heads, self.features)
    attend_src = self.param('attention_src', glorot, (self.heads, self.features))
    attend_dst = self.param('attention_dst', glorot, (self.heads, self.features))
    senders, receivers = with_self_loops(senders, receivers, n)
    scores = ((h * attend_src).sum(-1)[senders] +
              (h * attend_dst).sum(-1)[receivers])  # [E, heads]
    attention = segment_softmax(
        nn.leaky_relu(scores, self.negative_slope), receivers, n)
    dropped = nn.Dropout(self.attention_dropout, deterministic=not train)(
        attention)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    out = jax.ops.segment_sum(dropped[..., None] * h[senders], receivers, n)
    out = out.reshape(n, -1) if self.concat else out.mean(1)
    out = out + self.param('bias', nn.initializers.zeros, out.shape[-1:])
    return (out, attention) if return_attention else out


class SAGELayer(nn.Module):
  """GraphSAGE, mean aggregator: h' = h W_self + mean_{j in N(i)} h_j W_neigh + b."""
  features: int

  @nn.compact
  def __call__(self, x, senders, receivers):
    n = num_rows(x)
    kernel = self.param('kernel', glorot, (x.shape[1], 2 * self.features))
    own, neighbour = jnp.split(project(x, kernel), 2, axis=-1)
    count = jax.ops.segment_sum(jnp.ones_like(receivers, jnp.float32),
                                receivers, n)
    mean = jax.ops.segment_sum(neighbour[senders], receivers, n) / jnp.maximum(
        count, 1)[:, None]  # an isolated node's mean is zero
    return own + mean + self.param('bias', nn.initializers.zeros,
                                   (self.features,))


class _TwoLayers(nn.Module):
  """Two `layer_class` layers, ReLU between, dropout before each."""
  hidden: int
  num_classes: int
  dropout: float
  layer_class = None  # GCNLayer or SAGELayer

  @nn.compact
  def __call__(self, x, senders, receivers, train: bool = False):
    x = dropout(x, self.dropout, train)
    hidden = nn.relu(self.layer_class(self.hidden, name='layer_0')(
        x, senders, receivers))
    h = nn.Dropout(self.dropout, deterministic=not train)(hidden)
    return self.layer_class(self.num_classes, name='layer_1')(
        h, senders, receivers), hidden


class GCN(_TwoLayers):
  layer_class = GCNLayer


class GAT(nn.Module):
  hidden: int
  heads: int
  output_heads: int
  num_classes: int
  dropout: float
  attention_dropout: float
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x, senders, receivers, train: bool = False):
    args = dict(dropout=self.dropout, attention_dropout=self.attention_dropout,
                negative_slope=self.negative_slope)
    hidden = nn.elu(GATLayer(self.heads, self.hidden, name='layer_0', **args)(
        x, senders, receivers, train))
    logits = GATLayer(self.output_heads, self.num_classes, concat=False,
                      name='layer_1', **args)(hidden, senders, receivers, train)
    return logits, hidden


class GraphSAGE(_TwoLayers):
  layer_class = SAGELayer


class InputDense(nn.Module):
  """x W + b for dense or sparse x."""
  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', glorot, (x.shape[1], self.features))
    return project(x, kernel) + self.param('bias', nn.initializers.zeros,
                                           (self.features,))


class FeatureMLP(nn.Module):
  """The baseline that ignores the graph: two layers on each node's features."""
  hidden: int
  num_classes: int
  dropout: float

  @nn.compact
  def __call__(self, x, senders, receivers, train: bool = False):
    del senders, receivers
    x = dropout(x, self.dropout, train)
    hidden = nn.relu(InputDense(self.hidden, name='layer_0')(x))
    h = nn.Dropout(self.dropout, deterministic=not train)(hidden)
    return nn.Dense(self.num_classes, kernel_init=glorot,
                    name='layer_1')(h), hidden


def make_model(config, num_classes: int) -> nn.Module:
  """The model `config.model.name` names, with `config.model`'s sizes."""
  m = config.model
  if m.name == 'gcn':
    return GCN(m.hidden, num_classes, m.dropout)
  if m.name == 'gat':
    return GAT(m.hidden, m.heads, m.output_heads, num_classes, m.dropout,
               m.attention_dropout, m.negative_slope)
  if m.name == 'sage':
    return GraphSAGE(m.hidden, num_classes, m.dropout)
  return FeatureMLP(m.hidden, num_classes, m.dropout)
