#!/usr/bin/env bash
# Installs everything the tests need into ./.venv and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
# The beam extra too, so that tests/test_beam_convert.py (Beam vs CLI conversion) runs.
.venv/bin/python -m pip install -q -e ".[test,beam]"
.venv/bin/python -m pytest -q -n 2 --durations=15 tests "$@"
