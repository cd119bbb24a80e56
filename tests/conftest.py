"""Every test runs with 8 fake CPU devices, so every step is exercised sharded.

Compiled programs go to a persistent cache made fresh for each test run and
shared by its xdist workers and the subprocesses tests start: tests build the
same small models and steps many times, and a cache hit skips XLA's compile
(about a fifth of the suite's CPU time).

XLA's CPU backend compiles at LLVM optimization level 0 unless XLA_FLAGS names
a level: the tests are compile-bound (small models, few steps), and level 0
compiles about 2x faster for steps that run about 2x slower. On 2 AMD EPYC
cores the suite took 500 s at level 0 against 691 s at the default level.
"""

import os
import shutil
import tempfile

_LEVEL_FLAG = '--xla_backend_optimization_level'
os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), '--xla_force_host_platform_device_count=8'] +
    ([] if _LEVEL_FLAG in os.environ.get('XLA_FLAGS', '') else
     [f'{_LEVEL_FLAG}=0'])).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Set in the first process (xdist's controller), inherited by the workers.
_OWN_CACHE = 'JAX_COMPILATION_CACHE_DIR' not in os.environ
if _OWN_CACHE:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(
      prefix='jax-compile-cache-')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import lib  # noqa: E402,F401  (its XLA CPU defaults, before JAX starts)


def pytest_unconfigure(config):
  del config
  if _OWN_CACHE:
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
