"""Graph neural networks: GCN, GAT, GraphSAGE contracts, the loader, learning."""

import functools
import os
import pickle

import chex
import jax
import numpy as np
import pytest

from lib import loop
from lib import mesh as mesh_lib
from lib.errors import ConfigError
from lib.errors import DataError
from projects.graph import config as config_lib
from projects.graph import data
from projects.graph import embeddings
from projects.graph import models
from projects.graph import seeds as seeds_lib
from projects.graph import train

PLANETOID = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared',
                         'data', 'planetoid')
def _random_graph(num_nodes=12, num_features=5, seed=0) -> data.Graph:
  rng = np.random.default_rng(seed)
  senders, receivers = data.undirected_edges(
      rng.integers(0, num_nodes, 30), rng.integers(0, num_nodes, 30))
  features = rng.normal(size=(num_nodes, num_features)).astype(np.float32)
  mask = np.ones(num_nodes, bool)
  return data.Graph(features, rng.integers(0, 3, num_nodes).astype(np.int32),
                    senders, receivers, mask, mask, mask, num_classes=3)


def _quick_config(**overrides):
  """The tour's config: tests that use it share its compiled programs."""
  config = config_lib.get_config('quick')
  config.update(overrides)
  return config


def _init_and_apply(module, graph, **kwargs):
  params = jax.jit(module.init)(jax.random.key(0), graph.features,
                                graph.senders, graph.receivers)
  apply = jax.jit(functools.partial(module.apply, **kwargs))
  return params, apply


def test_gcn_layer_equals_the_dense_normalized_adjacency_product():
  graph = _random_graph()
  params, apply = _init_and_apply(models.GCNLayer(4), graph)
  out = apply(params, graph.features, graph.senders, graph.receivers)
  a = np.zeros((12, 12))
  a[graph.receivers, graph.senders] = 1
  a_hat = a + np.eye(12)
  d = np.diag(a_hat.sum(1) ** -0.5)
  expected = d @ a_hat @ d @ graph.features @ params['params']['kernel']
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  alone = data.without_edges(graph)  # propagation becomes the identity
  np.testing.assert_allclose(
      apply(params, alone.features, alone.senders, alone.receivers),
      graph.features @ params['params']['kernel'], rtol=1e-5, atol=1e-5)


def test_gat_attention_sums_to_one_over_each_nodes_neighbours():
  graph = _random_graph()
  params, apply = _init_and_apply(
      models.GATLayer(heads=3, features=2, dropout=0.6, attention_dropout=0.6),
      graph, return_attention=True)
  out, attention = apply(params, graph.features, graph.senders,
                         graph.receivers)
  chex.assert_shape(out, (12, 6))
  num_edges = len(graph.senders) + 12  # and a self-loop per node
  chex.assert_shape(attention, (num_edges, 3))
  _, receivers = models.with_self_loops(graph.senders, graph.receivers, 12)
  sums = jax.ops.segment_sum(attention, receivers, 12)
  np.testing.assert_allclose(sums, np.ones((12, 3)), rtol=1e-5)
  assert float(attention.min()) > 0


@pytest.mark.parametrize('name', ['gcn', 'gat', 'sage'])
def test_permuting_node_ids_permutes_the_outputs(name):
  graph = _random_graph()
  config = config_lib.get_config()
  config.model.name = name
  params, apply = _init_and_apply(
      models.make_model(config, graph.num_classes), graph)
  logits, _ = apply(params, graph.features, graph.senders, graph.receivers)
  order = np.random.default_rng(2).permutation(12)
  moved = data.permute(graph, order)
  moved_logits, _ = apply(params, moved.features, moved.senders,
                          moved.receivers)
  np.testing.assert_allclose(moved_logits, logits[order], rtol=1e-4,
                             atol=1e-5)


def test_sparse_features_project_as_the_dense_matrix():
  dense = np.array([[0., 2., 0.], [1., 0., 3.]], np.float32)
  kernel = np.arange(6, dtype=np.float32).reshape(3, 2)
  sparse = models.SparseFeatures.from_dense(dense)
  np.testing.assert_allclose(models.project(sparse, kernel), dense @ kernel)


class _RunsAShellCommand:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def test_the_restricted_unpickler_refuses_other_classes(tmp_path):
  marker = tmp_path / 'executed'
  path = tmp_path / 'ind.cora.x'
  path.write_bytes(pickle.dumps(_RunsAShellCommand(marker), protocol=2))
  with pytest.raises(DataError, match='refusing to load .*system'):
    data.load_pickle(str(path))
  assert not marker.exists()
  with pytest.raises(DataError, match='config.data.path'):
    data.load_planetoid(str(tmp_path / 'nowhere'), 'cora')


