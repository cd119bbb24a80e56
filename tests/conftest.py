"""Every test runs with 8 fake CPU devices, so every step is exercised sharded."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import lib  # noqa: E402,F401  (its XLA CPU defaults, before JAX starts)
