#!/usr/bin/env bash
# Trains one project on every worker of the TPU VM at once.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: launch/tpu/run.sh CONFIG WORKDIR [extra launch.train flags...]
  e.g. launch/tpu/run.sh projects/regression/config.py gs://BUCKET/regression \\
         --config.num_steps=2000

Runs \`python -m launch.train --config=CONFIG --workdir=WORKDIR ...\` in
~/${REMOTE_DIR} on every worker of \$TPU_NAME (${TPU_NAME}). WORKDIR must be
the same storage for all workers (a gs:// path); re-running resumes.
USAGE
}

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  usage
  exit 0
fi
if [[ $# -lt 2 ]]; then
  usage >&2
  exit 2
fi

config="$1"
workdir="$2"
shift 2
# Quoted for the remote shell, so flags with spaces arrive intact.
train_args="$(printf ' %q' "--config=${config}" "--workdir=${workdir}" "$@")"
on_all_workers "cd $(printf '%q' "${REMOTE_DIR}") &&
  .venv/bin/python -m launch.train${train_args}"
