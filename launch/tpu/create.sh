#!/usr/bin/env bash
# Creates the Cloud TPU VM. Usage: see usage() or run with --help.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: launch/tpu/create.sh [extra gcloud flags, e.g. --spot]

Creates the TPU VM \$TPU_NAME. Settings from the environment:
  TPU_NAME=${TPU_NAME}  ZONE=${ZONE}  ACCELERATOR_TYPE=${ACCELERATOR_TYPE}
  RUNTIME_VERSION (default: the one Cloud TPU recommends for the accelerator)
USAGE
}

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  usage
  exit 0
fi

case "${ACCELERATOR_TYPE}" in
  v5litepod-* | v5e-*) default_runtime=v2-alpha-tpuv5-lite ;;
  v5p-*) default_runtime=v2-alpha-tpuv5 ;;
  v6e-*) default_runtime=v2-alpha-tpuv6e ;;
  *) default_runtime=tpu-ubuntu2204-base ;;
esac
RUNTIME_VERSION="${RUNTIME_VERSION:-${default_runtime}}"

gcloud compute tpus tpu-vm create "${TPU_NAME}" --zone="${ZONE}" \
  --accelerator-type="${ACCELERATOR_TYPE}" --version="${RUNTIME_VERSION}" "$@"
