#!/usr/bin/env bash
# Installs everything the tests need into ./.venv and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
# tests/test_app.py drives the scene editor in headless Chromium (Debian's packages); it skips
# without them, except under CI=true. Installed here when missing and running as root.
if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      chromium-driver >/dev/null
fi
.venv/bin/python -m pip install -q --upgrade pip
# The beam extra too, so that tests/test_beam_convert.py (Beam vs CLI conversion) runs.
.venv/bin/python -m pip install -q -e ".[test,beam]"
# The PyTorch LPIPS reference of tests/test_lpips.py (its v0.1 linear layers and code). Without
# its dependencies: it asks for torchvision, which would replace the pinned CPU torch with a CUDA
# build; the test hands it the trunk instead.
.venv/bin/python -m pip install -q --no-deps lpips==0.1.4
# glibc malloc with transparent huge pages: XLA CPU steps fault in far fewer pages
# (neural_assets/demo/malloc_hugepages.py); ignored where glibc or the kernel lacks them.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}"
.venv/bin/python -m pytest -q -n 2 --durations=15 tests "$@"
