#!/usr/bin/env bash
# TPU pods on GKE through xpk: one workload running the same command on every host of every
# slice. Build and push an image of this repo first (IMAGE), e.g. with the Dockerfile-free
# `xpk workload create --base-docker-image` route.
#   CLUSTER=my-cluster TPU_TYPE=v5p-256 IMAGE=gcr.io/p/na:latest \
#   launch/xpk.sh configs/waymo.py gs://bucket/na/waymo [--dry_run] [-- flags]
set -euo pipefail
source "$(dirname "$0")/common.sh"
parse_common_args "$@"
: "${CLUSTER:?set CLUSTER}" "${IMAGE:?set IMAGE}"
TPU_TYPE="${TPU_TYPE:-v5p-256}"
NUM_SLICES="${NUM_SLICES:-1}"
WORKLOAD="${WORKLOAD:-na-$(basename "$CONFIG" .py)-$(date +%m%d-%H%M)}"
run xpk workload create --cluster="$CLUSTER" --workload="$WORKLOAD" --tpu-type="$TPU_TYPE" \
  --num-slices="$NUM_SLICES" --docker-image="$IMAGE" \
  --command="$(main_command --distributed)"
