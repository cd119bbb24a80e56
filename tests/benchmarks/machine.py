"""The machine the benchmarks run on: its CPU, and the cores they may use."""

import os
import platform
import subprocess

from absl import flags


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
