#!/usr/bin/env bash
# A Cloud TPU VM pod slice: create it, copy this repo to every worker, install, and run the same
# command on all workers (jax.distributed finds the pod topology itself).
#   TPU_NAME=na-v5p ZONE=us-east5-a ACCELERATOR_TYPE=v5p-64 \
#   launch/tpu_vm.sh configs/objectron.py gs://bucket/na/objectron [--dry_run] [-- flags]
# Steps can be chosen with STEPS="create copy install run" (default: all four).
set -euo pipefail
source "$(dirname "$0")/common.sh"
parse_common_args "$@"
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v5p-8}"
RUNTIME_VERSION="${RUNTIME_VERSION:-v2-alpha-tpuv5}"
PROJECT_FLAG=()
[ -n "${PROJECT:-}" ] && PROJECT_FLAG=(--project="$PROJECT")
STEPS="${STEPS:-create copy install run}"
REPO_DIR="$(cd "$(dirname "$0")/.." && pwd)"
REMOTE_DIR=neural_assets
tpu() { run gcloud compute tpus tpu-vm "$@" --zone="$ZONE" "${PROJECT_FLAG[@]}"; }

for step in $STEPS; do
  case "$step" in
    create) tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" \
              --version="$RUNTIME_VERSION" ;;
    copy) tpu scp --worker=all --recurse "$REPO_DIR" "$TPU_NAME:~/$REMOTE_DIR" ;;
    install) tpu ssh "$TPU_NAME" --worker=all \
               --command="cd ~/$REMOTE_DIR && pip install -q -e '.[tpu]'" ;;
    run) tpu ssh "$TPU_NAME" --worker=all \
           --command="cd ~/$REMOTE_DIR && $(main_command --distributed)" ;;
    *) echo "$0: unknown step $step (create copy install run)" >&2; exit 2 ;;
  esac
done
