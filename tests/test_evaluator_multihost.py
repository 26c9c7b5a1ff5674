"""Evaluator across processes: each of 2 JAX processes (gloo CPU collectives) scores its half of the
examples; `result(all_processes=True)` equals one process's result over all of them.

The network metrics are small deterministic stand-ins (a fixed random projection as the FID
feature net, etc.): what is tested is the reduction of sums, counts and FID statistics.
"""
import textwrap

import pytest

from tests import two_processes


_SETUP = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from neural_assets.evaluation import Evaluator
    from tests.test_evaluator import _batches, _config

    PROJ = np.random.default_rng(7).normal(size=(3, 6)).astype(np.float32)

    def features(x):  # [B, H, W, 3] -> [B, 6]: pooled colours and squares, projected.
      pooled = jnp.concatenate([x.mean((1, 2)), (x ** 2).mean((1, 2))], -1)
      return jnp.concatenate([pooled[:, :3] @ PROJ, pooled[:, 3:] @ PROJ], -1)[:, :6]

    def make():
      return Evaluator(_config(), lpips_fn=lambda x, y: jnp.abs(x - y).mean((1, 2, 3)),
                       inception_fn=features, dino_fn=features)

    def examples():
      batches = _batches(3, count=4, batch=3)
      # Process 1's last batch has no valid slot: that process meets no object in it.
      gen, tgt, boxes, mask = batches[3]
      batches[3] = (gen, tgt, boxes, np.zeros_like(mask))
      return batches
""")

_WORKER = _SETUP + textwrap.dedent("""
    import json, sys
    port, pid = sys.argv[1], int(sys.argv[2])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=pid)
    evaluator = make()
    batches = examples()
    # Process 0 scores batches 0 and 1, process 1 batches 2 and 3 (uneven object counts).
    for gen, tgt, boxes, mask in batches[2 * pid: 2 * pid + 2]:
      evaluator.update(gen, tgt, boxes, mask)
    local = evaluator.result()
    merged = evaluator.result(all_processes=True)
    again = evaluator.result()  # The local state is kept for further updates.
    print("RESULT" + json.dumps({"local": local, "merged": merged, "again": again}))
""")


def test_two_processes_reduce_to_the_single_process_result(tmp_path):
  outs = two_processes.run(_WORKER)

  namespace = {}
  exec(_SETUP, namespace)  # pylint: disable=exec-used
  single = namespace["make"]()
  for batch in namespace["examples"]():
    single.update(*batch)
  expected = single.result()
  assert {"image/fid", "object/fid", "image/lpips", "object/dino"} <= set(expected)
  for out in outs:
    merged = out["merged"]
    assert set(merged) == set(expected)
    for key, value in expected.items():
      # The reduction itself is exact (float64 sums); the feature networks run in float32 on a
      # half batch per process, and XLA's CPU matmuls round differently per batch size (2e-8
      # relative seen for image/dino), so float32 rounding is the tolerance.
      assert merged[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    assert out["again"] == out["local"]
  # Both processes return bit-identical numbers; each alone saw only part of the set.
  assert outs[0]["merged"] == outs[1]["merged"]
  assert outs[0]["local"]["image/count"] + outs[1]["local"]["image/count"] == \
      expected["image/count"] == 12
  assert outs[0]["local"]["object/count"] + outs[1]["local"]["object/count"] == \
      expected["object/count"]
  assert outs[0]["local"]["image/psnr"] != pytest.approx(expected["image/psnr"], rel=1e-6)
