r"""Time and memory of one attention sublayer against sequence length, per variant.

One `lib.layers.attention.MultiHeadAttention` sublayer (d_model 512, 8 heads
of 64, batch 1, float32): the forward pass and the gradient of a scalar loss
with respect to the input and the parameters, jitted. For each sequence length
and kind (`softmax`, `linear`, `linformer` with 256 rows):

  memory   XLA's buffer plan of the compiled step (arguments + outputs +
           temporaries, `compiled.memory_analysis()`): its peak memory, exact
           and independent of machine load
  time     median wall time of --repeats calls after one warm-up call

A plan larger than --memory_limit_gib is reported as out of memory and not
run. The kinds run interleaved, one repeat each in turn, so load from other
processes hits them alike; the ratios are against softmax at the same length.

  python tests/benchmarks/attention_variants.py [--lengths=256,1024,4096] \
      [--repeats=5] [--out=attention.json]
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
import jax.numpy as jnp

from lib import report
from lib.layers import attention

flags.DEFINE_list('lengths', ['256', '1024', '4096', '16384'],
                  'Sequence lengths.')
flags.DEFINE_list('kinds', ['softmax', 'linear', 'linformer'],
                  'Attention kinds (lib.layers.attention.KINDS).')
flags.DEFINE_integer('repeats', 5, 'Timed calls per kind and length.')
flags.DEFINE_integer('linformer_rows', 256, 'Linformer projected length k.')
flags.DEFINE_float('memory_limit_gib', 16.0,
                   'Plans above this are reported as out of memory.')
flags.DEFINE_string('out', None, 'JSON file for every figure.')
FLAGS = flags.FLAGS

D_MODEL, HEADS = 512, 8


def compiled_step(kind: str, length: int):
  layer = attention.MultiHeadAttention(
      num_heads=HEADS, head_dim=D_MODEL // HEADS, kind=kind,
      max_length=length, linformer_rows=FLAGS.linformer_rows)
  x = jax.random.normal(jax.random.key(0), (1, length, D_MODEL))
  params = jax.jit(layer.init)(jax.random.key(1), x)

  def loss(params, x):
    return jnp.mean(layer.apply(params, x) ** 2)

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  compiled = step.lower(params, x).compile()
  plan = compiled.memory_analysis()
  size = (plan.argument_size_in_bytes + plan.output_size_in_bytes +
          plan.temp_size_in_bytes - plan.alias_size_in_bytes)
  return compiled, (params, x), size


def main(argv):
  del argv
  lengths = [int(n) for n in FLAGS.lengths]
  rows, records = [], []
  for length in lengths:
    runs = {}
    for kind in FLAGS.kinds:
      compiled, args, size = compiled_step(kind, length)
      gib = size / 2**30
      if gib > FLAGS.memory_limit_gib:
        runs[kind] = {'memory_gib': gib, 'oom': True}
        continue
      jax.block_until_ready(compiled(*args))  # warm-up
      runs[kind] = {'memory_gib': gib, 'oom': False, 'times': [],
                    'call': compiled, 'args': args}
    for _ in range(FLAGS.repeats):
      for run in runs.values():
        if run['oom']:
          continue
        started = time.perf_counter()
        jax.block_until_ready(run['call'](*run['args']))
        run['times'].append(time.perf_counter() - started)
    reference = runs.get('softmax')
    for kind, run in runs.items():
      record = {'length': length, 'kind': kind,
                'memory_gib': run['memory_gib'], 'oom': run['oom']}
      if not run['oom']:
        record['ms'] = 1e3 * statistics.median(run['times'])
      if reference and not reference['oom'] and not run['oom']:
        record['speedup_vs_softmax'] = (
            statistics.median(reference['times']) / statistics.median(run['times']))
      if reference:
        record['memory_vs_softmax'] = run['memory_gib'] / reference['memory_gib']
      records.append(record)
      rows.append({
          'length': length, 'kind': kind,
          'ms': 'OOM' if run['oom'] else f"{record['ms']:.1f}",
          'memory': f"{run['memory_gib'] * 1024:.1f} MiB",
          'speedup': (f"{record['speedup_vs_softmax']:.2f}x"
                      if 'speedup_vs_softmax' in record else '-'),
          'memory_ratio': (f"{record['memory_vs_softmax']:.3f}"
                           if 'memory_vs_softmax' in record else '-')})
      print(rows[-1], flush=True)
  print(report.markdown_table(rows, {
      'length': 'tokens', 'kind': 'kind', 'ms': 'fwd+bwd ms',
      'memory': 'planned memory', 'speedup': 'speed vs softmax',
      'memory_ratio': 'memory / softmax'}))
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'records': records, 'jax': jax.__version__,
                 'machine': platform.processor() or platform.machine(),
                 'cpus': os.cpu_count(), 'repeats': FLAGS.repeats,
                 'linformer_rows': FLAGS.linformer_rows}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
