"""What two or more projects share.

Importing `lib` (any module of it) before JAX's first computation sets one XLA
CPU default: convolutions run on XLA's own (Eigen) kernels rather than in
YNNPACK fusions, which jax 0.10's CPU backend uses by default and which ran a
small CNN's forward and weight-gradient convolutions 1.7-4.6x slower on the 2-core
machines this was measured on (tests/benchmarks/README.md). Set `--xla_cpu_experimental_ynn_fusion_type`
in XLA_FLAGS yourself to choose otherwise; it only affects CPU compilation.
"""

import os

_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'

if _YNN_FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = ' '.join(
      filter(None, [os.environ.get('XLA_FLAGS'),
                    f'{_YNN_FLAG}=-individual_convolution']))
