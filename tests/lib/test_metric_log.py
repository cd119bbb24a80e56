"""Metric records, resume truncation and the progress bar."""

import io

from lib import metric_log


def test_records_and_resume_truncation(tmp_path):
  writer = metric_log.MetricWriter(tmp_path, tensorboard=False)
  for step in (10, 20, 30):
    writer.write(step, 'train', {'loss': 1.0 / step}, echo=False)
  writer.close()
  assert [r['step'] for r in metric_log.read_metrics(tmp_path)] == [10, 20, 30]
  resumed = metric_log.MetricWriter(tmp_path, resume_step=20,
                                    tensorboard=False)
  resumed.write(30, 'train', {'loss': 0.5}, echo=False)
  records = metric_log.read_metrics(tmp_path)
  assert [(r['step'], r['loss']) for r in records] == [
      (10, 0.1), (20, 0.05), (30, 0.5)]


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
  terminal = _Terminal()
  monkeypatch.setattr('sys.stderr', terminal)
  progress = metric_log.Progress(total=100, initial=10)
  progress.update(50, {'loss': 0.25})
  progress.close()
  assert '50/100' in terminal.getvalue()
  assert progress.steps_per_second(50) > 0

  pipe = io.StringIO()
  monkeypatch.setattr('sys.stderr', pipe)
  quiet = metric_log.Progress(total=100)
  quiet.update(50)
  quiet.close()
  assert not pipe.getvalue()
