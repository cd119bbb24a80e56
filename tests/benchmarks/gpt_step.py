r"""GPT train-step throughput at nanoGPT's CPU configuration: ours against PyTorch.

The model of `projects/language_model` (`lib.layers.transformer.GPT`: 4
pre-LN layers, 4 heads, 128 wide, ReLU feed-forward of 512, learned
positions, tied embeddings; vocabulary 65, block 64, batch 12, dropout 0)
with its AdamW (clip 1.0, weight decay on matrices), trained on the CPU two
ways in one process, interleaved repeat by repeat so that load hits both alike:

  library  lib.steps.make_train_step over lib.mesh.make_mesh(), the state from
           lib.train_state.create_train_state, batches pre-placed
  pytorch  the same architecture written plainly in PyTorch
           (F.scaled_dot_product_attention with is_causal, tied embedding),
           torch.optim.AdamW (decay on matrices), clip_grad_norm_

The reported figure is the median tokens/s over --repeats (block x batch
tokens per step) and the ratio library/pytorch.

  python tests/benchmarks/gpt_step.py [--steps=20] [--repeats=7] [--out=gpt.json]
"""

import json
import os
import platform
import statistics
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import numpy as np
import optax
import torch
from torch import nn
from torch.nn import functional as F

from lib import mesh as mesh_lib
from lib import steps
from lib import train_state
from projects.language_model import config as config_lib
from projects.language_model import models
from projects.language_model import train

flags.DEFINE_integer('steps', 20, 'Timed steps per repeat.')
flags.DEFINE_integer('warmup', 5, 'Untimed steps first (compilation).')
flags.DEFINE_integer('repeats', 7, 'Timed repeats; the median is reported.')
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')
FLAGS = flags.FLAGS

VOCAB = 65
NUM_BATCHES = 4


def host_batches(config):
  rng = np.random.default_rng(0)
  return [{'tokens': rng.integers(0, VOCAB, (config.batch_size,
                                             config.block_size + 1)).astype(
                                                 np.int32)}
          for _ in range(NUM_BATCHES)]


def library_runner(config, batches):
  mesh = mesh_lib.make_mesh()
  model = models.make_model(config, VOCAB)
  tx = train.make_optimizer(config)
  loss_fn, _ = train.make_loss_and_eval(model)
  step = steps.make_train_step(loss_fn, tx, mesh)
  state = train_state.create_train_state(
      model, tx, batches[0]['tokens'][:1, :-1], jax.random.key(0), mesh)
  placed = [mesh_lib.shard_batch(b, mesh) for b in batches]

  def run(n):
    nonlocal state
    for i in range(n):
      state, metrics = step(state, placed[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))

  return run


class Block(nn.Module):

  def __init__(self, width, heads, ff):
    super().__init__()
    self.heads = heads
    self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
    self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
    self.ff = nn.Sequential(nn.Linear(width, ff), nn.ReLU(),
                            nn.Linear(ff, width))

  def forward(self, x):
    b, t, c = x.shape
    q, k, v = self.qkv(self.norm1(x)).split(c, dim=2)
    q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2)
               for z in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    x = x + self.out(y.transpose(1, 2).reshape(b, t, c))
    return x + self.ff(self.norm2(x))


class TorchGPT(nn.Module):

  def __init__(self, m, block):
    super().__init__()
    self.embed = nn.Embedding(VOCAB, m.d_model)
    self.positions = nn.Parameter(torch.randn(block, m.d_model) * 0.02)
    self.blocks = nn.ModuleList(Block(m.d_model, m.num_heads, m.ff_dim)
                                for _ in range(m.num_layers))
    self.norm = nn.LayerNorm(m.d_model)
    nn.init.normal_(self.embed.weight, std=0.02)

  def forward(self, tokens):
    x = self.embed(tokens) + self.positions[:tokens.shape[1]]
    for block in self.blocks:
      x = block(x)
    return self.norm(x) @ self.embed.weight.T  # tied


def pytorch_runner(config, batches):
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  torch.manual_seed(0)
  model = TorchGPT(config.model, config.block_size)
  matrices = [p for p in model.parameters() if p.dim() >= 2]
  others = [p for p in model.parameters() if p.dim() < 2]
  opt = config.optimizer
  optimizer = torch.optim.AdamW(
      [{'params': matrices, 'weight_decay': opt.weight_decay},
       {'params': others, 'weight_decay': 0.0}],
      lr=opt.learning_rate, betas=(0.9, opt.b2))
  tensors = [torch.from_numpy(b['tokens']).long() for b in batches]

  def run(n):
    for i in range(n):
      tokens = tensors[i % NUM_BATCHES]
      logits = model(tokens[:, :-1])
      loss = F.cross_entropy(logits.reshape(-1, VOCAB),
                             tokens[:, 1:].reshape(-1))
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip_norm)
      optimizer.step()

  return run


def main(argv):
  del argv
  config = config_lib.get_config('nanogpt_cpu')
  batches = host_batches(config)
  runners = {'library': library_runner(config, batches),
             'pytorch': pytorch_runner(config, batches)}
  for run in runners.values():
    run(FLAGS.warmup)
  times = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      started = time.perf_counter()
      run(FLAGS.steps)
      times[name].append(time.perf_counter() - started)
  tokens = FLAGS.steps * config.batch_size * config.block_size
  rates = {name: tokens / statistics.median(t) for name, t in times.items()}
  for name, rate in rates.items():
    print(f'{name:8s} {rate:9.0f} tokens/s  '
          f'({1e3 * statistics.median(times[name]) / FLAGS.steps:.1f} ms/step)')
  ratio = rates['library'] / rates['pytorch']
  print(f'library/pytorch {ratio:.2f} (target >= 1.5)')
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'tokens_per_second': rates, 'ratio': ratio,
                 'seconds': times, 'jax': jax.__version__,
                 'torch': torch.__version__, 'optax': optax.__version__,
                 'cpu': platform.processor(),
                 'cores': len(os.sched_getaffinity(0))}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
