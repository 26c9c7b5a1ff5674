"""training/multihost across 2 JAX processes (gloo CPU collectives): the barrier waits for a
process that arrives 40 s late (more than gloo's 30 s key-value timeout), a name mismatch fails
on both processes, and CompileThenSync runs a cross-process program after compiling it."""
import json
import os
import subprocess
import sys
import textwrap

from tests.test_training import _free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
  port = _free_port()
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, "XLA_FLAGS": "",
         "TF_CPP_MIN_LOG_LEVEL": "3"}
  procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(port), str(i), str(LATE_S)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(2)]
  outs = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=240)
      assert p.returncode == 0, err[-4000:]
      outs.append(json.loads(out.split("RESULT")[1].splitlines()[0]))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  # Process 0 waited for process 1's late arrival; process 1 found it waiting.
  assert outs[0]["waited_s"] > LATE_S - 5, outs
  assert outs[1]["waited_s"] < LATE_S - 5, outs
  for out in outs:
    assert out["mismatch"].startswith("refused"), out
    assert out["sums"] == [3.0, 6.0], out  # 1 + 2 across the processes, then doubled.
