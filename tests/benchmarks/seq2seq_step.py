r"""HW5's translation transformer: train step against PyTorch, cached decoding.

The model of `projects/seq2seq` (`models.TransformerSeq2Seq`: 3 encoder and 3
decoder pre-LN layers, d_model 256, 8 heads, ReLU feed-forward of 512,
dropout 0.1, one shared embedding tied to the output projection, sinusoidal
positions; vocabulary 8000) on random batches of 64 pairs padded to 32 source
and 32 target tokens (lengths 16-32, so the masks matter). Rows, interleaved
repeat by repeat in one process so that load hits them alike:

  library   lib.steps.make_train_step of projects.seq2seq.training's
            make_loss_fn (label smoothing 0.1, padding masked) and
            make_optimizer (Adam, constant lr 5e-4, b2 0.98, eps 1e-9, no
            clipping), state from create_train_state, batches pre-placed
  pytorch   torch.nn.Transformer(norm_first=True, batch_first=True) with a
            shared, tied nn.Embedding (x sqrt(d_model)) and the same
            sinusoidal table, dropout 0.1 where ours has it (attention
            weights: none, as ours), F.cross_entropy(ignore_index=PAD,
            label_smoothing=0.1), torch.optim.Adam
  cached_N    jax.jit of encode + lib.decoding.cached's init_state +
              lib.decoding.sampling.greedy over the KV-cached standalone
              decoder (as projects/seq2seq/translate.py), N tokens, no EOS
  uncached_N  jax.jit of encode + a lax.fori_loop that reruns the whole
              decoder over a fixed [B, N + 1] prefix buffer each step and
              takes the argmax at the current position

Train rows report target tokens/s (real tokens, EOS included, no padding);
decoding rows generated tokens/s. Medians over --repeats, ratios of medians:
library/pytorch (target >= 1.2) and cached/uncached (no target). The two
decoders' tokens are compared before timing (that call also compiles them).

  python tests/benchmarks/seq2seq_step.py [--steps=10] [--repeats=7] \
      [--threads=N] [--only=library,pytorch] [--out=seq2seq.json]
"""

import functools
import json
import os
import platform
import statistics
import time
import warnings

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import torch
from torch import nn
from torch.nn import functional as F

from lib import mesh as mesh_lib
from lib import steps
from lib import train_state
from lib.decoding import cached
from lib.decoding import sampling
from lib.layers import transformer
from lib.text.tokenizers import BOS_ID, EOS_ID, PAD_ID
from projects.seq2seq import models
from projects.seq2seq import training
import machine  # a sibling: run as a script

flags.DEFINE_integer('steps', 10, 'Timed train steps per repeat.')
flags.DEFINE_integer('warmup', 3, 'Untimed train steps first (compilation).')
flags.DEFINE_integer('repeats', 7, 'Timed repeats; the median is reported.')
machine.define_threads_flag()
flags.DEFINE_integer('batch_size', 64, 'Pairs per train step and decode call.')
flags.DEFINE_integer('length', 32, 'Padded source and target length.')
flags.DEFINE_list('decode_tokens', ['32', '64'], 'Generated tokens per call.')
flags.DEFINE_list('only', [], 'Subset of library,pytorch,cached,uncached.')
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')
FLAGS = flags.FLAGS

METHODS = ('library', 'pytorch', 'cached', 'uncached')
VOCAB, LAYERS, D_MODEL, HEADS, FF, DROPOUT = 8000, 3, 256, 8, 512, 0.1
LEARNING_RATE, B2, EPS, SMOOTHING = 5e-4, 0.98, 1e-9, 0.1
NUM_BATCHES = 4


