r"""Deep-ensemble training throughput: M members vmapped in one step against one after another.

Both ways train the same M networks (projects/ensemble's members, Adam 1e-3,
softmax cross-entropy, each member its own batch of `--batch_size`), in one
process on JAX's default backend:
  vmapped     `deep.make_ensemble_step`: one jitted step over the stacked
              members (vmap), sharded over `lib.mesh.make_mesh()`, donated.
  sequential  `deep.make_member_step` jitted once (donated) and called for
              each member in turn, each with its own state and batch.
Batches are put on the devices before the clock starts; every repeat ends in
`jax.block_until_ready`. The two run round-robin, one repeat each in turn, so
load from other processes hits both alike. The table gives the median
member-examples/s (M x batch per ensemble step) and each variant's ratio to
sequential (the issue's target: >= 1.5 on CPU), with the CPU model.

  python tests/benchmarks/ensemble_throughput.py [--models=mlp,lenet5] \
      [--members=10] [--batch_size=128] [--steps=10] [--repeats=5] [--out=FILE]
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np
import optax

import lib  # noqa: F401  (its XLA CPU defaults, before JAX starts)
from lib import mesh as mesh_lib
from projects.ensemble import deep
from projects.ensemble import networks

import machine  # a sibling: run as a script

flags.DEFINE_list('models', ['mlp', 'lenet5'], 'Members to time: mlp (8x8 '
                  'digits, 256 hidden) and lenet5 (28x28 MNIST).')
flags.DEFINE_integer('members', 10, 'Ensemble size M.')
flags.DEFINE_integer('batch_size', 128, 'Examples per member per step.')
flags.DEFINE_integer('steps', 10, 'Timed ensemble steps per repeat.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats; the median is reported.')
flags.DEFINE_string('out', '', 'Optional JSON file for every repeat.')
FLAGS = flags.FLAGS

SHAPES = {'mlp': (8, 8, 1), 'lenet5': (28, 28, 1)}
NUM_BATCHES = 3


def make_model(name: str):
  config = ml_collections.ConfigDict(dict(model=dict(
      name=name, features=(256,), channels=(6, 16, 120), hidden=84)))
  return networks.make_network(config, 10)


def host_batches(name: str, members: int):
  rng = np.random.default_rng(0)
  shape = (FLAGS.batch_size, members, *SHAPES[name])
  return [{'image': rng.random(shape, dtype=np.float32),
           'label': rng.integers(0, 10, shape[:2]).astype(np.int32)}
          for _ in range(NUM_BATCHES)]


def vmapped_runner(name: str):
  model, tx, mesh = make_model(name), optax.adam(1e-3), mesh_lib.make_mesh()
  batches = host_batches(name, FLAGS.members)
  keys = deep.member_keys(0, FLAGS.members)
  state = deep.init_ensemble(model, tx, batches[0]['image'][:1, 0], keys, mesh)
  step = deep.make_ensemble_step(model, tx, mesh)
  placed = [mesh_lib.shard_batch(b, mesh) for b in batches]

  def run(n):
    nonlocal state
    for i in range(n):
      state, metrics = step(state, placed[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))

  return run


def sequential_runner(name: str):
  model, tx = make_model(name), optax.adam(1e-3)
  batches = host_batches(name, FLAGS.members)
  keys = deep.member_keys(0, FLAGS.members)
  init = jax.jit(lambda key: deep.init_member(
      model, tx, batches[0]['image'][:1, 0], key))
  states = [init(k) for k in keys]
  step = jax.jit(deep.make_member_step(model, tx), donate_argnums=0)
  placed = [[jax.device_put({k: v[:, m] for k, v in b.items()})
             for m in range(FLAGS.members)] for b in batches]

  def run(n):
    metrics = None
    for i in range(n):
      for m in range(FLAGS.members):
        states[m], metrics = step(states[m], placed[i % NUM_BATCHES][m])
    jax.block_until_ready((states, metrics))

  return run


def main(argv):
  del argv
  cpu = machine.cpu_model()
  print(f'jax {jax.__version__}, {len(jax.devices())} x '
        f'{jax.devices()[0].device_kind}, CPU {cpu}')
  results = []
  for name in FLAGS.models:
    runners = {'vmapped': vmapped_runner(name),
               'sequential': sequential_runner(name)}
    for kind, run in runners.items():
      started = time.perf_counter()
      run(2)  # compile and warm up
      print(f'{name} {kind}: warm-up {time.perf_counter() - started:.1f} s',
            flush=True)
    times = {kind: [] for kind in runners}
    for _ in range(FLAGS.repeats):
      for kind, run in runners.items():
        started = time.perf_counter()
        run(FLAGS.steps)
        times[kind].append(time.perf_counter() - started)
    examples = FLAGS.members * FLAGS.batch_size * FLAGS.steps
    rates = {kind: examples / statistics.median(t) for kind, t in times.items()}
    results.append({'model': name, 'times': times, 'rates': rates,
                    'ratios': {k: r / rates['sequential']
                               for k, r in rates.items()}})

  print(f'\nM = {FLAGS.members}, batch {FLAGS.batch_size} per member, '
        f'{FLAGS.steps} steps x {FLAGS.repeats} repeats, CPU {cpu}')
  print('| model | variant | member-examples/s | ms/step | x sequential |\n'
        '|---|---|---|---|---|')
  for r in results:
    for kind, rate in r['rates'].items():
      ms = 1000 * statistics.median(r['times'][kind]) / FLAGS.steps
      print(f"| {r['model']} | {kind} | {rate:.0f} | {ms:.1f} | "
            f"{r['ratios'][kind]:.2f} |")
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'cpu': cpu, 'jax': jax.__version__,
                 'members': FLAGS.members, 'batch_size': FLAGS.batch_size,
                 'steps': FLAGS.steps, 'results': results}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
