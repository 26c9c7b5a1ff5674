#!/usr/bin/env bash
# One command on a machine with one GPU or TPU: the paper model's training step per attention
# kernel at the largest batch that fits, images/s, FLOPs, MFU, and (GPU) diffusers' PyTorch UNet
# step side by side. Installs missing Python packages (from the index, or --wheels DIR).
#   bash benchmarks/accelerator.sh [--wheels DIR] [any benchmarks/accelerator.py flag]
# PYTHON=/path/to/python picks the interpreter (default: ./.venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
# A persistent compilation cache makes a second run (or a rerun after a time-out) start fast.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/neural_assets_xla_cache}"
# `-m` from the repository root: runs without installing the package (a bare machine).
exec timeout "${BENCH_TIMEOUT_S:-480}" "$PY" -m benchmarks.accelerator "$@"
