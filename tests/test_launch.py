"""The launcher's errors: one clear line, a non-zero exit, nothing written."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_CONFIG = 'tests/toy_config.py'


def _launch(*args, module='launch.train'):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('args,message', [
    ([f'--config={TOY_CONFIG}'], 'workdir'),
    (['--config=projects/nowhere/config.py'], 'nowhere/config.py'),
    ([f'--config={TOY_CONFIG}', '--config.batch_size=many'], 'batch_size'),
    ([f'--config={TOY_CONFIG}', '--config.no_such_field=1'], 'no_such_field'),
    ([f'--config={TOY_CONFIG}', '--not_a_flag=1'], 'not_a_flag'),
])
def test_bad_flags_fail_clearly(tmp_path, args, message):
  if '--config=projects/nowhere/config.py' in args or len(args) > 1:
    args = [*args, f'--workdir={tmp_path / "run"}']
  result = _launch(*args)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'run').exists()


def test_unknown_project_is_one_line(tmp_path):
  result = _launch(f'--config={TOY_CONFIG}', f'--workdir={tmp_path / "run"}')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: config.project='toy' is not a project; choose one of "
      f"{sorted(_projects())}"]
  assert not (tmp_path / 'run').exists()


def test_tour_rejects_unknown_projects(tmp_path):
  result = _launch('--projects=nope', f'--workdir={tmp_path}',
                   module='launch.tour')
  assert result.returncode == 2
  assert 'unknown projects' in result.stderr
  assert 'Traceback' not in result.stderr


def _projects():
  root = os.path.join(REPO, 'projects')
  return [d for d in os.listdir(root)
          if os.path.isfile(os.path.join(root, d, '__init__.py'))]


def test_tour_trains_a_project_and_writes_its_table(tmp_path):
  out = tmp_path / 'tour.md'
  result = _launch('--projects=regression', f'--workdir={tmp_path / "runs"}',
                   f'--out={out}', module='launch.tour')
  assert result.returncode == 0, result.stderr
  rows = [line for line in out.read_text().splitlines()
          if line.startswith('| regression')]
  assert len(rows) == 1 and '| yes |' in rows[0]
  assert (tmp_path / 'runs' / 'regression' / 'summary.json').exists()
