"""benchmarks/accelerator.py: the peak table, the batch search, and a real --tiny run on CPU.

The figures of an accelerator run are not asserted (speed is measured, never tested); what is
tested is that the one-command benchmark runs end to end and reports what it promises.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import accelerator  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.parametrize("kind, peak", [
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0), ("NVIDIA B200", 2250.0),
    ("TPU v4", 275.0), ("TPU v5 lite", 197.0), ("TPU v5p", 459.0), ("TPU v5", 459.0),
    ("TPU v6 lite", 918.0), ("cpu", None), ("NVIDIA GeForce RTX 4090", None)])
def test_peak_table(kind, peak):
  assert accelerator.peak_tflops(kind)[0] == peak


def test_supported_kernels():
  assert accelerator.supported_kernels("cpu", "cpu") == ["xla", "dot_product"]
  assert accelerator.supported_kernels("gpu", "NVIDIA H200") == ["xla", "dot_product", "cudnn"]
  assert accelerator.supported_kernels("tpu", "TPU v5p") == ["xla", "dot_product",
                                                             "tpu_splash"]


def test_install_refuses_a_missing_wheel_dir(tmp_path):
  assert accelerator.install([], None) == []
  with pytest.raises(FileNotFoundError, match="--wheels"):
    accelerator.install(["einops"], str(tmp_path / "nope"))
  assert accelerator.missing_modules({"json": "json", "no_such_module_xyz": "xyz"}) == ["xyz"]


def test_batch_search_takes_the_largest_batch_that_fits(monkeypatch):
  """Out of memory above batch 4 for 'xla'; 'dot_product' fails otherwise: the search keeps 4,
  starts the next kernel there, and records why the other kernel has no figure."""
  calls = []

  def fake_step(config, batch, steps, limit):
    impl = config.model.unet.attention_impl
    calls.append((impl, batch, config.model.unet.remat))
    if impl == "dot_product":
      raise ValueError("kernel not available here")
    if batch > 4:
      raise MemoryError("RESOURCE_EXHAUSTED: out of memory")
    return dict(batch_size=batch, compile_seconds=1.0, seconds_per_step=0.5,
                images_per_second=batch / 0.5, flops_per_step=1e12, memory_per_device={},
                final_loss=1.0)

  monkeypatch.setattr(accelerator, "bench_full_step", fake_step)
  ns = type("Args", (), dict(tiny=True, budget_s=100.0, kernels="xla,dot_product",
                             batch_sizes="16,8,4,2", remat="auto", torch="off", steps=1,
                             installed=[], torch_grace_s=0.0, no_torch_compile=True))()
  results = accelerator.run(ns)
  assert calls == [("xla", 16, False), ("xla", 8, False), ("xla", 4, False),
                   ("dot_product", 4, False), ("dot_product", 4, True)]
  assert results["best"]["kernel"] == "xla" and results["best"]["batch_size"] == 4
  assert results["kernels"]["xla"]["result"]["images_per_second"] == 8.0
  assert "kernel not available" in results["kernels"]["dot_product"]["attempts"][0]["error"]
  assert "result" not in results["kernels"]["dot_product"]
  assert results["kernels"]["xla"]["result"]["knobs"]["compute_dtype"] == "bfloat16"
  assert results["unet_comparison"].startswith("skipped")


def test_tiny_run_on_cpu_end_to_end(tmp_path):
  """The real thing at smoke size, through the shell entry point. One kernel (dot_product, not
  the default xla, so the kernel switch is live) keeps it to one full-step compile; the loop
  over kernels is tested above."""
  out = tmp_path / "acc.json"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": "",
         "XLA_FLAGS": "--xla_backend_optimization_level=0", "TF_CPP_MIN_LOG_LEVEL": "3"}
  result = subprocess.run(
      ["bash", "benchmarks/accelerator.sh", "--tiny", "--no_install", "--torch", "on",
       "--no_torch_compile", "--kernels", "dot_product", "--steps", "1", "--budget_s", "3000",
       "--out", str(out)],
      cwd=ROOT, env={**env, "BENCH_TIMEOUT_S": "1500"}, capture_output=True, text=True,
      timeout=1600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  r = json.load(open(out))
  assert r["device"]["backend"] == "cpu" and r["device"]["peak_bf16_tflops"] is None
  assert r["model"]["tokens"] == 20 and r["model"]["unet_parameters"] > 0
  assert set(r["kernels"]) == {"dot_product"}
  for kernel in ("dot_product",):
    res = r["kernels"][kernel]["result"]
    assert res["batch_size"] == 2 and res["images_per_second"] > 0
    assert res["flops_per_step"] > 1e6  # XLA's cost analysis of the real step.
    assert res["mfu_xla_flops"] is None  # No peak for a CPU.
    assert res["knobs"]["remat_unet_blocks"] is False
    assert res["knobs"]["compute_dtype"] == "bfloat16"
    assert 0 < res["final_loss"] < 10
  assert r["unet_step_torch"]["images_per_second"] > 0
  assert r["unet_step_torch"]["autocast"] == "bfloat16"
  assert r["unet_step_jax"]["images_per_second"] > 0
  assert r["unet_step_jax"]["kernel"] == "dot_product"
  assert r["unet_jax_over_torch_images_per_second"] > 0
  assert "images/s" in result.stdout and r["complete"] is True
