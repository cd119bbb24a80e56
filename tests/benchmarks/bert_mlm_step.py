r"""HW7's BERT: the MLM pretraining step against PyTorch, LoRA against full tuning.

Part 1 (--benchmarks=mlm): one pretraining step (forward, backward, AdamW
update) of `projects/bert`'s `Bert(config, head='pretraining')` at BERT-Small
(4 layers, hidden 512, 8 heads, feed-forward 2048) and BERT-Base (12, 768, 12,
3072), vocabulary 30522, sequence 128, dropout 0.1 (hidden and attention
probabilities, as BERT), float32; random [CLS] A [SEP] B [SEP] rows (no
padding). Rows, interleaved repeat by repeat in one process so that load hits
them alike:

  library           lib.steps.make_train_step (jitted, state donated) of the
                    loss of projects/bert/train.py's pretraining: masking
                    drawn inside the step (pretraining.mask_tokens, 15%, at
                    most 20 predictions a row), the MLM head on the gathered
                    positions only (mlm_positions), pretraining.mlm_loss plus
                    the pair loss; optax.adamw
  pytorch           transformers.BertForPreTraining of the same configuration
                    (its default attention), loss from its own forward
                    (labels -100 except at the masked positions,
                    next_sentence_label), torch.optim.AdamW; the MLM head runs
                    over all 128 positions, as that class does
  pytorch_gathered  the same HF modules, but the MLM head on the gathered
                    positions only (model.bert, then model.cls on
                    sequence[positions]): the same work as the library row

PyTorch's batches are masked once on the host, before the clock starts, by the
same pretraining.mask_tokens. AdamW in both: lr 1e-4, betas (0.9, 0.999), eps
1e-6, weight decay 0.01 on every parameter, no clipping. Reported: median
tokens/s (batch x 128 per step) over --repeats, ms/step, the slowest and
fastest repeat, and the JAX/PyTorch ratios library/pytorch (the issue's
target: >= 1.0 at BERT-Small on CPU) and library/pytorch_gathered.

Part 2 (--benchmarks=lora): fine-tuning steps of `Bert(config,
head='classification')` at --finetune_size, full against LoRA (rank 8 on query
and value, `adapt.masked(tx, 'lora')`: every other leaf frozen), both
lib.steps.make_train_step compiled once (`.lower().compile()`) and interleaved.
Reported: ms/step and full/lora; trainable parameters; the bytes of the
optimizer state (the leaves of opt_state) and of the gradients the update
consumes (the trainable leaves); XLA's buffer plan of the compiled step
(`compiled.memory_analysis()`: temporaries, and arguments + outputs +
temporaries - aliased; exact, independent of load) and its FLOPs
(`cost_analysis()`). JAX's `device.memory_stats()` is None on CPU, and peak RSS
is one high-water mark for the whole process, so neither is used.

  python tests/benchmarks/bert_mlm_step.py [--sizes=small,base] [--steps=1] \
      [--repeats=5] [--threads=N] [--only=library,pytorch] [--out=bert.json]
  python tests/benchmarks/bert_mlm_step.py --benchmarks=lora
"""

import json
import os
import statistics
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from torch.nn import functional as F
import transformers

from lib import mesh as mesh_lib
from lib import steps
from lib import train_state
from projects.bert import adapt
from projects.bert import model as model_lib
from projects.bert import pretraining

import machine  # a sibling: run as a script

flags.DEFINE_list('benchmarks', ['mlm', 'lora'], 'Subset of mlm,lora.')
flags.DEFINE_list('sizes', ['small', 'base'], 'MLM step sizes: small, base.')
flags.DEFINE_list('only', [], 'MLM rows: subset of library,pytorch,'
                  'pytorch_gathered.')
