"""HW13: pruning, quantization, clustering, distillation, early exit, counting."""

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import classifier
from lib import loop
from lib import mesh as mesh_lib
from lib import models as lib_models
from lib import steps
from lib import train_state
from lib.data import batches
from lib.data import embedded
from lib.data import splits
from lib.errors import ConfigError
from projects.compression import config as config_lib
from projects.compression import distillation
from projects.compression import huffman
from projects.compression import measure
from projects.compression import methods
from projects.compression import models
from projects.compression import pruning
from projects.compression import quantization
from projects.compression import stages
from projects.compression import students
from projects.compression import train

IMAGE = jnp.zeros((1, 8, 8, 1))


def _init(model, seed=0):
  return jax.jit(model.init)(jax.random.key(seed), IMAGE)


def _kernels(params):
  return [np.asarray(leaf) for path, leaf in
          jax.tree_util.tree_leaves_with_path(params)
          if measure.is_kernel(path, leaf)]


def _student():
  return lib_models.SeparableCNN((16, 32, 32), (1, 2, 1), 8)


def test_param_and_flop_counts_equal_a_hand_count():
  model = lib_models.SeparableCNN((4, 8), (1, 2), stem_channels=2)
  variables = _init(model)
  # stem 3x3x1x2 + BN(2); block 0: depthwise 3x3x2 + BN(2), 1x1 2->4 + BN(4);
  # block 1: depthwise 3x3x4 + BN(4), 1x1 4->8 + BN(8); head 8x10 + 10.
  assert optax.tree_utils.tree_size(variables['params']) == (
      18 + 4 + 18 + 4 + 8 + 8 + 36 + 8 + 32 + 16 + 90)
  # Multiply-adds: every output element of a layer times its fan-in.
  macs = (64 * 2 * 9 + 64 * 2 * 9 + 64 * 4 * 2  # stem, block 0 (8x8)
          + 16 * 4 * 9 + 16 * 8 * 4 + 8 * 10)  # block 1 (4x4, stride 2), head
  assert measure.flops(model, variables, IMAGE) == 2 * macs
  # XLA's own count adds batch norm and activations on top.
  cost = jax.jit(lambda v, x: model.apply(v, x)).lower(
      variables, IMAGE).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  assert 2 * macs <= cost['flops'] <= 1.5 * 2 * macs
  low_rank = models.low_rank_separable_cnn(
      1, channels=(4, 8), strides=(1, 2), stem_channels=2)
  # Each pointwise C_in x C_out becomes C_in x 1 + 1 x C_out.
  assert optax.tree_utils.tree_size(_init(low_rank)['params']) == (
      18 + 4 + 18 + 4 + (2 + 4) + 8 + 36 + 8 + (4 + 8) + 16 + 90)


def test_budget_check_and_config_validation():
  model = _student()
  count = optax.tree_utils.tree_size(_init(model)['params'])
  assert students.check_budget(model, IMAGE, count) == count
  with pytest.raises(ConfigError, match='max_params'):
    students.check_budget(model, IMAGE, count - 1)
  config = config_lib.get_config()
  assert students.check_budget(students.make_student(config, 10), IMAGE,
                            config.max_params) <= 100_000
  for field, value in (('method', 'zip'), ('compress_from', 'teacher'),
                       ('prune.sparsities', (0.5, 1.0)),
                       ('quantize.bits', (1,)), ('early_exit.exits', (3,)),
                       ('student_labels', -1)):
    bad = config_lib.get_config()
    parent, _, name = ('.' + field).rpartition('.')
    (bad[parent[1:]] if parent else bad)[name] = value
    with pytest.raises(ConfigError, match=field.split('.')[-1]):
      config_lib.validate(bad)
  with pytest.raises(ConfigError, match='unknown compression config'):
    config_lib.get_config('nope')


