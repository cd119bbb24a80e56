"""What the benchmarks report of the machine they ran on."""

import platform
import subprocess


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