flags.DEFINE_integer('small_batch_size', 8, 'Rows per MLM step, BERT-Small.')
flags.DEFINE_integer('base_batch_size', 4, 'Rows per MLM step, BERT-Base.')
flags.DEFINE_integer('length', 128, 'Tokens per row.')
flags.DEFINE_string('finetune_size', 'small', 'Model of the LoRA benchmark.')
flags.DEFINE_integer('finetune_batch_size', 8, 'Rows per fine-tuning step.')
flags.DEFINE_integer('steps', 1, 'Timed steps per repeat.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps first (compilation).')
flags.DEFINE_integer('repeats', 5, 'Timed repeats; the median is reported.')
machine.define_threads_flag()
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')
FLAGS = flags.FLAGS

ROWS = ('library', 'pytorch', 'pytorch_gathered')
SIZES = {'small': dict(hidden=512, num_layers=4, num_heads=8, ff_dim=2048),
         'base': dict(hidden=768, num_layers=12, num_heads=12, ff_dim=3072)}
VOCAB, MAX_LENGTH, DROPOUT, MASK_RATE = 30522, 512, 0.1, 0.15
PAD, CLS, SEP, MASK, FIRST_NORMAL = 0, 101, 102, 103, 999  # HF's vocab.txt
LEARNING_RATE, BETAS, EPS, WEIGHT_DECAY = 1e-4, (0.9, 0.999), 1e-6, 0.01
NUM_BATCHES = 4


def our_config(size, adaptation='full'):
  return model_lib.BertConfig(
      vocab_size=VOCAB, max_length=MAX_LENGTH, dropout=DROPOUT,
      attention_dropout=DROPOUT, adaptation=adaptation, **SIZES[size])


def host_batches(batch_size, length):
  """[CLS] A [SEP] B [SEP] of random words, A and B half the row each."""
  rng = np.random.default_rng(0)
  half = length // 2
  batches = []
  for _ in range(NUM_BATCHES):
    tokens = rng.integers(FIRST_NORMAL, VOCAB, (batch_size, length))
    tokens[:, 0], tokens[:, half - 1], tokens[:, -1] = CLS, SEP, SEP
    segments = np.zeros((batch_size, length), np.int32)
    segments[:, half:] = 1
    batches.append({'tokens': tokens.astype(np.int32), 'segments': segments,
                    'valid': np.ones((batch_size, length), bool),
                    'pair_label': rng.integers(0, 2, batch_size).astype(
                        np.int32)})
  return batches


def candidates_of(tokens):
  return (tokens != PAD) & (tokens != CLS) & (tokens != SEP)


def mask(key, tokens, length):
  return pretraining.mask_tokens(
      key, tokens, candidates_of(tokens), mask_id=MASK, vocab_size=VOCAB,
      rate=MASK_RATE,
      num_predictions=pretraining.max_predictions(length, MASK_RATE),
      first_normal_id=FIRST_NORMAL)


def adamw():
  return optax.adamw(LEARNING_RATE, b1=BETAS[0], b2=BETAS[1], eps=EPS,
                     weight_decay=WEIGHT_DECAY)


def library_runner(size, batches):
  """The pretraining step as projects/bert/train.py builds it."""
  mesh = mesh_lib.make_mesh()
  model = model_lib.Bert(our_config(size), head='pretraining')
  length = batches[0]['tokens'].shape[1]

  def loss_fn(params, model_state, batch, key):
    masked = mask(key, batch['tokens'], length)
    out = model.apply({'params': params}, masked.tokens, batch['segments'],
                      batch['valid'], mlm_positions=masked.positions,
                      train=True, rngs={'dropout': jax.random.fold_in(key, 1)})
    mlm, _ = pretraining.mlm_loss(out['mlm_logits'], masked)
    pair = optax.softmax_cross_entropy_with_integer_labels(
        out['pair_logits'], batch['pair_label']).mean()
    return mlm + pair, ({'mlm_loss': mlm}, model_state)

  step = steps.make_train_step(loss_fn, adamw(), mesh)
  state = train_state.create_train_state(
      model, adamw(), batches[0]['tokens'][:1], jax.random.key(0), mesh)
  placed = [mesh_lib.shard_batch(b, mesh) for b in batches]
  count = sum(x.size for x in jax.tree.leaves(state.params))
  losses = []

  def run(n):
    nonlocal state
    for i in range(n):
      state, metrics = step(state, placed[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))
    losses.append(float(metrics['loss']))

  return run, count, losses


