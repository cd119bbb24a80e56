r"""CNN train-step throughput (HW3): the library's step, a bare jit step, PyTorch.

The model is lib.models.SmallCNN (3x3 conv -> batch norm -> ReLU -> 2x2
max-pool per block, global average pool, linear head; widths --channels),
trained on 32x32x3 images (CIFAR-10 size), 10 classes, softmax cross-entropy,
Adam (lr 1e-3), float32, on the CPU. Three ways, in the same process,
interleaved repeat by repeat so that load from other processes hits them alike:

  library   lib.steps.make_train_step with lib.classifier's loss on
            lib.mesh.make_mesh(), batches placed on the mesh before timing
  bare_jit  jax.jit of a hand-written step: the same flax module, plain
            params and batch-norm statistics, optax.adam, state donated
  pytorch   the same network (tests/benchmarks/torch_models.py) with
            torch.optim.Adam, zero_grad/backward/step, channels-last or not
            (--torch_channels_last), torch.set_num_threads(--threads)

The reported number is the median over --repeats of images/s.

  python tests/benchmarks/cnn_step_throughput.py [--batch_size=128] \
      [--channels=32,64,128] [--steps=10] [--repeats=7] [--threads=N] \
      [--out=results.json]

XLA flags go in the XLA_FLAGS environment variable as usual. `import lib` adds
--xla_cpu_experimental_ynn_fusion_type=-individual_convolution (XLA's Eigen
convolutions rather than YNNPACK's) unless XLA_FLAGS already sets that flag, so
XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution
times jax's own default (YNNPACK convolutions).
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
import numpy as np
import optax
import torch

from lib import classifier
from lib import mesh as mesh_lib
from lib import models
from lib import steps
from lib import train_state
from torch_models import TorchSmallCNN  # a sibling: run as a script
import machine  # a sibling: run as a script

flags.DEFINE_integer('batch_size', 128, 'Global batch size.')
flags.DEFINE_list('channels', ['32', '64', '128'], 'SmallCNN block widths.')
flags.DEFINE_integer('steps', 10, 'Timed steps per repeat.')
flags.DEFINE_integer('warmup', 3, 'Untimed steps before the first repeat.')
flags.DEFINE_integer('repeats', 7, 'Timed repeats; the median is reported.')
machine.define_threads_flag()
flags.DEFINE_bool('torch_channels_last', False,
                  'Run PyTorch in channels-last (NHWC) memory format.')
flags.DEFINE_list('only', [], 'Subset of library,bare_jit,pytorch.')
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')

FLAGS = flags.FLAGS

CLASSES, LEARNING_RATE, NUM_BATCHES = 10, 1e-3, 4
METHODS = ('library', 'bare_jit', 'pytorch')


def host_batches(batch_size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return [{'input': rng.uniform(size=(batch_size, 32, 32, 3)).astype(
      np.float32),
           'label': rng.integers(0, CLASSES, batch_size).astype(np.int32)}
          for _ in range(NUM_BATCHES)]


def library_runner(model, batches):
  mesh = mesh_lib.make_mesh()
  tx = optax.adam(LEARNING_RATE)
  loss_fn, _ = classifier.classifier_fns(model)
  train_step = steps.make_train_step(loss_fn, tx, mesh)
  state = train_state.create_train_state(
      model, tx, batches[0]['input'], jax.random.key(0), mesh)
  placed = [mesh_lib.shard_batch(b, mesh) for b in batches]

  def run(n):
    nonlocal state
    for i in range(n):
      state, metrics = train_step(state, placed[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))

  return run


def bare_jit_runner(model, batches):
  variables = model.init(jax.random.key(0), batches[0]['input'][:1])
  params, stats = variables['params'], variables['batch_stats']
  tx = optax.adam(LEARNING_RATE)
  opt_state = tx.init(params)

  def loss_fn(params, stats, batch):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': stats}, batch['input'], train=True,
        mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()
    return loss, updates['batch_stats']

  @jax.jit(donate_argnums=(0, 1, 2))
  def train_step(params, stats, opt_state, batch):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, stats, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  placed = [jax.device_put(b) for b in batches]

  def run(n):
    nonlocal params, stats, opt_state
    for i in range(n):
      params, stats, opt_state, loss = train_step(
          params, stats, opt_state, placed[i % NUM_BATCHES])
    jax.block_until_ready((params, loss))

  return run


def pytorch_runner(channels, batches, channels_last: bool):
  torch.manual_seed(0)
  model = TorchSmallCNN(channels, num_outputs=CLASSES).train()
  memory_format = (torch.channels_last if channels_last
                   else torch.contiguous_format)
  model = model.to(memory_format=memory_format)
  optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  criterion = torch.nn.CrossEntropyLoss()
  tensors = [(torch.from_numpy(b['input']).permute(0, 3, 1, 2).contiguous(
      memory_format=memory_format), torch.from_numpy(b['label']).long())
             for b in batches]

  def run(n):
    for i in range(n):
      x, y = tensors[i % NUM_BATCHES]
      optimizer.zero_grad()
      criterion(model(x), y).backward()
      optimizer.step()

  return run


def main(argv):
  del argv
  threads = machine.pin_threads(FLAGS.threads)
  torch.set_num_threads(threads)
  methods = FLAGS.only or METHODS
  unknown = set(methods) - set(METHODS)
  if unknown:
    raise app.UsageError(f'--only: unknown {sorted(unknown)}; use {METHODS}')
  channels = tuple(int(c) for c in FLAGS.channels)
  model = models.SmallCNN(channels, CLASSES)
  batches = host_batches(FLAGS.batch_size)
  builders = {
      'library': lambda: library_runner(model, batches),
      'bare_jit': lambda: bare_jit_runner(model, batches),
      'pytorch': lambda: pytorch_runner(channels, batches,
                                        FLAGS.torch_channels_last)}
  runners = {name: builders[name]() for name in methods}

  for run in runners.values():
    run(FLAGS.warmup)
  images_per_s = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      start = time.perf_counter()
      run(FLAGS.steps)
      elapsed = time.perf_counter() - start
      images_per_s[name].append(FLAGS.steps * FLAGS.batch_size / elapsed)

  medians = {name: statistics.median(v) for name, v in images_per_s.items()}
  print(f'SmallCNN{channels} on 32x32x3, batch {FLAGS.batch_size}, '
        f'{FLAGS.steps} steps x {FLAGS.repeats} repeats, {threads} threads, '
        f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  print(f'{"method":<10}{"images/s":>10}{"ms/step":>9}{"min":>8}{"max":>8}')
  for name, median in medians.items():
    print(f'{name:<10}{median:>10.0f}{1e3 * FLAGS.batch_size / median:>9.1f}'
          f'{min(images_per_s[name]):>8.0f}{max(images_per_s[name]):>8.0f}')
  ratios = {}
  for num, den, target in (('library', 'pytorch', 1.0),
                           ('bare_jit', 'pytorch', None),
                           ('library', 'bare_jit', 0.95)):
    if num in medians and den in medians:
      ratio = medians[num] / medians[den]
      ratios[f'{num}/{den}'] = {'ratio': ratio, 'target': target}
      verdict = ('' if target is None else
                 f' (target >= {target}: '
                 f'{"met" if ratio >= target else "NOT met"})')
      print(f'{num}/{den}: {ratio:.3f}{verdict}')

  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'config': {'batch_size': FLAGS.batch_size,
                            'channels': channels, 'steps': FLAGS.steps,
                            'repeats': FLAGS.repeats,
                            'torch_channels_last': FLAGS.torch_channels_last},
                 'environment': {
                     'python': platform.python_version(),
                     'jax': jax.__version__, 'torch': torch.__version__,
                     'threads': threads,
                     'xla_flags': os.environ.get('XLA_FLAGS', ''),
                     'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')},
                 'median_images_per_s': medians,
                 'images_per_s': images_per_s, 'ratios': ratios}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
