"""training/multihost across 2 JAX processes (gloo CPU collectives): the barrier waits for a
process that arrives 40 s late, a name mismatch fails on both processes, and CompileThenSync
runs a cross-process program after compiling it."""
import textwrap

from tests import two_processes

LATE_S = 40.0

_WORKER = textwrap.dedent("""
    import json, sys, time
    import jax, jax.numpy as jnp, numpy as np
    port, pid, late_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=pid)
    from neural_assets.training import multihost
    out = {}
    if pid == 1:
      time.sleep(late_s)
    start = time.time()
    multihost.wait_for_all_processes("late")
    out["waited_s"] = time.time() - start
    try:
      multihost.wait_for_all_processes(f"path_{pid}")
      out["mismatch"] = "passed"
    except AssertionError as e:
      out["mismatch"] = "refused: " + str(e)[:80]
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    x = jax.make_array_from_process_local_data(sharding, np.full((1,), pid + 1.0, np.float32))
    total = multihost.CompileThenSync(jax.jit(lambda v: v.sum()), "sum")
    out["sums"] = [float(total(x)), float(total(x * 2))]
    print("RESULT" + json.dumps(out))
""")


def test_barrier_waits_for_a_late_process_and_refuses_a_name_mismatch():
  outs = two_processes.run(_WORKER, str(LATE_S))
  # Process 0 waited for process 1's late arrival; process 1 found it waiting.
  assert outs[0]["waited_s"] > LATE_S - 5, outs
  assert outs[1]["waited_s"] < LATE_S - 5, outs
  for out in outs:
    assert out["mismatch"].startswith("refused"), out
    assert out["sums"] == [3.0, 6.0], out  # 1 + 2 across the processes, then doubled.