@pytest.mark.parametrize('scope', ['global', 'layer'])
def test_magnitude_pruning_reaches_the_requested_sparsity(scope):
  params = _init(_student())['params']
  kernels = _kernels(params)
  total = sum(k.size for k in kernels)
  masks = None
  for sparsity in pruning.sparsity_schedule(0.0, 0.8, 3):
    new_masks = pruning.magnitude_masks(params, sparsity, scope=scope,
                                        masks=masks)
    pruned = _kernels(pruning.apply_masks(params, new_masks))
    zeros = [int(np.sum(k == 0)) for k in pruned]
    if scope == 'global':
      assert sum(zeros) == round(sparsity * total)
    else:
      assert zeros == [round(sparsity * k.size) for k in kernels]
    if masks is not None:  # pruned weights stay pruned
      for old, new in zip(_kernels(masks), _kernels(new_masks)):
        assert np.all(new[old == 0] == 0)
    masks = new_masks
  assert pruning.sparsity_schedule(0.5, 0.9, 4)[-1] == pytest.approx(0.9)
  # The weights kept are the largest: no pruned |w| above a kept one.
  masks = pruning.magnitude_masks(params, 0.5)
  flat = np.concatenate([k.ravel() for k in kernels])
  kept = np.concatenate([m.ravel() for m in _kernels(masks)]) > 0
  assert np.abs(flat[~kept]).max() <= np.abs(flat[kept]).min()
  # Biases and batch norm are never pruned.
  assert all(np.all(np.asarray(m) == 1)
             for path, m in jax.tree_util.tree_leaves_with_path(masks)
             if not measure.is_kernel(path, m))


def test_pruned_weights_stay_zero_through_finetuning():
  digits = embedded.load_digits()
  model = _student()
  variables = _init(model)
  params = jax.tree.map(np.asarray, pruning.apply_masks(
      variables['params'],
      pruning.magnitude_masks(variables['params'], 0.7)))
  tx = optax.chain(optax.adamw(1e-2, weight_decay=0.1),
                   pruning.keep_pruned())
  mesh = mesh_lib.make_mesh()
  loss_fn, _ = classifier.classifier_fns(model, input_key='image')
  state = jax.device_put(train_state.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
      model_state={'batch_stats': variables['batch_stats']},
      key=jax.random.key(0)), mesh_lib.replicated(mesh))
  train_step = steps.make_train_step(loss_fn, tx, mesh)
  for step in range(5):
    batch = batches.train_batch(digits, 64, step, seed=0)
    state, _ = train_step(state, mesh_lib.shard_batch(batch, mesh))
  assert pruning.kernel_sparsity(state.params) == pytest.approx(
      pruning.kernel_sparsity(params))
  for before, after in zip(_kernels(params), _kernels(state.params)):
    np.testing.assert_array_equal(after == 0, before == 0)
    assert np.any(after[before != 0] != before[before != 0])  # it trained


@pytest.mark.parametrize('low_rank', [False, True])
def test_structured_pruning_removes_the_weakest_filters(low_rank):
  if low_rank:
    model = models.low_rank_separable_cnn(
        4, channels=(8, 16, 16), strides=(1, 2, 1), stem_channels=8)
  else:
    model = _student()
  variables = jax.tree.map(np.array, _init(model, seed=1))
  params = variables['params']
  # Zero half of every layer's filters: with fresh batch norm (bias 0, mean
  # 0) those channels output exactly 0, so removing them changes nothing.
  rng = np.random.default_rng(0)

  def dead(count):
    return rng.permutation(count)[:count // 2]

  stem = params['Conv_0']['kernel']
  stem[..., dead(stem.shape[-1])] = 0
  for i in range(len(model.channels)):
    block = params[f'SeparableBlock_{i}']
    up = (block['LowRankDense_0']['Dense_1']['kernel'] if low_rank
          else block['Conv_1']['kernel'])
    up[..., dead(up.shape[-1])] = 0
  images = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))
  slim_model, slim = pruning.slim_separable(model, variables, 0.5)
  assert slim_model.stem_channels == model.stem_channels // 2
  assert slim_model.channels == tuple(c // 2 for c in model.channels)
  assert pruning.filter_fraction_removed(model, slim_model) == 0.5
  # The ranks stay, so a factorized net shrinks less than a full one.
  assert (optax.tree_utils.tree_size(slim['params'])
          < (0.55 if low_rank else 0.4) * optax.tree_utils.tree_size(params))
  chex.assert_trees_all_close(slim_model.apply(slim, images),
                              model.apply(variables, images), atol=1e-5)
  assert pruning.kept_channels(10, 0.25) == 8  # round(2.5) = 2 removed
  assert pruning.kept_channels(3, 0.9) == 1


def test_quantization_error_shrinks_with_bits():
  digits = embedded.load_digits()
  model = _student()
  variables = _init(model)
  images = digits['image'][:64]
  apply = jax.jit(model.apply)
  logits = apply(variables, images)

  def error(bits, per_channel=True):
    quantized = {**variables, 'params': quantization.fake_quantize(
        variables['params'], bits, per_channel)}
    return float(jnp.abs(apply(quantized, images) - logits).max())

  scale = float(jnp.abs(logits).max())
  assert error(8) < 0.02 * scale
  assert error(2) > 5 * error(8)
  assert error(4) < error(2)
  assert error(8, per_channel=False) > 0
  w = jax.random.normal(jax.random.key(0), (3, 3, 4, 5))
  q, s = quantization.quantize_tensor(w, 4)
  assert q.dtype == jnp.int8 and int(jnp.abs(q).max()) == 7
  chex.assert_shape(s, (1, 1, 1, 5))
  assert float(jnp.abs(q * s - w).max()) <= float(s.max()) / 2 + 1e-6
  for bits in (2, 3, 4, 8):
    values = np.arange(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1)).astype(np.int8)
    values = np.resize(values, 37)
    packed = quantization.pack_bits(values, bits)
    assert packed.nbytes == (37 * bits + 7) // 8
    np.testing.assert_array_equal(
        quantization.unpack_bits(packed, bits, values.shape), values)
  # int8: 1 byte a weight instead of 4, plus a float32 scale per channel.
  kernels = _kernels(variables['params'])
  assert quantization.quantized_bytes(variables, 8) == (
      measure.float_bytes(variables) - 3 * sum(k.size for k in kernels)
      + 4 * sum(k.shape[-1] for k in kernels))
  assert (quantization.quantized_bytes(variables, 4)
          < quantization.quantized_bytes(variables, 8))


