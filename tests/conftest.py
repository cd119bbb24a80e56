"""Every test runs with 8 fake CPU devices, so every step is exercised sharded.

Compiled programs go to a persistent cache made fresh for each test run and
shared by its xdist workers and the subprocesses tests start: tests build the
same small models and steps many times, and a cache hit skips XLA's compile
(about a fifth of the suite's CPU time).
"""

import os
import shutil
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
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
