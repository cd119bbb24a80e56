r"""EWC's diagonal Fisher: JAX vmap(grad) against PyTorch per-example backward passes.

The diagonal (empirical) Fisher of an MLP 784-256-256-10 (ReLU, about 270k
parameters) over N examples, F_k = (1/N) sum_i (d log p(y_i|x_i) / d theta_k)^2,
float32 on the CPU, computed four ways in one process, interleaved repeat by
repeat so that load from other processes hits all of them alike:

  jax_vmap       projects.lifelong.methods.fisher_diagonal: one jitted call
                 over all N examples, jax.vmap of jax.grad over --chunk
                 examples at a time inside a lax.scan, squared and summed;
                 inputs placed before the clock starts
  torch_loop     the usual PyTorch way: for each example zero_grad, forward,
                 log_softmax[y].backward(), accumulate grad ** 2
  torch_func     torch.func.vmap(torch.func.grad(...)) over --torch_chunk examples
                 (PyTorch's own per-example gradients), squared and summed
  torch_batched  NOT a Fisher: one backward pass of the summed batch loss,
                 squared (the square of the sum, the common mistake); the
                 floor any per-example method pays against

All start from the same weights and data; the script checks that the three
Fishers agree (max relative error printed) before timing. Reported: median
seconds per Fisher over --repeats, and the ratios torch_loop / jax_vmap and
torch_func / jax_vmap (how many times faster JAX is).

  python tests/benchmarks/ewc_fisher.py [--examples=1000] [--chunk=16] \
      [--repeats=5] [--threads=N] [--out=results.json]
"""

import json
import os
import platform
import statistics
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # a CPU-vs-CPU comparison

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from projects.lifelong import methods
import machine  # a sibling: run as a script

flags.DEFINE_integer('examples', 1000, 'N: examples the Fisher averages over.')
flags.DEFINE_integer('chunk', 16, 'JAX: examples per vmap inside the scan.')
flags.DEFINE_integer('torch_chunk', 250, 'torch.func: examples per vmap call.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats; the median is reported.')
machine.define_threads_flag()
flags.DEFINE_list('only', [], 'Subset of jax_vmap,torch_loop,torch_func,'
                  'torch_batched.')
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')
FLAGS = flags.FLAGS

SIZES = (784, 256, 256, 10)
METHODS = ('jax_vmap', 'torch_loop', 'torch_func', 'torch_batched')


def make_data(num_examples: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  weights = []
  for n_in, n_out in zip(SIZES, SIZES[1:]):
    weights.append((rng.normal(size=(n_in, n_out)).astype(np.float32)
                    / np.sqrt(n_in), np.zeros(n_out, np.float32)))
  inputs = rng.random((num_examples, SIZES[0])).astype(np.float32)
  labels = rng.integers(0, SIZES[-1], num_examples).astype(np.int32)
  return weights, inputs, labels


def jax_runner(weights, inputs, labels, chunk):
  params = [{'w': jnp.asarray(w), 'b': jnp.asarray(b)} for w, b in weights]

  def apply_fn(params, x):
    for i, layer in enumerate(params):
      x = x @ layer['w'] + layer['b']
      if i < len(params) - 1:
        x = jax.nn.relu(x)
    return x

  fisher = jax.jit(lambda p, b: jax.tree.map(
      lambda x: x / len(inputs),
      methods.fisher_diagonal(apply_fn, p, b, chunk_size=chunk)))
  batch = jax.device_put({
      'input': inputs, 'label': labels,
      'class_mask': np.ones((len(inputs), SIZES[-1]), np.float32),
      'mask': np.ones(len(inputs), np.float32)})

  def run():
    total = jax.block_until_ready(fisher(params, batch))
    return [np.asarray(x) for layer in total for x in (layer['w'], layer['b'])]

  return run


def torch_runners(weights, inputs, labels, chunk, threads):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(threads)
  layers = []
  for w, b in weights:
    linear = nn.Linear(*w.shape)
    with torch.no_grad():
      linear.weight.copy_(torch.from_numpy(w.T))
      linear.bias.copy_(torch.from_numpy(b))
    layers += [linear, nn.ReLU()]
  model = nn.Sequential(*layers[:-1])
  x_all = torch.from_numpy(inputs)
  y_all = torch.from_numpy(labels).long()
  y_one_hot = torch.eye(SIZES[-1])[y_all]
  parameters = list(model.parameters())  # weight [out, in], bias per layer

  def as_numpy(tensors):  # JAX's layout: kernels [in, out]
    return [t.detach().numpy().T if t.ndim == 2 else t.detach().numpy()
            for t in tensors]

  def loop():
    fisher = [torch.zeros_like(p) for p in parameters]
    for i in range(len(x_all)):
      model.zero_grad()
      log_probs = torch.log_softmax(model(x_all[i:i + 1]), dim=-1)
      log_probs[0, y_all[i]].backward()
      for f, p in zip(fisher, parameters):
        f += p.grad ** 2
    return as_numpy([f / len(x_all) for f in fisher])

  named = {k: v.detach() for k, v in model.named_parameters()}

  def log_likelihood(params, x, y_one_hot):  # indexing by y breaks vmap
    logits = torch.func.functional_call(model, params, (x[None],))
    return (torch.log_softmax(logits, dim=-1)[0] * y_one_hot).sum()

  per_example = torch.func.vmap(torch.func.grad(log_likelihood),
                                in_dims=(None, 0, 0))

  def func():
    fisher = {k: torch.zeros_like(v) for k, v in named.items()}
    with torch.no_grad():
      for s in range(0, len(x_all), chunk):
        grads = per_example(named, x_all[s:s + chunk],
                             y_one_hot[s:s + chunk])
        for k in fisher:
          fisher[k] += (grads[k] ** 2).sum(0)
    return as_numpy([fisher[k] / len(x_all) for k in named])

  def batched():
    model.zero_grad()
    log_probs = torch.log_softmax(model(x_all), dim=-1)
    log_probs[torch.arange(len(x_all)), y_all].sum().backward()
    return as_numpy([p.grad ** 2 / len(x_all) for p in parameters])

  return {'torch_loop': loop, 'torch_func': func, 'torch_batched': batched}, (
      torch.__version__)


def max_relative_error(a, b) -> float:
  return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-30))
             for x, y in zip(a, b))


