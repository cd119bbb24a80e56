r"""Train-step throughput of the HW2 MLP: the library's step, a bare jit step, PyTorch.

The HW2 (frame-wise phoneme classification) shape: 429 inputs, three hidden
ReLU layers of 1024, 41 classes, softmax cross-entropy, Adam (lr 1e-3),
float32, on the CPU. Three ways, in the same process, interleaved repeat by
repeat so that load from other processes hits all three alike:

  library       lib.steps.make_train_step on lib.mesh.make_mesh(), state from
                lib.train_state.create_train_state, batches placed on the mesh
                with lib.mesh.shard_batch before the clock starts (the step itself)
  library+feed  the same step, with shard_batch of a host numpy batch inside
                the timed loop (what the trainer pays per step)
  bare jit      jax.jit of a hand-written step: plain params dict, optax.adam,
                state donated, batches pre-placed with jax.device_put
  pytorch       nn.Sequential + torch.optim.Adam, zero_grad/backward/step,
                torch.set_num_threads(--threads)

Each repeat times --steps steps after --warmup steps (JAX: compiled and run
before timing, then jax.block_until_ready at the end of every timed repeat).
The reported number is the median over --repeats of samples/s.

  python tests/benchmarks/step_throughput.py [--batch_size=256] [--steps=40] \
      [--repeats=7] [--threads=N] [--out=results.json]

XLA flags go in the XLA_FLAGS environment variable as usual.
"""

import json
import os
import platform
import statistics
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # a CPU-vs-CPU comparison

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import optax
import torch
from torch import nn

from lib import mesh as mesh_lib
from lib import models
from lib import steps
from lib import train_state
import machine  # a sibling: run as a script

flags.DEFINE_integer('batch_size', 256, 'Global batch size.')
flags.DEFINE_integer('steps', 40, 'Timed steps per repeat.')
flags.DEFINE_integer('warmup', 5, 'Untimed steps before the first repeat.')
flags.DEFINE_integer('repeats', 7, 'Timed repeats; the median is reported.')
machine.define_threads_flag()
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')
flags.DEFINE_list('only', [], 'Subset of library,library+feed,bare_jit,pytorch.')

FLAGS = flags.FLAGS


INPUTS, HIDDEN, CLASSES = 429, (1024, 1024, 1024), 41
LEARNING_RATE = 1e-3
NUM_BATCHES = 4  # distinct batches cycled through, so no step sees constants
METHODS = ('library', 'library+feed', 'bare_jit', 'pytorch')


