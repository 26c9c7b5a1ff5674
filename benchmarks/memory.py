"""Per-device memory of the paper model's training step under FSDP at 1, 8, 64 and 256 devices.

For each device count N, in its own subprocess with N fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=N`):
  1. the training state of `--config` (SD-2.1 UNet + DINO ViT-B/8 tokenizer + frozen VAE, AdamW)
     is built abstractly (`jax.eval_shape`: no weights exist) and sharded by the config's rules
     on the mesh data=1, fsdp=N; per-device bytes of parameters, optimizer state and the frozen
     VAE are computed exactly from the shard shapes, with the ideal (replicated total / N) and
     their ratio, and the leaves of at least `min_size_to_shard` elements not split N ways;
  2. the whole training step (VAE encode, tokenizer, UNet, loss, AdamW) is lowered and compiled
     for that mesh with a global batch of N x `--per_device_batch`, and XLA's
     `memory_analysis()` gives per-device argument, output, temporary and peak bytes.
Step 2 can be slow on CPU; a count whose compile exceeds `--compile_timeout` keeps step 1's
figures and says `compile: timed out`. Compiling with `--xla_backend_optimization_level=0`
(default here, `--opt_level`) only skips LLVM code optimisation, which happens after buffer
assignment, so the memory figures are those of a normal compile.

Usage:
  python -m benchmarks.memory [--config configs/movi_e.py] [--devices 1,8,64,256]
      [--per_device_batch 1] [--compile_timeout 1500] [--no_compile]
      [--out benchmarks/results/memory.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from neural_assets import config_files


def compiled_memory(compiled) -> dict[str, int]:
  """Per-device bytes from XLA's memory analysis of a compiled executable."""
  mem = compiled.memory_analysis()
  if mem is None:
    return {}
  args, outs = mem.argument_size_in_bytes, mem.output_size_in_bytes
  temp, alias = mem.temp_size_in_bytes, mem.alias_size_in_bytes
  return dict(arguments=int(args), outputs=int(outs), temporaries=int(temp), aliased=int(alias),
              peak_estimate=int(args + outs + temp - alias))


def compiled_flops(compiled) -> float:
  """FLOPs of one call from XLA's cost analysis (NaN when the backend gives none)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", float("nan")))


def state_plan(config, mesh) -> dict:
  """Shape-only per-device bytes of the sharded training state on `mesh` (step 1)."""
  import jax  # pylint: disable=g-import-not-at-top
  from neural_assets.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from neural_assets.training import sharding as sharding_lib
  from neural_assets.training import train_step as train_step_lib
  from neural_assets.training.state_setup import setup_state

  model, vae = train_step_lib.build_models(config)
  setup = setup_state(config, model, vae, mesh)
  state, shardings = setup.abstract_state, setup.state_shardings
  replicated = lambda tree: jax.tree_util.tree_map(
      lambda _: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()), tree)
  n = mesh_lib.axis_size(mesh, "fsdp")
  out = {}
  for name in ("params", "opt_state", "frozen_params"):
    part, part_sh = getattr(state, name), getattr(shardings, name)
    out[name] = dict(per_device=sharding_lib.per_device_bytes(part, part_sh),
                     replicated=sharding_lib.per_device_bytes(part, replicated(part)))
  trainable = (state.params, state.opt_state)
  per_device = sharding_lib.per_device_bytes(trainable, (shardings.params, shardings.opt_state))
  total = out["params"]["replicated"] + out["opt_state"]["replicated"]
  partial = sharding_lib.replicated_over_fsdp(state.params, shardings.params, mesh,
                                              config.sharding.min_size_to_shard)
  small = [x for x in jax.tree_util.tree_leaves(state.params)
           if math.prod(x.shape) < config.sharding.min_size_to_shard]
  out["params_plus_optimizer"] = dict(
      per_device=per_device, replicated_total=total, ideal=total / n,
      ratio_to_ideal=per_device / (total / n))
  out["large_leaves_not_split_fully"] = [
      dict(path=p, shape=list(s), ways=w) for p, s, w in partial[:20]]
  out["num_large_leaves_not_split_fully"] = len(partial)
  out["small_leaves_replicated"] = dict(count=len(small),
                                        elements=int(sum(math.prod(x.shape) for x in small)))
  out["num_params"] = dict(
      trainable=int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(state.params))),
      frozen=int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(
          state.frozen_params))))
  return out, (model, vae, setup)


def compile_step(config, mesh, models, batch_size: int) -> dict:
  """Lowers and compiles the real training step on abstract inputs (step 2)."""
  import jax  # pylint: disable=g-import-not-at-top
  from neural_assets.training import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from neural_assets.training import train_step as train_step_lib

  model, vae, setup = models
  step = train_step_lib.make_train_step(
      config, model, vae, setup.tx, setup.schedules, setup.state_shardings,
      sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh))
  batch_sharding = sharding_lib.batch_sharding(mesh)
  batch = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_sharding),
      jax.eval_shape(lambda: train_step_lib.dummy_batch(config, batch_size)))
  start = time.perf_counter()
  lowered = step.lower(setup.abstract_state, batch)
  lower_s = time.perf_counter() - start
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start - lower_s
  return dict(global_batch=batch_size, lower_seconds=lower_s, compile_seconds=compile_s,
              memory_per_device=compiled_memory(compiled),
              flops_per_step_per_device=compiled_flops(compiled))


def worker(args) -> None:
  """One device count, in this process (XLA_FLAGS set by the parent). Prints JSON lines."""
  import jax  # pylint: disable=g-import-not-at-top
  from neural_assets.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top

  n = args.worker
  parent = os.getppid()

  def exit_with_parent():  # A killed parent (timeout) must not leave a compile running.
    while os.getppid() == parent:
      time.sleep(2)
    os._exit(1)  # pylint: disable=protected-access

  import threading  # pylint: disable=g-import-not-at-top
  threading.Thread(target=exit_with_parent, daemon=True).start()
  config = config_files.load(args.config)
  if args.min_size_to_shard >= 0:
    config.sharding.min_size_to_shard = args.min_size_to_shard
  config.sharding.split_dims = not args.single_dim
  if len(jax.devices()) != n:
    raise RuntimeError(f"Expected {n} devices, got {len(jax.devices())}: run through the parent.")
  mesh = mesh_lib.create_mesh({"data": 1, "fsdp": n})
  plan, models = state_plan(config, mesh)
  plan["mesh"] = {k: int(v) for k, v in mesh.shape.items()}
  print("PLAN " + json.dumps(plan), flush=True)
  if not args.no_compile:
    print("COMPILE " + json.dumps(compile_step(config, mesh, models,
                                               n * args.per_device_batch)), flush=True)


def run_count(args, n: int) -> dict:
  """Runs `worker` for n devices in a subprocess; keeps the plan if the compile times out."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": (f"--xla_force_host_platform_device_count={n} "
                       f"--xla_backend_optimization_level={args.opt_level}"),
         "TF_CPP_MIN_LOG_LEVEL": "3"}
  # `-m` from the repository root, so the worker imports this package as the parent does
  # (installed or not); the config path is made absolute for the worker's working directory.
  path, sep, arg = args.config.partition(":")
  config = os.path.abspath(path) + sep + arg
  cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", str(n), "--config", config,
         "--per_device_batch", str(args.per_device_batch),
         "--min_size_to_shard", str(args.min_size_to_shard)]
  cmd += ["--no_compile"] if args.no_compile else []
  cmd += ["--single_dim"] if args.single_dim else []
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    stdout, stderr = proc.communicate(timeout=args.compile_timeout)
    timed_out = False
  except subprocess.TimeoutExpired:
    proc.kill()
    stdout, stderr = proc.communicate()
    timed_out = True
  result = dict(devices=n, wall_seconds=time.perf_counter() - start)
  for line in stdout.splitlines():
    if line.startswith("PLAN "):
      result.update(json.loads(line[5:]))
    elif line.startswith("COMPILE "):
      result["compile"] = json.loads(line[8:])
  if "params_plus_optimizer" not in result:
    raise RuntimeError(f"{n} devices: the worker failed (exit {proc.returncode}):\n"
                       f"{stderr[-4000:]}")
  if "compile" not in result and not args.no_compile:
    result["compile"] = ("timed out after %d s" % args.compile_timeout if timed_out else
                         f"failed (exit {proc.returncode}): {stderr[-1500:]}")
  return result


