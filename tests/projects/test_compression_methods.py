"""Slimmable networks, BinaryConnect and FitNets' hints (projects/compression)."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import classifier
from lib import mesh as mesh_lib
from lib import models as lib_models
from lib import steps
from lib import train_state
from lib.data import batches
from lib.data import embedded
from lib.errors import ConfigError
from projects.compression import binary_connect
from projects.compression import config as config_lib
from projects.compression import fitnets
from projects.compression import measure
from projects.compression import slimmable

IMAGES = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))


def _kernels(params):
  return [np.asarray(leaf) for path, leaf in
          jax.tree_util.tree_leaves_with_path(params)
          if measure.is_kernel(path, leaf)]


def _randomized(tree, seed):
  """Every leaf replaced by positive noise (weights, scales, variances)."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten([
      jax.random.uniform(k, x.shape, minval=0.5, maxval=1.5)
      for k, x in zip(keys, leaves)])


def test_slimmable_width_is_the_ordinary_net_on_its_first_channels():
  model = slimmable.SlimmableSeparableCNN((8, 16), (1, 2), 4, 10, (0.5, 1.0))
  variables = jax.jit(model.init)(jax.random.key(0), IMAGES)
  # Nontrivial batch norm: random scales, biases and running statistics.
  variables = {'params': {**variables['params'], **{
      name: _randomized(value, i) for i, (name, value) in enumerate(
          variables['params'].items()) if 'BatchNorm' in name}},
               'batch_stats': _randomized(variables['batch_stats'], 9)}
  apply = jax.jit(lambda v: model.apply(v, IMAGES))
  slim_logits = apply(variables)
  for index in range(2):
    narrow = slimmable.separable_at_width(model, index)
    logits = jax.jit(narrow.apply)(slimmable.variables_at_width(
        model, variables, index, IMAGES[:1]), IMAGES)
    chex.assert_shape(logits, (6, 10))
    chex.assert_trees_all_close(slim_logits[index], logits, atol=1e-5)
  assert slimmable.separable_at_width(model, 1).channels == (8, 16)

  # Width 0.5 reads only the first half of every layer's channels: changing
  # the rest (and the full width's batch norm) changes only the full width.
  def scramble(path, leaf):
    names = [getattr(p, 'key', None) for p in path]
    if 'BatchNorm' in ''.join(map(str, names)):
      return leaf.at[1].multiply(3.0).at[0, leaf.shape[1] // 2:].add(5.0)
    if names[-1] == 'kernel' and leaf.ndim == 4:  # [kh, kw, in, out]
      return leaf.at[..., leaf.shape[-1] // 2:].add(5.0)
    if names[-1] == 'kernel':  # the head: [features, classes]
      return leaf.at[leaf.shape[0] // 2:].add(5.0)
    return leaf

  scrambled = jax.tree_util.tree_map_with_path(scramble, variables)
  again = apply(scrambled)
  chex.assert_trees_all_close(again[0], slim_logits[0], atol=1e-5)
  assert np.abs(again[1] - slim_logits[1]).max() > 1.0

  # Training updates each width's own batch norm statistics, on its channels.
  _, updated = jax.jit(lambda v: model.apply(v, IMAGES, train=True,
                                             mutable=['batch_stats']))(
                                                 variables)
  before = variables['batch_stats']['SeparableBlock_1']['BatchNorm_1']['mean']
  after = updated['batch_stats']['SeparableBlock_1']['BatchNorm_1']['mean']
  np.testing.assert_array_equal(after[0, 8:], before[0, 8:])
  assert np.all(after[0, :8] != before[0, :8])
  assert np.all(after[1] != before[1])


def test_binary_connect_forward_gradient_and_clipping():
  model = lib_models.SeparableCNN((8, 16), (1, 2), 4, 10)
  digits = embedded.load_digits()
  variables = jax.jit(model.init)(jax.random.key(0), digits['image'][:1])
  params = variables['params']
  loss_fn, _ = classifier.classifier_fns(model, input_key='image')
  binary_loss, _ = binary_connect.binarized_fns(loss_fn, None)
  batch = batches.train_batch(digits, 32, 0, seed=0)
  model_state = {'batch_stats': variables['batch_stats']}

  # Every kernel the forward pass uses is +-(its output channel's scale).
  @jax.jit
  def kernels_seen(params):
    seen = {}

    def record(next_fun, args, kwargs, context):
      if isinstance(context.module, (nn.Conv, nn.Dense)):
        seen[context.module.path] = context.module.get_variable('params',
                                                                'kernel')
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
      binary_loss(params, model_state, batch, jax.random.key(0))
    return seen

  seen = kernels_seen(params)
  assert len(seen) == len(_kernels(params)) == 6
  for path, kernel in seen.items():
    real = np.asarray(functools.reduce(lambda tree, name: tree[name], path,
                                       params)['kernel'])
    scale = np.abs(real).mean(axis=tuple(range(real.ndim - 1)))
    np.testing.assert_allclose(np.abs(kernel), np.broadcast_to(
        scale, kernel.shape), rtol=1e-6)
    np.testing.assert_array_equal(np.sign(kernel), np.where(real >= 0, 1, -1))

  # Straight through: the real weights get the binarized weights' gradient.
  def loss(p):
    return loss_fn(p, model_state, batch, jax.random.key(0))[0]

  through, at_binary = jax.jit(lambda p: (
      jax.grad(lambda p: binary_loss(p, model_state, batch,
                                     jax.random.key(0))[0])(p),
      jax.grad(loss)(binary_connect.binarize_kernels(p))))(params)
  chex.assert_tree_all_finite(through)
  chex.assert_trees_all_close(through, at_binary, rtol=1e-5, atol=1e-7)

  # Large steps: the real kernels end clipped to [-1, 1], some at the bounds.
  tx = optax.chain(optax.sgd(30.0), binary_connect.clip_kernels())
  mesh = mesh_lib.make_mesh(1)
  state = jax.device_put(train_state.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
      model_state=model_state, key=jax.random.key(0)),
                         mesh_lib.replicated(mesh))
  train_step = steps.make_train_step(binary_loss, tx, mesh)
  for step in range(3):
    state, _ = train_step(state, mesh_lib.shard_batch(
        batches.train_batch(digits, 32, step, seed=0), mesh))
  kernels = np.concatenate([k.ravel() for k in _kernels(state.params)])
  assert np.abs(kernels).max() <= 1.0
  assert np.sum(np.abs(kernels) == 1.0) > 10
  # Stored: 1 bit per weight, a float32 scale per channel, the bias as is.
  tiny = {'params': {'Conv_0': {'kernel': np.ones((3, 3, 1, 4), np.float32),
                                'bias': np.ones(4, np.float32)}}}
  assert binary_connect.binary_bytes(tiny) == 5 + 16 + 16


def test_hint_loss_is_zero_on_the_teachers_own_features():
  np.testing.assert_allclose(fitnets.hint_loss(
      jnp.ones((2, 2, 2, 3)), jnp.zeros((2, 2, 2, 3))), [6.0, 6.0])
  # The teacher is the student itself and the regressor the identity.
  student = lib_models.SeparableCNN((8, 16), (1, 2), 4, 10, batch_norm=False)
  hint_net = fitnets.HintNet(student, 'SeparableBlock_1', 16)
  variables = jax.jit(hint_net.init)(jax.random.key(0), IMAGES)
  regressor = {'kernel': jnp.eye(16)[None, None], 'bias': jnp.zeros(16)}
  params = {**variables['params'], 'regressor': regressor}

  def teacher_hint(images):
    return fitnets.layer_output(student.apply, 'SeparableBlock_1',
                                {'params': params['student']}, images)[1]

  loss_fn, eval_fn = fitnets.hint_fns(hint_net, teacher_hint)
  batch = {'image': IMAGES}
  loss = jax.jit(lambda p: loss_fn(p, {}, batch, jax.random.key(0))[0])
  assert float(loss(params)) == pytest.approx(0.0, abs=1e-8)
  chex.assert_shape(eval_fn(params, {}, batch)['hint_loss'], (6,))
  shifted = {**params, 'regressor': {**regressor, 'bias': jnp.full(16, 0.1)}}
  assert float(loss(shifted)) > 0.1


def test_the_hint_stage_moves_the_students_features_to_the_teachers():
  student = lib_models.SeparableCNN((8, 16, 16), (1, 2, 1), 4, 10)
  teacher = lib_models.ResNet((1, 1), 8, 10)  # random, frozen
  digits = embedded.load_digits()
  teacher_variables = jax.jit(teacher.init)(jax.random.key(7),
                                            digits['image'][:1])

  def teacher_hint(images):
    return fitnets.layer_output(teacher.apply, 'ResidualBlock_1',
                                teacher_variables, images)[1]

  hint_net = fitnets.HintNet(student, 'SeparableBlock_1', 16)
  loss_fn, eval_fn = fitnets.hint_fns(hint_net, teacher_hint)
  mesh = mesh_lib.make_mesh(1)
  tx = optax.adam(1e-2)
  state = train_state.create_train_state(hint_net, tx, digits['image'][:1],
                                         jax.random.key(0), mesh)
  held_out = {'image': digits['image'][-256:]}
  hint = jax.jit(lambda s: eval_fn(s.params, s.model_state,
                                   held_out)['hint_loss'].mean())
  train_step = steps.make_train_step(loss_fn, tx, mesh)
  start, initial = hint(state), jax.device_get(state.params['student'])
  for step in range(40):
    state, metrics = train_step(state, mesh_lib.shard_batch(
        batches.train_batch(digits, 64, step, seed=0), mesh))
  chex.assert_tree_all_finite(metrics)
  assert float(hint(state)) < 0.9 * float(start)
  trained = state.params['student']
  # The layers up to the guided one moved; those after it have no gradient.
  assert np.any(trained['SeparableBlock_0']['Conv_1']['kernel']
                != initial['SeparableBlock_0']['Conv_1']['kernel'])
  chex.assert_trees_all_equal(trained['SeparableBlock_2'],
                              initial['SeparableBlock_2'])
  chex.assert_trees_all_equal(trained['Dense_0'], initial['Dense_0'])


@pytest.mark.parametrize('field, value, message', [
    ('slimmable.widths', (0.5, 0.25), 'increasing'),
    ('slimmable.widths', (0.5, 1.5), 'increasing'),
    ('fitnets.hint_steps', 0, 'hint_steps'),
    ('fitnets.hint_layer', 'ResidualBlock_9', 'not a block of the teacher'),
    ('fitnets.guided_layer', 'Conv_0', 'not a block of the student'),
    ('model.rank', 4, "method='slimmable' needs"),
])
def test_config_errors_name_the_field(field, value, message):
  config = config_lib.get_config()
  config.method = ('slimmable' if field.startswith(('slimmable', 'model'))
                   else 'fitnets')
  config_lib.validate(config)
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(config)