def host_batches(batch_size, length):
  """Random pairs, lengths length/2..length: source; BOS + y; y + EOS."""
  rng = np.random.default_rng(0)

  def padded(rows):
    out = np.full((batch_size, length), PAD_ID, np.int32)
    for i, row in enumerate(rows):
      out[i, :len(row)] = row
    return out

  batches = []
  for _ in range(NUM_BATCHES):
    words = lambda: [rng.integers(4, VOCAB, rng.integers(length // 2, length))
                     for _ in range(batch_size)]
    source, target = words(), words()
    batch = {'source': padded([np.append(s, EOS_ID) for s in source]),
             'decoder_input': padded([np.insert(t, 0, BOS_ID) for t in target]),
             'target': padded([np.append(t, EOS_ID) for t in target])}
    batch['target_mask'] = batch['target'] != PAD_ID
    batches.append(batch)
  return batches


def make_model():
  return models.TransformerSeq2Seq(
      VOCAB, num_layers=LAYERS, d_model=D_MODEL, num_heads=HEADS, ff_dim=FF,
      dropout=DROPOUT, positions='sinusoidal', pre_norm=True,
      max_length=max(FLAGS.length, *map(int, FLAGS.decode_tokens)) + 1)


def library_runner(batches):
  mesh = mesh_lib.make_mesh()
  model = make_model()
  tx = training.make_optimizer(ml_collections.ConfigDict(dict(
      learning_rate=LEARNING_RATE, schedule='constant', warmup_steps=0,
      b2=B2, eps=EPS, grad_clip_norm=0.0)))
  step = steps.make_train_step(training.make_loss_fn(model, SMOOTHING), tx,
                               mesh, loss_takes_step=True)
  state = train_state.create_train_state(
      model, tx, training.sample_input((FLAGS.length,)), jax.random.key(0),
      mesh)
  placed = [mesh_lib.shard_batch(b, mesh) for b in batches]
  count = sum(x.size for x in jax.tree.leaves(state.params))

  def run(n):
    nonlocal state
    for i in range(n):
      state, metrics = step(state, placed[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))

  return run, count


class TorchSeq2Seq(nn.Module):
  """nn.Transformer with our embedding, positions and tied output."""

  def __init__(self, max_length):
    super().__init__()
    self.embed = nn.Embedding(VOCAB, D_MODEL)
    nn.init.normal_(self.embed.weight, std=D_MODEL ** -0.5)
    self.register_buffer('positions', torch.from_numpy(np.array(
        transformer.sinusoidal_positions(max_length, D_MODEL))))
    self.dropout = nn.Dropout(DROPOUT)
    with warnings.catch_warnings():  # nested tensors are off with norm_first
      warnings.simplefilter('ignore')
      self.transformer = nn.Transformer(
          D_MODEL, HEADS, LAYERS, LAYERS, FF, DROPOUT, batch_first=True,
          norm_first=True)
    for module in self.modules():
      if isinstance(module, nn.MultiheadAttention):
        module.dropout = 0.0  # ours drops no attention weights

  def forward(self, source, decoder_input):
    def embed(tokens):
      x = self.embed(tokens) * D_MODEL ** 0.5
      return self.dropout(x + self.positions[:tokens.shape[1]])

    pad = source == PAD_ID
    length = decoder_input.shape[1]
    causal = nn.Transformer.generate_square_subsequent_mask(length)
    h = self.transformer(embed(source), embed(decoder_input), tgt_mask=causal,
                         src_key_padding_mask=pad,
                         memory_key_padding_mask=pad, tgt_is_causal=True)
    return h @ self.embed.weight.T


def pytorch_runner(batches, threads):
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = TorchSeq2Seq(FLAGS.length + 1).train()
  optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE,
                               betas=(0.9, B2), eps=EPS)
  tensors = [{k: torch.from_numpy(v).long() for k, v in b.items()
              if k != 'target_mask'} for b in batches]
  count = sum(p.numel() for p in model.parameters())

  def run(n):
    for i in range(n):
      batch = tensors[i % NUM_BATCHES]
      logits = model(batch['source'], batch['decoder_input'])
      loss = F.cross_entropy(logits.reshape(-1, VOCAB),
                             batch['target'].reshape(-1), ignore_index=PAD_ID,
                             label_smoothing=SMOOTHING)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()

  return run, count


def decoders():
  """(cached, uncached) jitted (params, source, num_tokens) -> [B, N] ids."""
  model = make_model()
  decoder = models.standalone_decoder(model)
  step_fn, init_state = cached.make_step_fn(decoder)

  def start(params, source):
    rows = model.apply({'params': params}, source, method='encode')
    return rows, jnp.full((source.shape[0],), BOS_ID, jnp.int32)

  @functools.partial(jax.jit, static_argnums=2)
  def with_cache(params, source, num_tokens):
    rows, first = start(params, source)
    state = init_state(models.decoder_params(params), first[:, None],
                       num_tokens + 1, rows['memory'], rows['memory_valid'])
    return sampling.greedy(step_fn, state, first, num_tokens)

  @functools.partial(jax.jit, static_argnums=2)
  def without_cache(params, source, num_tokens):
    rows, first = start(params, source)
    variables = {'params': models.decoder_params(params)}
    prefix = jnp.full((source.shape[0], num_tokens + 1), PAD_ID, jnp.int32)

    def body(i, prefix):  # causal: positions after i do not change i's logits
      logits = decoder.apply(variables, prefix, rows['memory'],
                             memory_valid=rows['memory_valid'])
      token = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, i, 1, False), -1)
      return prefix.at[:, i + 1].set(token.astype(jnp.int32))

    prefix = prefix.at[:, 0].set(first)
    return jax.lax.fori_loop(0, num_tokens, body, prefix)[:, 1:]

  params = model.init(jax.random.key(1), training.sample_input(
      (FLAGS.length,)))['params']
  return params, with_cache, without_cache