def main(argv):
  del argv
  threads = machine.pin_threads(FLAGS.threads)
  wanted = FLAGS.only or METHODS
  unknown = set(wanted) - set(METHODS)
  if unknown:
    raise app.UsageError(f'--only: unknown {sorted(unknown)}; use {METHODS}')

  weights, inputs, labels = make_data(FLAGS.examples)
  runners, torch_version = {}, None
  if 'jax_vmap' in wanted:
    runners['jax_vmap'] = jax_runner(weights, inputs, labels, FLAGS.chunk)
  if any(m.startswith('torch') for m in wanted):
    try:
      torch_all, torch_version = torch_runners(weights, inputs, labels,
                                               FLAGS.torch_chunk, threads)
      runners.update({k: v for k, v in torch_all.items() if k in wanted})
    except (ImportError, OSError) as e:
      print(f'PyTorch unavailable ({e}); timing JAX only')
  runners = {name: runners[name] for name in METHODS if name in runners}

  results = {name: run() for name, run in runners.items()}  # warm-up, compile
  reference = results.get('torch_loop', results.get('jax_vmap'))
  for name, fisher in results.items():
    note = ' (not a Fisher, expected to differ)' * (name == 'torch_batched')
    print(f'{name:<14} max relative difference to the reference: '
          f'{max_relative_error(fisher, reference):.2e}{note}')

  seconds = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      start = time.perf_counter()
      run()
      seconds[name].append(time.perf_counter() - start)
  medians = {name: statistics.median(v) for name, v in seconds.items()}

  print(f'\nFisher of an MLP {"-".join(map(str, SIZES))} over '
        f'{FLAGS.examples} examples, {FLAGS.repeats} repeats, {threads} '
        f'threads, JAX chunk {FLAGS.chunk}, torch.func chunk '
        f'{FLAGS.torch_chunk}')
  print(f'{"method":<14}{"s/Fisher":>10}{"examples/s":>12}{"min s":>9}'
        f'{"max s":>9}')
  for name, median in medians.items():
    print(f'{name:<14}{median:>10.4f}{FLAGS.examples / median:>12.0f}'
          f'{min(seconds[name]):>9.4f}{max(seconds[name]):>9.4f}')
  ratios = {}
  for slower in ('torch_loop', 'torch_func'):
    if slower in medians and 'jax_vmap' in medians:
      ratios[f'{slower}/jax_vmap'] = medians[slower] / medians['jax_vmap']
      print(f'{slower} / jax_vmap time: {ratios[f"{slower}/jax_vmap"]:.2f}x')

  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'config': {'examples': FLAGS.examples, 'chunk': FLAGS.chunk,
                            'torch_chunk': FLAGS.torch_chunk,
                            'repeats': FLAGS.repeats, 'threads': threads},
                 'environment': {
                     'python': platform.python_version(),
                     'jax': jax.__version__, 'torch': torch_version,
                     'xla_flags': os.environ.get('XLA_FLAGS', ''),
                     'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')},
                 'median_seconds': medians, 'seconds': seconds,
                 'ratios': ratios}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