def summary_line(r: dict) -> str:
  p = r["params_plus_optimizer"]
  line = (f"N={r['devices']:>3}: params+opt {p['per_device'] / 2**20:9.1f} MiB/device, "
          f"ideal {p['ideal'] / 2**20:9.1f} MiB, ratio {p['ratio_to_ideal']:.3f}; "
          f"frozen VAE {r['frozen_params']['per_device'] / 2**20:.1f} MiB")
  comp = r.get("compile")
  if isinstance(comp, dict) and comp.get("memory_per_device"):
    m = comp["memory_per_device"]
    line += (f"; compiled (batch {comp['global_batch']}): temp {m['temporaries'] / 2**20:.1f} "
             f"MiB, peak {m['peak_estimate'] / 2**20:.1f} MiB, compile "
             f"{comp['compile_seconds']:.0f} s")
  elif comp:
    line += f"; compile {comp}"
  return line


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/movi_e.py")
  parser.add_argument("--devices", default="1,8,64,256")
  parser.add_argument("--per_device_batch", type=int, default=1)
  parser.add_argument("--min_size_to_shard", type=int, default=-1,
                      help="-1: the config's sharding.min_size_to_shard.")
  parser.add_argument("--single_dim", action="store_true",
                      help="The old rule (sharding.split_dims=False), for comparison.")
  parser.add_argument("--no_compile", action="store_true")
  parser.add_argument("--compile_timeout", type=float, default=1500.0)
  parser.add_argument("--opt_level", type=int, default=0)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/memory.json"))
  parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    worker(args)
    return None
  results = dict(config=args.config, per_device_batch=args.per_device_batch,
                 split_dims=not args.single_dim, xla_backend_optimization_level=args.opt_level,
                 machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                              load_average=list(os.getloadavg())),
                 runs=[])
  for n in (int(x) for x in args.devices.split(",")):
    r = run_count(args, n)
    r["load_average_after"] = list(os.getloadavg())
    results["runs"].append(r)
    print(summary_line(r), flush=True)
    if args.out:
      os.makedirs(os.path.dirname(args.out), exist_ok=True)
      with open(args.out, "w") as f:  # After every count: a killed run keeps what finished.
        json.dump(results, f, indent=2)
  if args.out:
    print(f"Wrote {args.out}")
  return results


if __name__ == "__main__":
  main()