def host_batches(batch_size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return [{'input': rng.normal(size=(batch_size, INPUTS)).astype(np.float32),
           'label': rng.integers(0, CLASSES, batch_size).astype(np.int32)}
          for _ in range(NUM_BATCHES)]


def library_runners(batches):
  """run(n) for the library's step on pre-placed and on host batches."""

  mesh = mesh_lib.make_mesh()
  model = models.MLP(HIDDEN, CLASSES)
  tx = optax.adam(LEARNING_RATE)

  def loss_fn(params, model_state, batch, key):
    logits, model_state = models.apply_model(
        model, params, model_state, batch['input'], train=True, key=key)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()
    return loss, ({}, model_state)

  train_step = steps.make_train_step(loss_fn, tx, mesh)
  state = train_state.create_train_state(
      model, tx, batches[0]['input'], jax.random.key(0), mesh)
  placed = [mesh_lib.shard_batch(b, mesh) for b in batches]

  def run(n, feed):
    nonlocal state
    for i in range(n):
      batch = (mesh_lib.shard_batch(batches[i % NUM_BATCHES], mesh) if feed
               else placed[i % NUM_BATCHES])
      state, metrics = train_step(state, batch)
    jax.block_until_ready((state, metrics))

  return {'library': lambda n: run(n, feed=False),
          'library+feed': lambda n: run(n, feed=True)}


def bare_jit_runner(batches):
  """run(n) for a hand-written jitted step: the floor the library should reach."""

  sizes = (INPUTS, *HIDDEN, CLASSES)
  keys = jax.random.split(jax.random.key(1), len(sizes) - 1)
  params = {f'layer{i}': {
      'w': jax.random.normal(k, (n_in, n_out)) / jnp.sqrt(n_in),
      'b': jnp.zeros((n_out,))}
            for i, (k, n_in, n_out) in enumerate(zip(keys, sizes, sizes[1:]))}
  tx = optax.adam(LEARNING_RATE)
  opt_state = tx.init(params)

  def loss_fn(params, batch):
    x = batch['input']
    for i in range(len(sizes) - 1):
      layer = params[f'layer{i}']
      x = x @ layer['w'] + layer['b']
      if i < len(sizes) - 2:
        x = jax.nn.relu(x)
    return optax.softmax_cross_entropy_with_integer_labels(
        x, batch['label']).mean()

  @jax.jit(donate_argnums=(0, 1))
  def train_step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  placed = [jax.device_put(b) for b in batches]

  def run(n):
    nonlocal params, opt_state
    for i in range(n):
      params, opt_state, loss = train_step(params, opt_state,
                                           placed[i % NUM_BATCHES])
    jax.block_until_ready((params, opt_state, loss))

  return run


def pytorch_runner(batches, threads: int):
  """run(n) for the same model and optimizer in plain PyTorch on the CPU."""

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  sizes = (INPUTS, *HIDDEN, CLASSES)
  layers = []
  for n_in, n_out in zip(sizes, sizes[1:]):
    layers += [nn.Linear(n_in, n_out), nn.ReLU()]
  model = nn.Sequential(*layers[:-1])
  optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  criterion = nn.CrossEntropyLoss()
  tensors = [(torch.from_numpy(b['input']), torch.from_numpy(b['label']).long())
             for b in batches]

  def run(n):
    for i in range(n):
      x, y = tensors[i % NUM_BATCHES]
      optimizer.zero_grad()
      criterion(model(x), y).backward()
      optimizer.step()

  return run


def environment(threads: int) -> dict:
  info = {'python': platform.python_version(), 'jax': jax.__version__,
          'devices': [str(d) for d in jax.devices()],
          'cpu_cores': len(os.sched_getaffinity(0)), 'threads': threads,
          'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  info['torch'] = torch.__version__
  return info


def main(argv):
  del argv
  threads = machine.pin_threads(FLAGS.threads)
  methods = FLAGS.only or METHODS
  unknown = set(methods) - set(METHODS)
  if unknown:
    raise app.UsageError(f'--only: unknown {sorted(unknown)}; use {METHODS}')

  batches = host_batches(FLAGS.batch_size)
  runners = {}
  if {'library', 'library+feed'} & set(methods):
    runners.update(library_runners(batches))
  if 'bare_jit' in methods:
    runners['bare_jit'] = bare_jit_runner(batches)
  if 'pytorch' in methods:
    runners['pytorch'] = pytorch_runner(batches, threads)
  runners = {name: runners[name] for name in methods}

  for run in runners.values():
    run(FLAGS.warmup)
  samples_per_s = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      start = time.perf_counter()
      run(FLAGS.steps)
      elapsed = time.perf_counter() - start
      samples_per_s[name].append(FLAGS.steps * FLAGS.batch_size / elapsed)

  medians = {name: statistics.median(v) for name, v in samples_per_s.items()}
  print(f'batch {FLAGS.batch_size}, {FLAGS.steps} steps x {FLAGS.repeats} '
        f'repeats, {threads} threads')
  print(f'{"method":<14}{"samples/s":>11}{"ms/step":>9}{"min":>9}{"max":>9}')
  for name, median in medians.items():
    print(f'{name:<14}{median:>11.0f}'
          f'{1e3 * FLAGS.batch_size / median:>9.2f}'
          f'{min(samples_per_s[name]):>9.0f}{max(samples_per_s[name]):>9.0f}')

  ratios = {}
  for num, den, target in (('library', 'pytorch', 1.8),
                           ('library', 'bare_jit', 0.95)):
    if num in medians and den in medians:
      ratio = medians[num] / medians[den]
      ratios[f'{num}/{den}'] = {'ratio': ratio, 'target': target}
      print(f'{num}/{den}: {ratio:.3f} (target >= {target}: '
            f'{"met" if ratio >= target else "NOT met"})')

  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'config': {'batch_size': FLAGS.batch_size,
                            'steps': FLAGS.steps, 'warmup': FLAGS.warmup,
                            'repeats': FLAGS.repeats},
                 'environment': environment(threads),
                 'median_samples_per_s': medians,
                 'samples_per_s': samples_per_s, 'ratios': ratios}, f,
                indent=2)


if __name__ == '__main__':
  app.run(main)
