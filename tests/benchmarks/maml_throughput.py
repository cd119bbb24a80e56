r"""Meta-training throughput (tasks/s) of second-order MAML: JAX against PyTorch.

Two networks, as in the MAML paper:
  sinusoid  MLP 1-40-40-1, 10 shots (support) + 10 query points per task,
            meta-batch 25, 1 inner step (lr 0.01), MSE.
  omniglot  4 blocks of [3x3 conv 64, batch-stat norm, ReLU, 2x2 max pool] and
            a linear head, 5-way 1-shot, 1 query image per class (as the
            course), 28x28 random images, meta-batch 32, 1 inner step (lr 0.4),
            cross-entropy.
Each step: the inner step(s) on the support set, the query loss, its gradient
through the inner loop (second order) with respect to the initial parameters,
and an Adam (1e-3) update.

JAX variants, each a bare `jax.jit` of projects.meta's `MetaLearner`
meta-gradient and an optax Adam step, params donated, batches pre-placed:
  jax/<conv>/<tasks>  conv = im2col (9 shifted slices and one matmul, the
                      project's default) or xla (XLA's convolution via
                      lib.conv); tasks = vmap or map (lax.map over tasks).
PyTorch: a Python loop over tasks with torch.autograd.grad(create_graph=True),
functional layers (F.conv2d, F.batch_norm with batch statistics, F.max_pool2d),
torch.optim.Adam; --threads threads.

The table gives the median tasks/s over --repeats repeats (interleaved, so load
from other processes hits every variant alike) and the ratio to PyTorch.

  python tests/benchmarks/maml_throughput.py [--models=sinusoid,omniglot] \
      [--steps=10] [--repeats=5] [--threads=0] [--variants=...]

Runs on JAX's default backend (`JAX_PLATFORMS=cpu` for a CPU-vs-CPU table); on
a GPU, PyTorch runs on the GPU too if it has CUDA (--torch_device).
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np
import optax

from projects.meta import algorithms
from projects.meta import models

flags.DEFINE_list('models', ['sinusoid', 'omniglot'], 'Networks to time.')
flags.DEFINE_list('variants', ['jax/im2col/vmap', 'jax/im2col/map',
                               'jax/xla/vmap', 'jax/xla/map', 'pytorch'],
                  'Variants to time (the conv choice is moot for sinusoid).')
flags.DEFINE_integer('steps', 10, 'Timed meta-steps per repeat.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats; the median is reported.')
flags.DEFINE_integer('threads', 0, 'PyTorch threads (0: its default).')
flags.DEFINE_string('torch_device', 'auto', "PyTorch device: 'cpu', 'cuda' or "
                    "'auto' (cuda when JAX runs on a GPU and torch has it).")
FLAGS = flags.FLAGS

SETTINGS = {
    'sinusoid': dict(ways=1, shots=10, query=10, tasks=25, inner_lr=0.01,
                     loss='mse'),
    'omniglot': dict(ways=5, shots=1, query=1, tasks=32, inner_lr=0.4,
                     loss='cross_entropy'),
}
NUM_BATCHES = 3


def task_batches(name: str):
  s, rng = SETTINGS[name], np.random.default_rng(0)
  t, ns, nq = s['tasks'], s['ways'] * s['shots'], s['ways'] * s['query']
  out = []
  for _ in range(NUM_BATCHES):
    if name == 'sinusoid':
      x = rng.uniform(-5, 5, (t, ns + nq, 1)).astype(np.float32)
      y = (rng.uniform(0.1, 5, (t, 1, 1)) *
           np.sin(x - rng.uniform(0, np.pi, (t, 1, 1)))).astype(np.float32)
    else:
      x = rng.random((t, ns + nq, 28, 28, 1), dtype=np.float32)
      y = np.tile(np.arange(s['ways']), (t, s['shots'] + s['query']))
      y = y.astype(np.int32)
    out.append({'support_input': x[:, :ns], 'support_label': y[:, :ns],
                'query_input': x[:, ns:], 'query_label': y[:, ns:]})
  return out


def jax_runner(name: str, conv_impl: str, task_map: str):
  s = SETTINGS[name]
  if name == 'sinusoid':
    learner = models.Learner(models.MLPBody((40, 40)), 1)
  else:
    learner = models.Learner(models.ConvBody(conv_impl=conv_impl), s['ways'])
  meta = algorithms.MetaLearner(learner, 'maml', s['loss'], s['inner_lr'], 1,
                                task_map)
  batches = [jax.device_put(b) for b in task_batches(name)]
  params = meta.init(jax.random.key(0), batches[0]['support_input'][0])
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, tasks):
    metrics, grads = meta.meta_gradient(params, tasks)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  step = jax.jit(step, donate_argnums=(0, 1))

  def run(n):
    nonlocal params, opt_state
    for i in range(n):
      params, opt_state, metrics = step(params, opt_state,
                                        batches[i % NUM_BATCHES])
    jax.block_until_ready((params, metrics))

  return run


def torch_runner(name: str):
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  if FLAGS.threads:
    torch.set_num_threads(FLAGS.threads)
  device = FLAGS.torch_device
  if device == 'auto':
    device = ('cuda' if jax.default_backend() == 'gpu'
              and torch.cuda.is_available() else 'cpu')
  s = SETTINGS[name]
  gen = torch.Generator().manual_seed(0)

  def weight(*shape):
    fan_in = int(np.prod(shape[1:]))
    return (torch.randn(*shape, generator=gen) / fan_in**0.5).to(device)

  if name == 'sinusoid':
    params = [weight(40, 1), torch.zeros(40, device=device), weight(40, 40),
              torch.zeros(40, device=device), weight(1, 40),
              torch.zeros(1, device=device)]

    def forward(p, x):
      x = F.relu(F.linear(x, p[0], p[1]))
      x = F.relu(F.linear(x, p[2], p[3]))
      return F.linear(x, p[4], p[5])

    loss_fn = F.mse_loss
  else:
    params, channels = [], 1
    for _ in range(4):
      params += [weight(64, channels, 3, 3), torch.zeros(64, device=device),
                 torch.ones(64, device=device), torch.zeros(64, device=device)]
      channels = 64
    params += [weight(s['ways'], 64), torch.zeros(s['ways'], device=device)]

    def forward(p, x):
      for b in range(4):
        w, bias, scale, shift = p[4 * b:4 * b + 4]
        x = F.conv2d(x, w, bias, padding=1)
        x = F.batch_norm(x, None, None, scale, shift, training=True)
        x = F.max_pool2d(F.relu(x), 2)
      return F.linear(x.flatten(1), p[16], p[17])

    loss_fn = F.cross_entropy
  for p in params:
    p.requires_grad_(True)
  optimizer = torch.optim.Adam(params, lr=1e-3)

  def to_torch(batch):
    out = {}
    for k, v in batch.items():
      if v.ndim == 5:  # NHWC -> NCHW
        v = v.transpose(0, 1, 4, 2, 3)
      out[k] = torch.from_numpy(np.ascontiguousarray(v)).to(device)
      if k.endswith('label') and name == 'omniglot':
        out[k] = out[k].long()
    return out

  batches = [to_torch(b) for b in task_batches(name)]

  def run(n):
    for i in range(n):
      batch = batches[i % NUM_BATCHES]
      optimizer.zero_grad()
      total = 0.0
      for t in range(s['tasks']):
        support = loss_fn(forward(params, batch['support_input'][t]),
                          batch['support_label'][t])
        grads = torch.autograd.grad(support, params, create_graph=True)
        fast = [p - s['inner_lr'] * g for p, g in zip(params, grads)]
        total = total + loss_fn(forward(fast, batch['query_input'][t]),
                                batch['query_label'][t])
      (total / s['tasks']).backward()
      optimizer.step()
    if device == 'cuda':
      torch.cuda.synchronize()

  return run


def main(argv):
  del argv
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}')
  rows = []
  for name in FLAGS.models:
    runners = {}
    for variant in FLAGS.variants:
      if variant == 'pytorch':
        try:
          runners[variant] = torch_runner(name)
        except (ImportError, OSError) as e:
          print(f'pytorch unavailable ({e}); skipped')
        continue
      _, conv_impl, task_map = variant.split('/')
      if name == 'sinusoid' and conv_impl != 'im2col':
        continue  # no convolutions: the same program as im2col
      runners[variant.replace('im2col/', '') if name == 'sinusoid'
              else variant] = jax_runner(name, conv_impl, task_map)
    times = {v: [] for v in runners}
    for variant, run in runners.items():
      started = time.perf_counter()
      run(2)  # compile and warm up
      print(f'{name} {variant}: warm-up {time.perf_counter() - started:.1f} s',
            flush=True)
    for _ in range(FLAGS.repeats):
      for variant, run in runners.items():
        started = time.perf_counter()
        run(FLAGS.steps)
        times[variant].append(time.perf_counter() - started)
    tasks = SETTINGS[name]['tasks'] * FLAGS.steps
    rates = {v: tasks / statistics.median(t) for v, t in times.items()}
    for variant, rate in rates.items():
      ratio = rate / rates['pytorch'] if 'pytorch' in rates else float('nan')
      rows.append((name, variant, rate, ratio))

  print("\n| model | variant | tasks/s | x PyTorch |\n|---|---|---|---|")
  for name, variant, rate, ratio in rows:
    print(f'| {name} | {variant} | {rate:.1f} | {ratio:.2f} |')


if __name__ == '__main__':
  app.run(main)
