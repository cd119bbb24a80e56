"""Scalars to stdout, a JSON-lines file and TensorBoard, plus a progress bar.

The workdir may be a local path or a URL such as gs://bucket/run (etils.epath).
"""

import json
import sys
import time

from absl import logging
from etils import epath
import tqdm

METRICS_FILE = 'metrics.jsonl'


def read_metrics(workdir) -> list[dict]:
  path = epath.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines()
          if line.strip()]


class MetricWriter:
  """Writes one record per call: {'step', 'split', name: value, ...}.

  A resumed run first drops the records written after its checkpoint, so the
  file reads like that of a run never interrupted. A local file is appended
  to; an object-store URL (gs://...), which cannot append, is rewritten whole.
  """

  def __init__(self, workdir, *, resume_step: int = 0,
               tensorboard: bool = True):
    workdir = epath.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self._path = workdir / METRICS_FILE
    self._lines = [json.dumps(r) for r in read_metrics(workdir)
                   if r['step'] <= resume_step]
    self._path.write_text(''.join(line + '\n' for line in self._lines))
    remote = '://' in str(workdir)
    self._file = None if remote else self._path.open('a')
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(workdir / 'tensorboard'))

  def write(self, step: int, split: str, scalars: dict[str, float],
            echo: bool = True):
    scalars = {k: float(v) for k, v in scalars.items()}
    line = json.dumps({'step': int(step), 'split': split, **scalars})
    if self._file is not None:
      self._file.write(line + '\n')
      self._file.flush()
    else:
      self._lines.append(line)
      self._path.write_text(''.join(x + '\n' for x in self._lines))
    if self._tb is not None:
      for name, value in scalars.items():
        self._tb.add_scalar(f'{split}/{name}', value, step)
    if echo:
      text = ', '.join(f'{k}={v:.5g}' for k, v in scalars.items())
      logging.info('[%d] %s: %s', step, split, text)

  def close(self):
    if self._file is not None:
      self._file.close()
    if self._tb is not None:
      self._tb.close()


class Progress:
  """A tqdm bar with steps/s on an interactive terminal, nothing otherwise."""

  def __init__(self, total: int, initial: int = 0, desc: str = 'train',
               enabled: bool = True):
    self._bar = None
    self.interactive = enabled and sys.stderr.isatty()
    self._start = time.perf_counter()
    self._initial = initial
    if self.interactive:
      self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                            unit='step', dynamic_ncols=True)

  def update(self, step: int, postfix: dict[str, float] | None = None):
    if self._bar is None:
      return
    self._bar.update(step - self._bar.n)
    if postfix:
      self._bar.set_postfix({k: f'{v:.4g}' for k, v in postfix.items()},
                            refresh=False)

  def steps_per_second(self, step: int) -> float:
    return (step - self._initial) / max(time.perf_counter() - self._start,
                                        1e-9)

  def close(self):
    if self._bar is not None:
      self._bar.close()
