#!/usr/bin/env bash
# The embedded demo on a fresh machine (CPU is enough):
#
#   bash demo.sh [WORKDIR] [flags of neural_assets.demo, e.g. --minutes=5]
#   bash demo.sh --preset=3d     # the toy 3D world (configs/synthetic_3d.py), <= 60 minutes
#
# Creates ./.venv if missing, installs this package (once per setup.py change), renders a small
# synthetic dataset, trains configs/synthetic.py for a bounded time (~15 minutes in all by default; re-running
# resumes), evaluates it against the copy-source-frame baseline, runs the edits and writes
# WORKDIR/report/index.html. WORKDIR defaults to ./workdir/demo in this repository
# (./workdir/demo_<preset> with --preset=<preset>: presets never resume each other's runs).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -ge 1 ] && [[ "$1" != --* ]]; then
  WORKDIR="$1"
  shift
else
  WORKDIR="$REPO/workdir/demo"
  for arg in "$@"; do
    case "$arg" in
      --preset=default) ;;
      --preset=*) WORKDIR="$REPO/workdir/demo_${arg#--preset=}" ;;
    esac
  done
fi
mkdir -p "$WORKDIR"
WORKDIR="$(cd "$WORKDIR" && pwd)"
cd "$REPO"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Only the package plus tensorflow-cpu and tensorboard: clu's metric writer (the trainer's
# TensorBoard event files) imports both (TF >= 2.20 no longer pulls tensorboard in), and the
# report reads the event files back with tensorboard. The [test] extra (torch, diffusers,
# transformers) is not needed: the demo loads no reference models.
STAMP=.venv/.neural_assets_demo_installed
WANT="$(cat setup.py demo.sh | sha1sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e . tensorflow-cpu tensorboard
  echo "$WANT" > "$STAMP"
fi

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
exec .venv/bin/python -m neural_assets.demo --workdir="$WORKDIR" "$@"