def test_clustering_uses_at_most_k_values_per_kernel():
  params = _init(_student())['params']
  for bits in (2, 3):
    clustered = quantization.cluster(params, bits)
    for kernel in _kernels(clustered):
      assert len(np.unique(kernel)) <= 2 ** bits
    assert quantization.clustered_bytes({'params': clustered}, bits) < (
        measure.float_bytes(params))
  # Two well separated groups: the centroids are the group means.
  values = jnp.array([-1.1, -0.9, -1.0, 2.0, 2.2, 1.8])
  codebook, index = quantization.kmeans_1d(values, 2)
  np.testing.assert_allclose(codebook, [-1.0, 2.0], atol=1e-6)
  np.testing.assert_array_equal(index, [0, 0, 0, 1, 1, 1])
  with pytest.raises(ValueError, match='distinct values'):
    quantization.clustered_bytes({'params': params}, 2)


def test_huffman_codes_known_lengths_and_round_trip():
  # Frequencies 5, 2, 1, 1: the tree's depths are 1, 2, 3, 3.
  symbols = np.array([0] * 5 + [1] * 2 + [2, 3], np.int8)
  assert huffman.code_lengths(symbols) == {0: 1, 1: 2, 2: 3, 3: 3}
  codes = huffman.canonical_codes(huffman.code_lengths(symbols))
  assert codes == {0: (0b0, 1), 1: (0b10, 2), 2: (0b110, 3), 3: (0b111, 3)}
  packed, lengths = huffman.encode(symbols)
  assert packed.nbytes == 2  # 5x1 + 2x2 + 2x3 = 15 bits
  np.testing.assert_array_equal(huffman.decode(packed, lengths, 9), symbols)
  # Quantized Gaussian weights: exact round trip, fewer bytes than 4-bit packing.
  rng = np.random.default_rng(0)
  q = np.clip(np.round(rng.normal(0, 1.5, 5000)), -7, 7).astype(np.int8)
  packed, lengths = huffman.encode(q)
  np.testing.assert_array_equal(huffman.decode(packed, lengths, q.size), q)
  assert huffman.coded_bytes(packed, lengths) < quantization.pack_bits(
      q, 4).nbytes
  one = np.full(7, -3, np.int8)  # a single symbol still gets a 1-bit code
  np.testing.assert_array_equal(huffman.decode(*huffman.encode(one), 7), one)
  with pytest.raises(ValueError, match='symbols'):
    huffman.decode(packed, lengths, q.size + 100)


def test_distillation_loss_known_values():
  logits = jax.random.normal(jax.random.key(0), (5, 10))
  labels = jnp.arange(5)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  chex.assert_trees_all_close(distillation.distillation_loss(
      logits, logits + 3.0, labels, temperature=4.0, alpha=1.0),
                              jnp.zeros(5), atol=1e-5)
  chex.assert_trees_all_close(distillation.distillation_loss(
      logits, -logits, labels, temperature=2.0, alpha=0.0), ce, atol=1e-6)
  # Unlabelled examples (a transfer set) learn the teacher's outputs only.
  labelled = jnp.array([1.0, 0.0, 1.0, 0.0, 0.0])
  soft_only = distillation.distillation_loss(
      logits, -logits, labels, temperature=2.0, alpha=1.0)
  chex.assert_trees_all_close(distillation.distillation_loss(
      logits, -logits, labels, temperature=2.0, alpha=0.25,
      labelled=labelled), 0.25 * soft_only + 0.75 * ce * labelled, atol=1e-6)