def test_bad_config_values_fail_clearly():
  config = config_lib.get_config()
  config.model.name = 'gin'
  with pytest.raises(ConfigError, match='model.name'):
    config_lib.validate(config)
  config = config_lib.get_config('cora')
  config.stopping.rule = 'never'
  with pytest.raises(ConfigError, match='stopping.rule'):
    config_lib.validate(config)


def _run_chunks(config, seeds, mesh, chunks=2):
  graph = train.load_graph(config)
  trainer = seeds_lib.SeedTrainer(
      config, models.make_model(config, graph.num_classes), mesh)
  inputs = trainer.place(seeds_lib.graph_inputs(graph, sparse=False))
  state = trainer.init(seeds, inputs)
  for _ in range(chunks):
    state, _ = trainer.run_chunk(state, inputs)
  kernel = state.params['layer_0']['kernel']
  assert kernel.sharding.is_equivalent_to(trainer.seed_sharding, kernel.ndim)
  return jax.device_get(state)


def test_vmapped_sharded_seeds_equal_single_seed_runs():
  config = _quick_config()
  together = _run_chunks(config, np.arange(4), mesh_lib.make_mesh(4))
  config.num_seeds = 1
  for seed in (0, 3):
    alone = _run_chunks(config, [seed], mesh_lib.make_mesh(1))
    chex.assert_trees_all_close(
        jax.tree.map(lambda x, i=seed: x[i:i + 1], together), alone,
        rtol=1e-5, atol=1e-6)
  assert int(together.epoch.max()) == 20


def test_a_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
  config = _quick_config(checkpoint_every=10)
  graph = train.load_graph(config)
  mesh = train.seed_mesh(config)
  cadence = loop.Cadence.from_config(config)
  whole = loop.run(train.make_task(config, graph, mesh), str(tmp_path / 'a'),
                   cadence)
  first = train.make_task(config, graph, mesh)
  first.num_steps = 10  # stopped after 10 of 20 steps
  loop.run(first, str(tmp_path / 'b'), cadence)
  resumed = loop.run(train.make_task(config, graph, mesh),
                     str(tmp_path / 'b'), cadence)
  chex.assert_trees_all_close(jax.device_get(resumed.state),
                              jax.device_get(whole.state))


def test_the_embedding_plot_is_written(tmp_path):
  rng = np.random.default_rng(0)
  path = str(tmp_path / 'embeddings.png')
  embeddings.plot_embeddings(rng.normal(size=(30, 4)), rng.integers(0, 3, 30),
                             path, title='random')
  assert os.path.getsize(path) > 1000
  np.testing.assert_allclose(  # the axis of largest variance, up to sign
      np.abs(embeddings.pca(np.array([[2., 1.], [-2., -1.]]), 1)),
      [[np.sqrt(5)], [np.sqrt(5)]], atol=1e-6)


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('graph'))
  return workdir, train.train_and_evaluate(config_lib.get_config('quick'),
                                           workdir)


def test_quick_gcn_learns_the_block_model_beyond_the_feature_mlp(quick_run):
  workdir, result = quick_run
  metrics = result.metrics
  chance = 1 / config_lib.get_config('quick').data.sbm.num_classes
  assert metrics['test/accuracy'] > 0.85 > 2 * chance
  baseline = metrics['baseline/features_only_test_accuracy']
  assert metrics['test/accuracy'] > baseline + 0.25
  assert baseline > chance + 0.1  # the features are weak, not useless
  assert metrics['test/accuracy_std'] < 0.05
  with open(os.path.join(workdir, 'results.md')) as f:
    assert len(f.read().splitlines()) == 2 + 4  # a row per seed


@pytest.mark.skipif(not os.path.isdir(PLANETOID),
                    reason='Planetoid is not in ../shared/data')
def test_planetoid_public_split_shapes():
  cora = data.load_planetoid(PLANETOID, 'cora')
  chex.assert_shape(cora.features, (2708, 1433))
  assert cora.num_classes == 7 and cora.labels.max() == 6
  assert [int(m.sum()) for m in (cora.train_mask, cora.val_mask,
                                 cora.test_mask)] == [140, 500, 1000]
  assert len(cora.senders) == 10556  # 5278 undirected edges
  citeseer = data.load_planetoid(PLANETOID, 'citeseer')
  chex.assert_shape(citeseer.features, (3327, 3703))
  assert citeseer.num_classes == 6 and int(citeseer.test_mask.sum()) == 1000
  padded = ~citeseer.features.any(1)
  assert int(padded[2312:].sum()) >= 15  # the isolated ids without a row
