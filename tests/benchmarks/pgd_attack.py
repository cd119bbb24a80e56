r"""PGD-10 attack throughput: one jitted JAX function against a PyTorch loop.

The HW10 setting: a batch of CIFAR-size images (32x32x3), an L-inf budget of
8/255, 10 steps of 2/255 from a uniform random start, the same CNN
(lib.models.SmallCNN: 3x3 conv -> batch norm -> ReLU -> 2x2 max-pool per
block, global average pool, linear head; inference-mode batch norm) with the
SAME weights in both frameworks (copied from flax to torch; the clean logits
are checked to agree). Two ways, in the same process, interleaved repeat by
repeat so that load from other processes hits both alike:

  jax       projects.adversarial.attacks.pgd under one jax.jit: the 10 steps
            are a lax.fori_loop over the whole batch, compiled before timing
  pytorch   the textbook loop: per step, requires_grad on the images,
            forward, torch.autograd.grad, signed step, clamp to the ball and
            to [0, 1]; torch.set_num_threads(--threads)

The reported number is the median over --repeats of attacked images/s (each
repeat runs --attacks attacks of the batch).

  python tests/benchmarks/pgd_attack.py [--batch_size=128] [--channels=32,64] \
      [--attacks=3] [--repeats=5] [--threads=N] [--out=results.json]
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
import torch
from torch import nn

from lib import models
from projects.adversarial import attacks
from torch_models import copy_weights  # a sibling: run as a script
from torch_models import TorchSmallCNN
import machine  # a sibling: run as a script

flags.DEFINE_integer('batch_size', 128, 'Images attacked at once.')
flags.DEFINE_list('channels', ['32', '64'], 'SmallCNN block widths.')
flags.DEFINE_integer('num_steps', 10, 'PGD steps.')
flags.DEFINE_integer('attacks', 3, 'Timed attacks of the batch per repeat.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats; the median is reported.')
machine.define_threads_flag()
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')

FLAGS = flags.FLAGS
EPSILON, STEP_SIZE, CLASSES = 8 / 255, 2 / 255, 10


def torch_pgd(model, images, labels, num_steps: int):
  """PGD with random start, the usual PyTorch way."""
  criterion = nn.CrossEntropyLoss(reduction='sum')
  adversarial = images + torch.empty_like(images).uniform_(-EPSILON, EPSILON)
  adversarial = adversarial.clamp(0, 1)
  for _ in range(num_steps):
    adversarial.requires_grad_(True)
    loss = criterion(model(adversarial), labels)
    grad, = torch.autograd.grad(loss, adversarial)
    adversarial = adversarial.detach() + STEP_SIZE * grad.sign()
    adversarial = torch.min(torch.max(adversarial, images - EPSILON),
                            images + EPSILON).clamp(0, 1)
  return adversarial


def main(argv):
  del argv
  threads = machine.pin_threads(FLAGS.threads)
  torch.set_num_threads(threads)
  channels = tuple(int(c) for c in FLAGS.channels)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(FLAGS.batch_size, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, CLASSES, FLAGS.batch_size).astype(np.int32)

  model = models.SmallCNN(channels, CLASSES)
  variables = model.init(jax.random.key(0), images[:1])
  # Non-trivial running statistics, so inference-mode batch norm does work.
  variables = dict(variables, batch_stats=jax.tree.map(
      lambda x: x + 0.1 * jax.random.uniform(jax.random.key(1), x.shape),
      variables['batch_stats']))
  torch_model = copy_weights(variables, TorchSmallCNN(channels))
  torch_images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  torch_labels = torch.from_numpy(labels).long()
  with torch.no_grad():
    torch_logits = torch_model(torch_images).numpy()
  jax_logits = np.asarray(model.apply(variables, images))
  max_diff = float(np.abs(torch_logits - jax_logits).max())
  assert max_diff < 1e-3, f'the two models disagree: {max_diff}'

  @jax.jit
  def jax_pgd(variables, images, labels, key):
    return attacks.pgd(lambda x: model.apply(variables, x), images, labels,
                       key, epsilon=EPSILON, step_size=STEP_SIZE,
                       num_steps=FLAGS.num_steps)

  placed = jax.device_put((images, labels))
  key = jax.random.key(2)

  def run_jax(n):
    for i in range(n):
      out = jax_pgd(variables, *placed, jax.random.fold_in(key, i))
    jax.block_until_ready(out)
    return np.asarray(out)

  def run_torch(n):
    for _ in range(n):
      out = torch_pgd(torch_model, torch_images, torch_labels,
                      FLAGS.num_steps)
    return out.permute(0, 2, 3, 1).numpy()

  runners = {'jax': run_jax, 'pytorch': run_torch}
  adversarial = {name: run(1) for name, run in runners.items()}  # warm-up
  accuracy = {name: float(np.mean(np.asarray(
      model.apply(variables, x)).argmax(-1) == labels))
              for name, x in adversarial.items()}
  images_per_s = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      start = time.perf_counter()
      run(FLAGS.attacks)
      elapsed = time.perf_counter() - start
      images_per_s[name].append(FLAGS.attacks * FLAGS.batch_size / elapsed)

  medians = {name: statistics.median(v) for name, v in images_per_s.items()}
  ratio = medians['jax'] / medians['pytorch']
  print(f'PGD-{FLAGS.num_steps}, batch {FLAGS.batch_size} of 32x32x3, '
        f'SmallCNN{channels}, {FLAGS.attacks} attacks x {FLAGS.repeats} '
        f'repeats, {threads} threads; clean logits agree to {max_diff:.1e}')
  print(f'{"method":<10}{"images/s":>10}{"ms/attack":>11}{"min":>9}{"max":>9}'
        f'{"adv. acc.":>11}')
  for name, median in medians.items():
    print(f'{name:<10}{median:>10.0f}'
          f'{1e3 * FLAGS.batch_size / median:>11.1f}'
          f'{min(images_per_s[name]):>9.0f}{max(images_per_s[name]):>9.0f}'
          f'{accuracy[name]:>11.3f}')
  print(f'jax/pytorch: {ratio:.2f}')
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'config': {'batch_size': FLAGS.batch_size,
                            'channels': channels,
                            'num_steps': FLAGS.num_steps,
                            'attacks': FLAGS.attacks,
                            'repeats': FLAGS.repeats},
                 'environment': {
                     'python': platform.python_version(),
                     'jax': jax.__version__, 'torch': torch.__version__,
                     'threads': threads,
                     'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')},
                 'median_images_per_s': medians,
                 'images_per_s': images_per_s, 'ratio': ratio,
                 'adversarial_accuracy': accuracy}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