def test_labelled_mask_keeps_the_number_of_labels_asked_for():
  train_set = {'label': np.zeros(50, np.int32)}
  mask = stages.labelled_mask(train_set, 20, seed=0)
  chex.assert_shape(mask, (50,))
  assert mask.sum() == 20 and set(np.unique(mask)) == {0.0, 1.0}
  assert not np.array_equal(mask, stages.labelled_mask(train_set, 20, seed=1))
  np.testing.assert_array_equal(stages.labelled_mask(train_set, 0, seed=0), 1)


def _train_mlp(loss_fn, model, data, num_steps, seed):
  mesh = mesh_lib.make_mesh()
  tx = optax.adam(3e-3)
  state = train_state.create_train_state(model, tx, data['image'][:1],
                                         jax.random.key(seed), mesh)
  train_step = steps.make_train_step(loss_fn, tx, mesh)
  for step in range(num_steps):
    batch = batches.train_batch(data, 64, step, seed)
    state, metrics = train_step(state, mesh_lib.shard_batch(batch, mesh))
    # Waiting for each step keeps XLA's CPU queue short: hundreds of queued
    # 8-device steps on 2 busy cores can miss the all-reduce's 40 s deadline.
    jax.block_until_ready(metrics)
  return state


def test_distillation_beats_the_student_trained_alone():
  """Few, noisy labels: the teacher's soft targets carry what labels lack."""
  digits = embedded.load_digits()
  train_set, test = splits.split_fraction(digits, 0.3, seed=0)
  teacher = lib_models.MLP((128,), 10)
  teacher_loss, _ = classifier.classifier_fns(teacher, input_key='image')
  teacher_state = _train_mlp(teacher_loss, teacher, train_set, 300, seed=0)

  # Host copies: closed over as constants of the student's jitted step.
  teacher_params = jax.device_get(teacher_state.params)

  def teacher_logits(images):
    return teacher.apply({'params': teacher_params}, images)

  def accuracy(model, state):
    logits = model.apply({'params': state.params}, test['image'])
    return float(np.mean(np.argmax(logits, -1) == test['label']))

  assert accuracy(teacher, teacher_state) > 0.9
  student = lib_models.MLP((16,), 10)
  alone, distilled = [], []
  for seed in (1, 2):
    # 128 examples, 40% of the labels replaced by random classes.
    rng = np.random.default_rng(seed)
    subset = splits.take(train_set, rng.permutation(len(train_set['label']))[
        :128])
    noisy = rng.random(128) < 0.4
    subset['label'] = np.where(noisy, rng.integers(0, 10, 128),
                               subset['label']).astype(np.int32)
    ce_loss, _ = classifier.classifier_fns(student, input_key='image')
    kd_loss = distillation.distill_loss_fn(student, teacher_logits,
                                           temperature=4.0, alpha=0.9)
    alone.append(accuracy(student, _train_mlp(ce_loss, student, subset, 150,
                                              seed)))
    distilled.append(accuracy(student, _train_mlp(kd_loss, student, subset,
                                                  150, seed)))
  assert np.mean(distilled) > np.mean(alone) + 0.05, (alone, distilled)


def test_early_exit_thresholds():
  probabilities = jax.nn.softmax(
      jax.random.normal(jax.random.key(0), (3, 50, 10)) * 3, -1)
  np.testing.assert_array_equal(models.exit_choice(probabilities, 0.0), 0)
  np.testing.assert_array_equal(models.exit_choice(probabilities, 1.01), 2)
  head = np.asarray(models.exit_choice(probabilities, 0.6))
  top = np.asarray(probabilities.max(-1))
  for i, h in enumerate(head):
    assert h == 2 or top[h, i] > 0.6
    assert np.all(top[:h, i] <= 0.6)
  model = models.EarlyExitCNN((8, 16, 16), (1, 2, 1), exits=(0, 1),
                              stem_channels=4)
  variables = _init(model)
  heads = model.apply(variables, jnp.zeros((2, 8, 8, 1)))
  assert len(heads) == 3
  chex.assert_shape(heads, [(2, 10)] * 3)
  costs = [measure.flops(model, variables, IMAGE, num_heads=h)
           for h in (1, 2, 3)]
  assert costs[0] < costs[1] < costs[2]