def torch_batches(batches):
  """Tensors for HF, masked once here by the same mask_tokens."""
  length = batches[0]['tokens'].shape[1]
  masker = jax.jit(lambda key, tokens: mask(key, tokens, length))
  out = []
  for i, batch in enumerate(batches):
    masked = jax.device_get(masker(jax.random.key(i), batch['tokens']))
    labels = np.full(batch['tokens'].shape, -100, np.int64)
    rows, cols = np.nonzero(masked.weights)
    labels[rows, masked.positions[rows, cols]] = masked.targets[rows, cols]
    as_long = lambda x: torch.from_numpy(np.array(x)).long()
    out.append({'tokens': as_long(masked.tokens),
                'segments': as_long(batch['segments']),
                'valid': as_long(batch['valid']),
                'pair_label': as_long(batch['pair_label']),
                'labels': as_long(labels),
                'positions': as_long(masked.positions),
                'targets': as_long(masked.targets),
                'weights': torch.from_numpy(np.array(masked.weights))})
  return out


def torch_runner(size, batches, gathered):
  """transformers.BertForPreTraining, its MLM head on all or the masked
  positions, torch.optim.AdamW."""
  torch.manual_seed(0)
  s = SIZES[size]
  model = transformers.BertForPreTraining(transformers.BertConfig(
      vocab_size=VOCAB, hidden_size=s['hidden'],
      num_hidden_layers=s['num_layers'], num_attention_heads=s['num_heads'],
      intermediate_size=s['ff_dim'], hidden_act='gelu',
      hidden_dropout_prob=DROPOUT, attention_probs_dropout_prob=DROPOUT,
      max_position_embeddings=MAX_LENGTH, type_vocab_size=2,
      layer_norm_eps=1e-12)).train()
  print(f'{"pytorch_gathered" if gathered else "pytorch"}: attention '
        f'{model.config._attn_implementation}')  # pylint: disable=protected-access
  optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE,
                                betas=BETAS, eps=EPS,
                                weight_decay=WEIGHT_DECAY)
  tensors = torch_batches(batches)
  count = sum(p.numel() for p in model.parameters())
  losses = []

  def loss_of(b):
    if not gathered:
      return model(input_ids=b['tokens'], attention_mask=b['valid'],
                   token_type_ids=b['segments'], labels=b['labels'],
                   next_sentence_label=b['pair_label']).loss
    encoded = model.bert(input_ids=b['tokens'], attention_mask=b['valid'],
                         token_type_ids=b['segments'])
    sequence, pooled = encoded.last_hidden_state, encoded.pooler_output
    picked = torch.gather(sequence, 1, b['positions'][..., None].expand(
        -1, -1, sequence.shape[-1]))
    logits, pair_logits = model.cls(picked, pooled)
    losses_ = F.cross_entropy(logits.flatten(0, 1), b['targets'].flatten(),
                              reduction='none')
    weights = b['weights'].flatten()
    mlm = (losses_ * weights).sum() / weights.sum().clamp(min=1.0)
    return mlm + F.cross_entropy(pair_logits, b['pair_label'])

  def run(n):
    for i in range(n):
      loss = loss_of(tensors[i % NUM_BATCHES])
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
    losses.append(loss.item())

  return run, count, losses


def interleave(runners, steps_per_repeat):
  """Seconds per repeat of each runner, after --warmup untimed steps."""
  for run in runners.values():
    run(FLAGS.warmup)
  seconds = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      started = time.perf_counter()
      run(steps_per_repeat)
      seconds[name].append(time.perf_counter() - started)
  return seconds


