"""Shared test set-up: CPU only, deterministic, quiet."""
import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# XLA's CPU backend at its default optimisation level takes minutes and GBs to compile the
# training step even at smoke size; tests check values, not speed (as tests/test_training.py).
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# The demo's entry points re-execute their process with huge-page malloc
# (neural_assets/demo/malloc_hugepages.py); tests call them in-process: never re-execute pytest.
os.environ.setdefault("NEURAL_ASSETS_MALLOC_REEXEC", "1")


@pytest.fixture
def one_device(monkeypatch):
  """Entry points that split the host into XLA devices before JAX starts (the demo's,
  benchmarks.ablations / continue_run) run in the suite's process, where JAX has started with
  one device: say so, as a user's XLA_FLAGS would (no split is tried)."""
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "")
                     + " --xla_force_host_platform_device_count=1")
