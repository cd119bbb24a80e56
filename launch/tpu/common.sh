# shellcheck shell=bash
# Settings shared by the launch/tpu scripts (sourced, not run). Each one can be
# overridden from the environment, e.g. `TPU_NAME=my-tpu ZONE=europe-west4-a`.
# The Google Cloud project is gcloud's default, or CLOUDSDK_CORE_PROJECT.

TPU_NAME="${TPU_NAME:-ml-course-jax}"
ZONE="${ZONE:-us-central2-b}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"
# Where the checkout lives on every worker, relative to the home directory
# (where the commands below start).
REMOTE_DIR="${REMOTE_DIR:-ml-course-jax}"

# Runs a bash command line on every worker of the TPU VM at once.
on_all_workers() {
  gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all \
    --command="$1"
}