def decode_runners(methods, source):
  params, with_cache, without_cache = decoders()
  runners, agreement = {}, {}
  for num_tokens in map(int, FLAGS.decode_tokens):
    fns = {'cached': with_cache, 'uncached': without_cache}
    outputs = {}
    for name in (n for n in fns if n in methods):
      fn = functools.partial(fns[name], params, source, num_tokens)
      outputs[name] = np.asarray(fn())
      runners[f'{name}_{num_tokens}'] = lambda n, fn=fn: [
          jax.block_until_ready(fn()) for _ in range(n)]
    if len(outputs) == 2:
      same = outputs['cached'] == outputs['uncached']
      agreement[num_tokens] = {'tokens': float(same.mean()),
                               'rows': float(same.all(1).mean())}
      print(f'{num_tokens} tokens: cached and uncached agree on '
            f'{100 * same.mean():.2f}% of tokens, '
            f'{100 * same.all(1).mean():.1f}% of rows'
            + ('' if same.all() else '  <-- MISMATCH'))
  return runners, agreement


def main(argv):
  del argv
  threads = machine.pin_threads(FLAGS.threads)
  methods = set(FLAGS.only or METHODS)
  if methods - set(METHODS):
    raise app.UsageError(f'--only: unknown {sorted(methods - set(METHODS))}; '
                         f'use {METHODS}')
  batches = host_batches(FLAGS.batch_size, FLAGS.length)
  runners, counts = {}, {}
  for name, make in (('library', library_runner), ('pytorch', pytorch_runner)):
    if name in methods:
      runners[name], counts[name] = make(batches, *(
          (threads,) if name == 'pytorch' else ()))
  for name, count in counts.items():
    print(f'{name} parameters: {count:,}')
  if len(counts) == 2:
    print(f'parameter ratio {counts["library"] / counts["pytorch"]:.4f}')
  decoding, agreement = decode_runners(methods, batches[0]['source'])
  runners.update(decoding)

  for name in counts:  # the decoders ran (and compiled) in the check above
    runners[name](FLAGS.warmup)
  seconds = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      started = time.perf_counter()
      run(FLAGS.steps if name in counts else 1)
      seconds[name].append(time.perf_counter() - started)

  target_tokens = [int(b['target_mask'].sum()) for b in batches]
  per_repeat = {name: sum(target_tokens[i % NUM_BATCHES]
                          for i in range(FLAGS.steps)) for name in counts}
  per_repeat.update({name: FLAGS.batch_size * int(name.split('_')[1])
                     for name in decoding})
  rates = {name: [per_repeat[name] / s for s in times]
           for name, times in seconds.items()}
  medians = {name: statistics.median(r) for name, r in rates.items()}
  print(f'batch {FLAGS.batch_size}, length {FLAGS.length}, {FLAGS.steps} '
        f'steps x {FLAGS.repeats} repeats, {threads} threads')
  print(f'{"row":<13}{"tokens/s":>10}{"ms/call":>10}{"min":>9}{"max":>9}')
  for name, median in medians.items():
    calls = FLAGS.steps if name in counts else 1
    print(f'{name:<13}{median:>10.0f}'
          f'{1e3 * statistics.median(seconds[name]) / calls:>10.1f}'
          f'{min(rates[name]):>9.0f}{max(rates[name]):>9.0f}')
  ratios = {}
  if {'library', 'pytorch'} <= medians.keys():
    ratios['library/pytorch'] = medians['library'] / medians['pytorch']
    print(f'library/pytorch {ratios["library/pytorch"]:.2f} (target >= 1.2: '
          f'{"met" if ratios["library/pytorch"] >= 1.2 else "NOT met"})')
  for num_tokens in map(int, FLAGS.decode_tokens):
    pair = (f'cached_{num_tokens}', f'uncached_{num_tokens}')
    if set(pair) <= medians.keys():
      ratios[f'cached/uncached_{num_tokens}'] = (medians[pair[0]] /
                                                 medians[pair[1]])
      print(f'cached/uncached at {num_tokens} tokens '
            f'{ratios[f"cached/uncached_{num_tokens}"]:.2f}')
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'config': {name: FLAGS[name].value for name in (
          'steps', 'warmup', 'repeats', 'batch_size', 'length',
          'decode_tokens')},
                 'parameters': counts, 'median_tokens_per_s': medians,
                 'tokens_per_s': rates, 'seconds': seconds, 'ratios': ratios,
                 'decode_agreement': agreement,
                 'environment': {
                     'python': platform.python_version(),
                     'jax': jax.__version__, 'torch': torch.__version__,
                     'optax': optax.__version__, 'threads': threads,
                     'cpu_cores': len(os.sched_getaffinity(0)),
                     'xla_flags': os.environ.get('XLA_FLAGS', ''),
                     'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}},
                f, indent=1)


if __name__ == '__main__':
  app.run(main)
