"""Graphs for node classification: a generated block model and Planetoid.

A `Graph` holds an undirected graph as an edge list (both directions, no
self-loops, no duplicates), node features, labels and the train/val/test
masks of a full-batch node-classification split.
"""

import os
import pickle
from typing import NamedTuple

import numpy as np
import scipy.sparse

from lib.errors import DataError

PLANETOID = ('cora', 'citeseer')


class Graph(NamedTuple):
  features: np.ndarray  # [N, F] float32
  labels: np.ndarray  # [N] int32
  senders: np.ndarray  # [E] int32
  receivers: np.ndarray  # [E] int32
  train_mask: np.ndarray  # [N] bool
  val_mask: np.ndarray
  test_mask: np.ndarray
  num_classes: int

  @property
  def num_nodes(self) -> int:
    return self.features.shape[0]


def undirected_edges(senders, receivers) -> tuple[np.ndarray, np.ndarray]:
  """Both directions of every edge, self-loops and duplicates dropped."""
  senders, receivers = np.asarray(senders), np.asarray(receivers)
  pairs = np.concatenate([np.stack([senders, receivers], 1),
                          np.stack([receivers, senders], 1)])
  pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
  return pairs[:, 0].astype(np.int32), pairs[:, 1].astype(np.int32)


def row_normalize(features: np.ndarray) -> np.ndarray:
  """Each row divided by its sum (all-zero rows stay zero), as GCN and GAT do."""
  sums = features.sum(1, keepdims=True)
  return (features / np.where(sums == 0, 1, sums)).astype(np.float32)


def without_edges(graph: Graph) -> Graph:
  """Every edge replaced by a self-loop of its receiver: the same shapes (so
  the same compiled programs), no neighbours. GCN's normalized propagation
  becomes the identity, so GCN on it is a features-only MLP."""
  return graph._replace(senders=graph.receivers)


def permute(graph: Graph, order: np.ndarray) -> Graph:
  """The same graph with node `order[i]` renamed i."""
  inverse = np.argsort(order)
  return graph._replace(
      features=graph.features[order], labels=graph.labels[order],
      senders=inverse[graph.senders].astype(np.int32),
      receivers=inverse[graph.receivers].astype(np.int32),
      train_mask=graph.train_mask[order], val_mask=graph.val_mask[order],
      test_mask=graph.test_mask[order])


def stochastic_block_model(num_nodes: int, num_classes: int,
                           num_features: int, p_in: float, p_out: float,
                           feature_signal: float, train_per_class: int,
                           num_val: int, seed: int) -> Graph:
  """A block model whose features are weak, noisy hints of the block.

  Each node's features are its block's random centre times `feature_signal`
  plus unit Gaussian noise, so a features-only model is weak and neighbours
  (mostly of the same block when p_in >> p_out) carry the rest. The split is
  Planetoid's shape: `train_per_class` labelled nodes per class, `num_val`
  validation nodes, the rest test.
  """
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_nodes) % num_classes).astype(np.int32)
  same = labels[:, None] == labels[None, :]
  upper = np.triu(rng.random((num_nodes, num_nodes)) <
                  np.where(same, p_in, p_out), 1)
  senders, receivers = undirected_edges(*np.nonzero(upper))
  centres = rng.normal(size=(num_classes, num_features))
  features = (feature_signal * centres[labels] +
              rng.normal(size=(num_nodes, num_features))).astype(np.float32)
  train = np.zeros(num_nodes, bool)
  for c in range(num_classes):
    train[np.flatnonzero(labels == c)[:train_per_class]] = True
  rest = rng.permutation(np.flatnonzero(~train))
  val = np.zeros(num_nodes, bool)
  val[rest[:num_val]] = True
  test = ~(train | val)
  return Graph(features, labels, senders, receivers, train, val, test,
               num_classes)