def mlm_benchmark(size, rows):
  batch_size = {'small': FLAGS.small_batch_size,
                'base': FLAGS.base_batch_size}[size]
  batches = host_batches(batch_size, FLAGS.length)
  runners, counts, losses = {}, {}, {}
  for name in rows:
    if name == 'library':
      made = library_runner(size, batches)
    else:
      made = torch_runner(size, batches, gathered=name == 'pytorch_gathered')
    runners[name], counts[name], losses[name] = made
  seconds = interleave(runners, FLAGS.steps)
  tokens = FLAGS.steps * batch_size * FLAGS.length
  rates = {name: [tokens / s for s in t] for name, t in seconds.items()}
  medians = {name: statistics.median(r) for name, r in rates.items()}
  print(f'\nBERT-{size.capitalize()}: batch {batch_size} x {FLAGS.length} '
        f'tokens, {FLAGS.steps} steps x {FLAGS.repeats} repeats; parameters '
        + ', '.join(f'{n} {c:,}' for n, c in counts.items()))
  print(f'{"row":<18}{"tokens/s":>10}{"ms/step":>10}{"min":>9}{"max":>9}'
        f'{"loss":>8}')
  for name, median in medians.items():
    print(f'{name:<18}{median:>10.0f}'
          f'{1e3 * statistics.median(seconds[name]) / FLAGS.steps:>10.1f}'
          f'{min(rates[name]):>9.0f}{max(rates[name]):>9.0f}'
          f'{losses[name][-1]:>8.3f}')
  ratios = {}
  for other in ('pytorch', 'pytorch_gathered'):
    if {'library', other} <= medians.keys():
      ratios[f'library/{other}'] = medians['library'] / medians[other]
      target = ''
      if other == 'pytorch' and size == 'small':
        target = (' (target >= 1.0: '
                  f'{"met" if ratios["library/pytorch"] >= 1.0 else "NOT met"})')
      print(f'library/{other} {ratios[f"library/{other}"]:.2f}{target}')
  return {'batch_size': batch_size, 'parameters': counts,
          'median_tokens_per_s': medians, 'tokens_per_s': rates,
          'seconds': seconds, 'ratios': ratios, 'losses': losses}


def tree_bytes(tree):
  return sum(x.nbytes for x in jax.tree.leaves(tree))


def finetune_runner(method, batches):
  """A classification fine-tuning step, compiled once; its memory figures."""
  mesh = mesh_lib.make_mesh()
  model = model_lib.Bert(our_config(FLAGS.finetune_size, method),
                         head='classification')
  tx = adapt.masked(adamw(), method)

  def loss_fn(params, model_state, batch, key):
    logits = model.apply({'params': params}, batch['tokens'],
                         batch['segments'], batch['valid'], train=True,
                         rngs={'dropout': key})['logits']
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['pair_label']).mean()
    return loss, ({}, model_state)

  state = train_state.create_train_state(
      model, tx, batches[0]['tokens'][:1], jax.random.key(0), mesh)
  placed = [mesh_lib.shard_batch(b, mesh) for b in batches]
  compiled = steps.make_train_step(loss_fn, tx, mesh).lower(
      state, placed[0]).compile()
  plan = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  trainable = adapt.trainable_mask(state.params, method)
  memory = {
      'parameters': adapt.count_trainable(state.params, 'full'),
      'trainable_parameters': adapt.count_trainable(state.params, method),
      'param_bytes': tree_bytes(state.params),
      'opt_state_bytes': tree_bytes(state.opt_state),
      'gradient_bytes': sum(x.nbytes for x, t in zip(
          jax.tree.leaves(state.params), jax.tree.leaves(trainable)) if t),
      'xla_temp_bytes': plan.temp_size_in_bytes,
      'xla_total_bytes': (plan.argument_size_in_bytes +
                          plan.output_size_in_bytes + plan.temp_size_in_bytes -
                          plan.alias_size_in_bytes),
      'gflops': cost.get('flops', float('nan')) / 1e9}

  def run(n):
    nonlocal state
    for i in range(n):
      state, metrics = compiled(state, placed[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))

  return run, memory


