"""The machine the benchmarks run on: its CPU, and the cores they may use."""

import os
import platform
import subprocess
import time

from absl import flags
import jax


def define_threads_flag():
  flags.DEFINE_integer(
      'threads', 0, 'CPU threads for both frameworks (0: every core this '
      'process may use; fewer pins the process to the first N cores, the only '
      'way to bound the XLA CPU thread pool).')


def pin_threads(threads: int) -> int:
  """Keeps this process on its first `threads` cores (0: all it may use; XLA's
  threads follow the affinity mask) and returns how many it keeps."""
  cores = sorted(os.sched_getaffinity(0))
  threads = threads or len(cores)
  if threads < len(cores):
    os.sched_setaffinity(0, cores[:threads])
  return threads


def cpu_model() -> str:
  """lscpu's model name (ratios to PyTorch differ between CPU vendors)."""
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True,
                         check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return platform.processor()
  for line in out.splitlines():
    if line.startswith('Model name'):
      return line.split(':', 1)[1].strip()
  return platform.processor()


def environment(torch, **extra) -> dict:
  """What a result was measured on and under: CPU, cores, versions, XLA
  flags, torch's thread counts, the load average and the date, with `extra`."""
  return {
      'cpu': cpu_model(), 'cores': len(os.sched_getaffinity(0)),
      'torch_threads': torch.get_num_threads(),
      'torch_interop_threads': torch.get_num_interop_threads(),
      'python': platform.python_version(), 'jax': jax.__version__,
      'torch': torch.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'load_average': os.getloadavg(),
      'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'), **extra}