# Exactly what the Planetoid pickles reference (Python 2 names; protocol 2).
def _allowed_classes() -> dict[tuple[str, str], object]:
  reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct
  return {
      ('numpy.core.multiarray', '_reconstruct'): reconstruct,
      ('numpy._core.multiarray', '_reconstruct'): reconstruct,
      ('numpy', 'ndarray'): np.ndarray,
      ('numpy', 'dtype'): np.dtype,
      ('scipy.sparse.csr', 'csr_matrix'): scipy.sparse.csr_matrix,
      ('collections', 'defaultdict'): __import__('collections').defaultdict,
      ('__builtin__', 'list'): list,
      ('builtins', 'list'): list,
  }


class RestrictedUnpickler(pickle.Unpickler):
  """Loads only numpy arrays, scipy CSR matrices, defaultdicts and lists."""

  def find_class(self, module, name):
    found = _allowed_classes().get((module, name))
    if found is None:
      raise pickle.UnpicklingError(f'refusing to load {module}.{name}')
    return found


def load_pickle(path: str):
  """A Planetoid pickle; DataError for a missing file or a disallowed class."""
  try:
    with open(path, 'rb') as f:
      # fix_imports=False: names are checked as written in the file.
      return RestrictedUnpickler(f, encoding='latin1',
                                 fix_imports=False).load()
  except FileNotFoundError:
    raise DataError(f'no Planetoid file {path}; set --config.data.path to the '
                    'folder of ind.<name>.* files') from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
    raise DataError(f'{path} is not a Planetoid pickle: {e}') from None


def load_planetoid(path: str, name: str) -> Graph:
  """The Planetoid public split of `name` (cora | citeseer) from `path`.

  As the GCN reference loader does: test rows are put back at their node ids,
  and Citeseer's test-id range gets zero features (and no label) for the 15
  isolated ids that have no test row.
  """
  parts = {part: load_pickle(os.path.join(path, f'ind.{name}.{part}'))
           for part in ('x', 'y', 'tx', 'ty', 'allx', 'ally', 'graph')}
  index_path = os.path.join(path, f'ind.{name}.test.index')
  try:
    test_ids = np.loadtxt(index_path, dtype=np.int64, ndmin=1)
  except (OSError, ValueError) as e:
    raise DataError(f'cannot read {index_path} ({e}); set --config.data.path '
                    'to the folder of ind.<name>.* files') from None
  tx, ty = parts['tx'].toarray(), np.asarray(parts['ty'])
  test_range = np.sort(test_ids)
  span = test_range.max() - test_range.min() + 1
  if span > len(test_range):  # Citeseer: isolated test ids without a row
    padded_x = np.zeros((span, tx.shape[1]), tx.dtype)
    padded_y = np.zeros((span, ty.shape[1]), ty.dtype)
    padded_x[test_range - test_range.min()] = tx
    padded_y[test_range - test_range.min()] = ty
    tx, ty = padded_x, padded_y
  features = np.concatenate([parts['allx'].toarray(), tx])
  one_hot = np.concatenate([np.asarray(parts['ally']), ty])
  features[test_ids] = features[test_range]
  one_hot[test_ids] = one_hot[test_range]
  num_nodes = features.shape[0]
  adjacency = parts['graph']
  senders = [s for s, targets in adjacency.items() for _ in targets]
  receivers = [r for targets in adjacency.values() for r in targets]
  senders, receivers = undirected_edges(senders, receivers)
  if senders.size and max(senders.max(), receivers.max()) >= num_nodes:
    raise DataError(f'{path}: ind.{name}.graph names nodes past the '
                    f'{num_nodes} feature rows')
  masks = [np.zeros(num_nodes, bool) for _ in range(3)]
  num_train = np.asarray(parts['y']).shape[0]
  masks[0][:num_train] = True
  masks[1][num_train:num_train + 500] = True
  masks[2][test_range] = True
  return Graph(row_normalize(features), one_hot.argmax(1).astype(np.int32),
               senders, receivers, *masks, num_classes=one_hot.shape[1])