def lora_benchmark():
  batches = host_batches(FLAGS.finetune_batch_size, FLAGS.length)
  runners, memory = {}, {}
  for method in ('full', 'lora'):
    runners[method], memory[method] = finetune_runner(method, batches)
  seconds = interleave(runners, FLAGS.steps)
  ms = {name: 1e3 * statistics.median(t) / FLAGS.steps
        for name, t in seconds.items()}
  mib = lambda b: f'{b / 2**20:.1f}'
  print(f'\nFine-tuning BERT-{FLAGS.finetune_size.capitalize()} with a '
        f'classification head: batch {FLAGS.finetune_batch_size} x '
        f'{FLAGS.length}, {FLAGS.steps} steps x {FLAGS.repeats} repeats')
  print(f'{"method":<7}{"ms/step":>9}{"min":>8}{"max":>8}{"trainable":>12}'
        f'{"opt MiB":>9}{"grad MiB":>9}{"XLA temp":>9}{"XLA all":>9}'
        f'{"GFLOP":>8}')
  for name, m in memory.items():
    per_step = [1e3 * t / FLAGS.steps for t in seconds[name]]
    print(f'{name:<7}{ms[name]:>9.1f}{min(per_step):>8.1f}'
          f'{max(per_step):>8.1f}{m["trainable_parameters"]:>12,}'
          f'{mib(m["opt_state_bytes"]):>9}{mib(m["gradient_bytes"]):>9}'
          f'{mib(m["xla_temp_bytes"]):>9}{mib(m["xla_total_bytes"]):>9}'
          f'{m["gflops"]:>8.1f}')
  ratios = {'full/lora_time': ms['full'] / ms['lora']}
  for key in ('opt_state_bytes', 'gradient_bytes', 'xla_temp_bytes',
              'xla_total_bytes', 'gflops'):
    ratios[f'lora/full_{key}'] = memory['lora'][key] / memory['full'][key]
  print(f'step time full/lora {ratios["full/lora_time"]:.2f}; lora/full: '
        + ', '.join(f'{k[len("lora/full_"):]} {v:.4f}'
                    for k, v in ratios.items() if k.startswith('lora/')))
  return {'batch_size': FLAGS.finetune_batch_size, 'size': FLAGS.finetune_size,
          'ms_per_step': ms, 'seconds': seconds, 'memory': memory,
          'ratios': ratios}


def main(argv):
  del argv
  threads = machine.pin_threads(FLAGS.threads)
  torch.set_num_threads(threads)
  rows = FLAGS.only or list(ROWS)
  if set(rows) - set(ROWS) or set(FLAGS.sizes) - set(SIZES):
    raise app.UsageError(f'--only: subset of {ROWS}; --sizes: of '
                         f'{tuple(SIZES)}')
  environment = machine.environment(
      torch, xla_threads=len(os.sched_getaffinity(0)),
      transformers=transformers.__version__, optax=optax.__version__)
  print(f'CPU {environment["cpu"]}, {environment["cores"]} cores; XLA threads '
        f'{environment["xla_threads"]} (cores in the affinity mask), torch '
        f'threads {environment["torch_threads"]} (inter-op '
        f'{environment["torch_interop_threads"]}); jax {jax.__version__}, '
        f'torch {torch.__version__}, transformers {transformers.__version__}; '
        'load average %.2f %.2f %.2f' % environment['load_average'])
  results = {}
  if 'mlm' in FLAGS.benchmarks:
    for size in FLAGS.sizes:
      results[f'mlm_{size}'] = mlm_benchmark(size, rows)
  if 'lora' in FLAGS.benchmarks:
    results['lora'] = lora_benchmark()
  environment['load_average_end'] = os.getloadavg()
  print('load average at the end %.2f %.2f %.2f' % os.getloadavg())
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'config': {name: FLAGS[name].value for name in (
          'sizes', 'small_batch_size', 'base_batch_size', 'length',
          'finetune_size', 'finetune_batch_size', 'steps', 'warmup',
          'repeats', 'threads')},
                 'results': results, 'environment': environment}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