def _train_records(workdir) -> dict[str, int]:
  """Each stage's number of train log records (its metrics.jsonl)."""
  return {str(path.parent.relative_to(workdir)): sum(
      json.loads(line)['split'] == 'train'
      for line in path.read_text().splitlines())
          for path in workdir.glob('**/metrics.jsonl')}


def test_every_method_runs_end_to_end_and_a_rerun_trains_nothing(
    tmp_path, monkeypatch):
  config = config_lib.get_config('quick')
  config.method = 'all'
  config.teacher.model.update(stage_sizes=(1,), width=8)
  config.model.update(channels=(8, 16), strides=(1, 2), stem_channels=8)
  config.teacher.num_steps = config.num_steps = 48
  config.early_exit.update(channels=(8, 16, 16), strides=(1, 2, 1),
                           num_steps=16, thresholds=(0.0, 1.01))
  config.eval_every = 48
  config.prune.update(sparsities=(0.5, 0.8), rounds=1, finetune_steps=2,
                      structured_fractions=(0.5,))
  config.lottery.sparsities = (0.8,)
  config.quantize.bits = (8,)
  config.cluster.bits = (2,)
  config.plots = True
  config.num_devices = 2
  metrics = train.train_and_evaluate(config, str(tmp_path)).metrics
  rows = {}
  for method in methods.ALL:
    path = tmp_path / 'results' / f'{method}.json'
    for row in json.loads(path.read_text()):
      rows[row['name']] = row
  assert set(rows) == {'teacher', 'student', 'distilled', 'pruned_50',
                       'pruned_80', 'structured_50', 'ticket_80',
                       'reinit_80', 'signs_80', 'int8', 'int8_huffman',
                       'clustered_4',
                       'early_exit_0', 'early_exit_1.01'}
  # Each training ran as its own stage.
  trained = _train_records(tmp_path)
  assert set(trained) == {'teacher', 'student', 'distilled', 'early_exit',
                          'prune/pruned_50/round_1',
                          'prune/pruned_80/round_1', 'prune/structured_50',
                          'lottery/ticket_80', 'lottery/reinit_80',
                          'lottery/signs_80'}
  assert all(count > 0 for count in trained.values())
  student = rows['student']
  assert student['params'] <= config.max_params
  # 48 steps learn: well above the majority class.
  chance = metrics['baseline/majority_class_accuracy']
  assert student['test_accuracy'] > 2 * chance
  assert rows['distilled']['test_accuracy'] > 2 * chance
  assert (rows['pruned_80']['nonzero_params']
          < rows['pruned_50']['nonzero_params'] < student['params'])
  assert rows['pruned_80']['flops'] < rows['pruned_50']['flops']
  assert rows['structured_50']['params'] < 0.5 * student['params']
  # The three lottery starts share one mask, kept through their training.
  kept = {rows[f'{kind}_80']['nonzero_params']
          for kind in ('ticket', 'reinit', 'signs')}
  assert len(kept) == 1 and kept.pop() < rows['pruned_50']['nonzero_params']
  # A tiny net: its float32 biases and batch norm are a large share.
  assert rows['int8']['bytes'] < 0.6 * student['bytes']
  assert rows['int8_huffman']['bytes'] < student['bytes']  # 8-bit tables cost
  assert rows['int8_huffman']['test_accuracy'] == rows['int8']['test_accuracy']
  assert rows['early_exit_0']['flops'] < rows['early_exit_1.01']['flops']
  for row in rows.values():
    assert 0.0 <= row['test_accuracy'] <= 1.0
  assert metrics['distilled/test_accuracy'] == rows['distilled'][
      'test_accuracy']
  assert (tmp_path / 'results.md').read_text().count('\n') == len(rows) + 2
  assert (tmp_path / 'accuracy_vs_size.png').exists()

  # A rerun restores every stage it needs (teacher, distilled, the pruning
  # rounds) from its workdir: no step trains, and the rows are the same.
  stepped, run = [], loop.run

  def counting_run(task, workdir, *args, **kwargs):
    def step(state, i):
      stepped.append(workdir)
      return task.step(state, i)
    return run(dataclasses.replace(task, step=step), workdir, *args, **kwargs)

  monkeypatch.setattr(loop, 'run', counting_run)
  config.method = 'prune'
  again = train.train_and_evaluate(config, str(tmp_path)).metrics
  assert not stepped
  for name in ('pruned_50', 'pruned_80', 'structured_50'):
    assert again[f'{name}/test_accuracy'] == rows[name]['test_accuracy']
    assert again[f'{name}/nonzero_params'] == rows[name]['nonzero_params']
