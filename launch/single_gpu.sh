#!/usr/bin/env bash
# One GPU (or a CPU laptop): the same command as everywhere, one process.
#   launch/single_gpu.sh configs/objectron.py /tmp/workdir [--dry_run] [-- --config.x=y]
set -euo pipefail
source "$(dirname "$0")/common.sh"
parse_common_args "$@"
# XLA's default preallocation grabs 75% of GPU memory; training wants most of it.
run env XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}" \
  bash -c "$(main_command)"
