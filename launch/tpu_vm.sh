#!/usr/bin/env bash
# Run the same `sat` command on every worker of a Cloud TPU VM slice.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b launch/tpu_vm.sh setup
#   TPU_NAME=my-v4-32 ZONE=us-central2-b launch/tpu_vm.sh train \
#       --config configs/coco.py:soft --workdir gs://my-bucket/runs/coco_soft
#
# `setup` copies this repository to every worker and installs it with jax[tpu]; anything else
# is passed to `sat` on all workers at once. jax.distributed finds the slice's coordinator
# itself on TPU VMs (SAT_DISTRIBUTED=auto). The workdir must be shared storage (a GCS bucket).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
project_flag=${PROJECT:+--project=$PROJECT}
repo=$(cd "$(dirname "$0")/.." && pwd)

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" $project_flag --worker=all \
    --command="$1"
}

if [[ "${1:-}" == "setup" ]]; then
  tar -C "$repo" --exclude=.venv --exclude=runs --exclude=data -czf /tmp/sat.tgz .
  gcloud compute tpus tpu-vm scp /tmp/sat.tgz "$TPU_NAME":~/sat.tgz --zone="$ZONE" \
    $project_flag --worker=all
  on_all_workers "mkdir -p ~/show_attend_tell && tar -xzf ~/sat.tgz -C ~/show_attend_tell && \
    cd ~/show_attend_tell && python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]'"
  exit 0
fi
args=$(printf ' %q' "$@")
on_all_workers "cd ~/show_attend_tell && SAT_DISTRIBUTED=auto .venv/bin/sat${args}"
