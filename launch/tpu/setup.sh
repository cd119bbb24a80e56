#!/usr/bin/env bash
# Puts the code and a Python environment with jax[tpu] on every worker.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Kept in step with the jax pin in setup.cfg (tests/test_launch_scripts.py checks).
JAX_TPU='jax[tpu]>=0.10.2,<0.11'
# The TPU images ship Python 3.10; the project needs >= 3.11, so uv fetches one.
PYTHON_VERSION="${PYTHON_VERSION:-3.12}"

usage() {
  cat <<USAGE
Usage: launch/tpu/setup.sh

On every worker of \$TPU_NAME (${TPU_NAME}): puts the code in ~/${REMOTE_DIR}
(git clone/pull of \$REPO_URL, or a copy of this checkout when REPO_URL is
unset), then creates ~/${REMOTE_DIR}/.venv (Python ${PYTHON_VERSION}) and
installs the project with ${JAX_TPU}. Safe to re-run after code changes.
USAGE
}

if [[ $# -gt 0 ]]; then
  if [[ "$1" == -h || "$1" == --help ]]; then
    usage
    exit 0
  fi
  usage >&2
  exit 2
fi

remote_dir="$(printf '%q' "${REMOTE_DIR}")"
if [[ -n "${REPO_URL:-}" ]]; then
  repo_url="$(printf '%q' "${REPO_URL}")"
  on_all_workers "set -euo pipefail
    if [[ -d ${remote_dir}/.git ]]; then git -C ${remote_dir} pull --ff-only
    else git clone ${repo_url} ${remote_dir}; fi"
else
  # Only the files git would keep: no .git, virtual environments or workdirs.
  repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  if ! git -C "${repo_root}" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "error: ${repo_root} is not a git checkout; set REPO_URL instead" >&2
    exit 2
  fi
  tarball="$(mktemp -d)/code.tar.gz"
  trap 'rm -rf "$(dirname "${tarball}")"' EXIT
  git -C "${repo_root}" ls-files -z --cached --others --exclude-standard |
    tar -C "${repo_root}" --null -T - -czf "${tarball}"
  gcloud compute tpus tpu-vm scp "${tarball}" "${TPU_NAME}:code.tar.gz" \
    --zone="${ZONE}" --worker=all
  on_all_workers "set -euo pipefail
    mkdir -p ${remote_dir} && tar -xzf code.tar.gz -C ${remote_dir}
    rm code.tar.gz"
fi

on_all_workers "set -euo pipefail
  cd ${remote_dir}
  python3 -m pip install --user --quiet uv
  [[ -x .venv/bin/python ]] ||
    ~/.local/bin/uv venv --seed --python $(printf '%q' "${PYTHON_VERSION}") .venv
  .venv/bin/pip install --quiet -e . '${JAX_TPU}'
  .venv/bin/pip install --quiet gcsfs google-cloud-storage  # gs:// workdirs
  .venv/bin/python -c 'import jax; print(jax.__version__)'"
