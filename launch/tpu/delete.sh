#!/usr/bin/env bash
# Deletes the Cloud TPU VM (it bills until deleted).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: launch/tpu/delete.sh [extra gcloud flags, e.g. --quiet]

Deletes the TPU VM \$TPU_NAME (${TPU_NAME}) in \$ZONE (${ZONE}).
USAGE
}

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  usage
  exit 0
fi

gcloud compute tpus tpu-vm delete "${TPU_NAME}" --zone="${ZONE}" "$@"
