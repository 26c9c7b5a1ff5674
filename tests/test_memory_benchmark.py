"""benchmarks/memory.py on the smoke model: shape-computed shard bytes against XLA's own figures."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_memory_benchmark_smoke(tmp_path):
  out = tmp_path / "memory.json"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
  result = subprocess.run(
      [sys.executable, "benchmarks/memory.py", "--config", "configs/smoke.py", "--devices", "4",
       "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  (four,) = json.load(open(out))["runs"]
  total = four["params_plus_optimizer"]["replicated_total"]
  assert total == 4 * four["params_plus_optimizer"]["ideal"] > 8 * 2 ** 20
  # The smoke model's arrays all divide by 4 except Adam's scalar step counts (a few bytes).
  assert total / 4 <= four["params_plus_optimizer"]["per_device"] <= total / 4 + 64
  assert four["num_large_leaves_not_split_fully"] == 0
  assert four["mesh"] == {"data": 1, "fsdp_0": 2, "fsdp_1": 2, "tensor": 1}
  compiled = four["compile"]
  assert compiled["global_batch"] == 4
  memory = compiled["memory_per_device"]
  # XLA's per-device arguments hold the sharded state (and the batch): at least what the shard
  # shapes say, and not the unsharded state.
  state = four["params_plus_optimizer"]["per_device"] + four["frozen_params"]["per_device"]
  assert state <= memory["arguments"] <= state + 2 ** 20
  assert memory["temporaries"] > 0
  assert "N=  4" in result.stdout and "ratio 1.00" in result.stdout
