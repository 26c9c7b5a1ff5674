"""One-command accelerator benchmark: the paper model's training step on one GPU / TPU chip.

What it does, in one run (at most 8 minutes with accelerator.sh: new JAX measurements start only
in the first `--budget_s` 330 s, the PyTorch comparison within 60 s after; results are written
after every measurement, so a run cut short keeps what it measured):
  1. installs what the machine lacks (diffusers, grain, clu, ml_collections, ...) with pip, from
     the package index or from `--wheels DIR` (`pip install --no-index --find-links DIR`);
  2. builds the paper's model with random weights -- SD-2.1 base UNet + DINO ViT-B/8 tokenizer +
     frozen SD VAE, 256x256 images, 96 asset tokens (`configs/movi_e.py`: 23 objects + background,
     4 tokens each) -- with bfloat16 compute and float32 master weights / AdamW state;
  3. for every attention kernel the platform supports (xla, dot_product; cudnn on NVIDIA GPU;
     tpu_splash on TPU) runs the full training step (VAE encode, tokenizer, UNet, loss, AdamW) at
     the largest per-chip batch of `--batch_sizes` that fits (XLA's compiled memory estimate
     against the device's memory limit, then a real run; out-of-memory moves to the next size;
     later kernels start at the batch that fitted, to save compiles);
  4. reports images/s, seconds per step, XLA cost-analysis FLOPs per step and MFU against the
     chip's dense bf16 peak (table below; MFU is left empty where the chip is not in it), plus
     MFU by MaxDiffusion's FLOP formula (0.67 x latent side^2 x UNet parameters per image);
  5. on GPU, the UNet-only training step (noise-prediction MSE + AdamW, same UNet config, batch,
     latents and 96x1024 context) in JAX and in diffusers' PyTorch (bf16 autocast, SDPA,
     torch.compile, fused AdamW) on the same GPU in the same run, and their images/s ratio.
The knobs that were on (remat, compute / parameter dtypes, attention upcast, matmul precision,
XLA flags) are written with the figures. `--tiny` runs the same code on CPU with the smoke
config (tests/test_accelerator_benchmark.py), so the script cannot rot between accelerator runs.

Usage:
  bash benchmarks/accelerator.sh [--wheels DIR] [--batch_sizes 128,64,32,16,8] [--steps 10]
      [--kernels xla,cudnn] [--remat auto|on|off] [--torch auto|on|off] [--budget_s 330]
      [--out benchmarks/results/accelerator.json]
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Dense (no 2:4 sparsity) bf16 peak per chip, TFLOP/s: (device_kind regex, peak, source).
PEAK_BF16_TFLOPS = (
    (r"A100", 312.0, "NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity)"),
    (r"H100.*PCIe", 756.0, "NVIDIA H100 datasheet: H100 PCIe BF16 1513 TFLOPS with sparsity"),
    (r"H100", 989.0, "NVIDIA H100 datasheet: H100 SXM BF16 1979 TFLOPS with sparsity"),
    (r"H200", 989.0, "NVIDIA H200 datasheet: BF16 1979 TFLOPS with sparsity (Hopper, as H100)"),
    (r"B200", 2250.0, "NVIDIA HGX B200: FP16/BF16 4.5 PFLOPS per GPU with sparsity"),
    (r"TPU v4", 275.0, "cloud.google.com/tpu/docs/v4: peak compute per chip (bf16) 275 TFLOPs"),
    (r"TPU v5 ?lite|TPU v5e", 197.0,
     "cloud.google.com/tpu/docs/v5e: peak compute per chip (bf16) 197 TFLOPs"),
    (r"TPU v5p|TPU v5$", 459.0,
     "cloud.google.com/tpu/docs/v5p: peak compute per chip (bf16) 459 TFLOPs"),
    (r"TPU v6 ?lite|TPU v6e", 918.0,
     "cloud.google.com/tpu/docs/v6e: peak compute per chip (bf16) 918 TFLOPs"),
)

# import name -> pip requirement (what the benchmark imports through the project's modules).
REQUIREMENTS = {
    "flax": "flax", "optax": "optax", "orbax.checkpoint": "orbax-checkpoint",
    "einops": "einops", "ml_collections": "ml-collections", "clu": "clu", "grain": "grain",
    "etils": "etils[epath]", "safetensors": "safetensors", "absl": "absl-py",
}
TORCH_REQUIREMENTS = {"torch": "torch", "diffusers": "diffusers"}


def peak_tflops(device_kind: str) -> tuple[float | None, str]:
  """Dense bf16 peak of a chip from its `device_kind` (None, reason when unknown)."""
  for pattern, peak, source in PEAK_BF16_TFLOPS:
    if re.search(pattern, device_kind, re.IGNORECASE):
      return peak, source
  return None, f"no bf16 peak known for device kind {device_kind!r}"


def missing_modules(requirements: dict[str, str]) -> list[str]:
  missing = []
  for module, requirement in requirements.items():
    try:
      found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
      found = False
    if not found:
      missing.append(requirement)
  return missing


def install(requirements: list[str], wheels: str | None) -> list[str]:
  """pip-installs `requirements` (from `wheels` only when given); returns what was asked for."""
  if not requirements:
    return []
  cmd = [sys.executable, "-m", "pip", "install", "-q"]
  if wheels:
    if not os.path.isdir(wheels):
      raise FileNotFoundError(f"--wheels {wheels!r} is not a directory of wheels.")
    cmd += ["--no-index", "--find-links", wheels]
  print("Installing:", " ".join(requirements), flush=True)
  result = subprocess.run(cmd + requirements, capture_output=True, text=True)
  if result.returncode:
    raise RuntimeError(f"pip could not install {requirements} "
                       f"({'from ' + wheels if wheels else 'from the package index'}):\n"
                       f"{result.stderr[-3000:]}\nGive --wheels DIR with these wheels, or "
                       "install them first.")
  importlib.invalidate_caches()
  return requirements


def ensure_dependencies(args) -> list[str]:
  if importlib.util.find_spec("jax") is None:
    raise RuntimeError("JAX is not installed: install the accelerator build first, e.g. "
                       "`pip install -U 'jax[cuda12]'` (GPU) or `pip install -U 'jax[tpu]'`.")
  wanted = dict(REQUIREMENTS)
  if args.torch != "off":
    wanted.update(TORCH_REQUIREMENTS)
  missing = missing_modules(wanted)
  if args.no_install:
    if missing:
      print("Missing (not installed: --no_install):", missing, flush=True)
    return []
  return install(missing, args.wheels)


# ---------------------------------------------------------------------------------------------
# Benchmarks (imported after the dependencies are in place).


def build_config(tiny: bool, remat: bool, impl: str):
  from configs import movi_e, smoke  # pylint: disable=g-import-not-at-top
  config = smoke.get_config() if tiny else movi_e.get_config()
  config.training.compute_dtype = "bfloat16"
  config.model.unet.remat = remat
  config.model.unet.attention_impl = impl
  encoder = config.model.conditioning.encoder
  if "attention_impl" in encoder:
    encoder.attention_impl = impl if impl != "tpu_splash" else encoder.attention_impl
  return config


def supported_kernels(backend: str, device_kind: str) -> list[str]:
  kernels = ["xla", "dot_product"]
  if backend in ("gpu", "cuda") and "amd" not in device_kind.lower():
    kernels.append("cudnn")
  if backend == "tpu":
    kernels.append("tpu_splash")
  return kernels


def _is_oom(error: Exception) -> bool:
  text = f"{type(error).__name__}: {error}"
  return any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory",
                                 "OOM", "exceeds the memory"))


def _memory_limit(device) -> int | None:
  try:
    stats = device.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    return None
  return stats.get("bytes_limit")


def latent_side(config) -> int:
  """Latent height of the configured images: the VAE halves the size per level after the first."""
  factor = 2 ** (len(config.model.vae.block_out_channels) - 1)
  return config.data.resolution[0] // factor


def unet_param_count(config) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  import numpy as np
  from neural_assets.models.unet import UNet2DConditionModel  # pylint: disable=g-import-not-at-top
  unet = UNet2DConditionModel(**dict(config.model.unet))
  side = latent_side(config)
  shapes = jax.eval_shape(unet.init, jax.random.key(0), jnp.zeros((1, side, side, 4)),
                          jnp.zeros((1,), jnp.int32),
                          jnp.zeros((1, 4, config.model.unet.cross_attention_dim)))
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes)))


def _time_steps(run, steps: int) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(run())  # Warm-up (the first call after compile).
  start = time.perf_counter()
  out = None
  for _ in range(steps):
    out = run()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def bench_full_step(config, batch_size: int, steps: int, memory_limit: int | None) -> dict:
  """The full Neural Assets training step on one device at `batch_size`."""
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks.memory import compiled_flops, compiled_memory  # pylint: disable=g-import-not-at-top
  from benchmarks.train_step import random_batch
  from neural_assets.training import mesh as mesh_lib
  from neural_assets.training import sharding as sharding_lib
  from neural_assets.training import train_step as train_step_lib
  from neural_assets.training.state_setup import setup_state

  mesh = mesh_lib.create_mesh({"data": 1}, jax.devices()[:1])
  model, vae = train_step_lib.build_models(config)
  setup = setup_state(config, model, vae, mesh)
  step = train_step_lib.make_train_step(
      config, model, vae, setup.tx, setup.schedules, setup.state_shardings,
      sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh))
  batch = sharding_lib.shard_batch(random_batch(config, batch_size), mesh)
  start = time.perf_counter()
  compiled = step.lower(setup.abstract_state, batch).compile()
  compile_s = time.perf_counter() - start
  memory = compiled_memory(compiled)
  if memory_limit and memory.get("peak_estimate", 0) > memory_limit:
    raise MemoryError(f"RESOURCE_EXHAUSTED: compiled estimate {memory['peak_estimate']} bytes "
                      f"exceeds the memory limit {memory_limit}")
  holder = {"state": setup.init_fn(jax.random.key(0))}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    return metrics["loss"]

  seconds = _time_steps(run, steps)
  loss = float(run())
  del holder
  return dict(batch_size=batch_size, compile_seconds=compile_s, seconds_per_step=seconds,
              images_per_second=batch_size / seconds, flops_per_step=compiled_flops(compiled),
              memory_per_device=memory, final_loss=loss)


def bench_unet_jax(config, batch_size: int, steps: int) -> dict:
  """UNet-only step in JAX: x_t from random latents, MSE to the noise, AdamW (fp32 master)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  import optax
  from benchmarks.memory import compiled_flops  # pylint: disable=g-import-not-at-top
  from benchmarks.train_step import unet_train_step
  from neural_assets.diffusion.schedule import NoiseSchedule
  from neural_assets.models.unet import UNet2DConditionModel

  unet = UNet2DConditionModel(**dict(config.model.unet), dtype=jnp.bfloat16)
  side = latent_side(config)
  tokens = (config.model.conditioning.max_objects + 1) * 4
  schedule = NoiseSchedule.from_config(config.diffusion)
  x0 = jax.random.normal(jax.random.key(1), (batch_size, side, side, 4))
  ctx = jax.random.normal(jax.random.key(2), (batch_size, tokens,
                                              config.model.unet.cross_attention_dim))
  params = jax.jit(unet.init)(jax.random.key(0), x0, jnp.zeros((batch_size,), jnp.int32),
                              ctx)["params"]
  tx = optax.adamw(1e-4)
  opt_state = tx.init(params)

  jitted = jax.jit(unet_train_step(unet, schedule, tx, x0, ctx), donate_argnums=(0, 1))
  start = time.perf_counter()
  compiled = jitted.lower(params, opt_state, jax.random.key(0)).compile()
  compile_s = time.perf_counter() - start
  holder = {"p": params, "o": opt_state, "i": 0}

  def run():
    holder["i"] += 1
    holder["p"], holder["o"], loss = compiled(holder["p"], holder["o"],
                                              jax.random.key(holder["i"]))
    return loss

  seconds = _time_steps(run, steps)
  return dict(batch_size=batch_size, compile_seconds=compile_s, seconds_per_step=seconds,
              images_per_second=batch_size / seconds, flops_per_step=compiled_flops(compiled),
              latent_shape=[batch_size, side, side, 4], context_shape=list(ctx.shape))


def bench_unet_torch(config, batch_size: int, steps: int, use_compile: bool) -> dict:
  """The same UNet step in diffusers' PyTorch: bf16 autocast, SDPA, (torch.compile), AdamW."""
  import inspect  # pylint: disable=g-import-not-at-top
  import diffusers
  import numpy as np
  import torch
  from neural_assets.diffusion.schedule import NoiseSchedule

  device = "cuda" if torch.cuda.is_available() else "cpu"
  known = set(inspect.signature(diffusers.UNet2DConditionModel.__init__).parameters)
  fields = {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dict(config.model.unet).items() if k in known}
  torch.manual_seed(0)
  unet = diffusers.UNet2DConditionModel(**fields).to(device).train()
  attn = sorted({type(p).__name__ for p in unet.attn_processors.values()})
  optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, fused=device == "cuda")
  model = torch.compile(unet) if use_compile else unet
  schedule = NoiseSchedule.from_config(config.diffusion)
  acp = torch.tensor(np.asarray(schedule.alphas_cumprod), device=device)
  side = latent_side(config)
  tokens = (config.model.conditioning.max_objects + 1) * 4
  x0 = torch.randn(batch_size, 4, side, side, device=device)
  ctx = torch.randn(batch_size, tokens, config.model.unet.cross_attention_dim, device=device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def run():
    noise = torch.randn_like(x0)
    t = torch.randint(0, schedule.num_train_timesteps, (batch_size,), device=device)
    a = acp[t].view(batch_size, 1, 1, 1).float()
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
      out = model(x_t, t, ctx).sample
    loss = torch.nn.functional.mse_loss(out.float(), noise)
    loss.backward()
    optimizer.step()
    return loss

  start = time.perf_counter()
  run()
  run()  # torch.compile compiles on the first calls (forward and backward graphs).
  sync()
  warmup_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    loss = run()
  sync()
  seconds = (time.perf_counter() - start) / steps
  return dict(batch_size=batch_size, seconds_per_step=seconds,
              images_per_second=batch_size / seconds, warmup_seconds=warmup_s,
              final_loss=float(loss.detach()), device=device, torch_compile=use_compile,
              autocast="bfloat16", attention_processors=attn, torch_version=torch.__version__,
              diffusers_version=diffusers.__version__)


def knobs(config, remat: bool) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  return dict(
      remat_unet_blocks=bool(remat),
      compute_dtype=config.training.compute_dtype,
      param_and_optimizer_dtype="float32",
      upcast_attention=bool(config.model.unet.upcast_attention),
      jax_default_matmul_precision=str(jax.config.jax_default_matmul_precision),
      vae_sample_posterior=bool(config.training.vae_sample_posterior),
      xla_flags=os.environ.get("XLA_FLAGS", ""),
  )


def run(args, save=lambda results: None) -> dict:
  """The measurements; `save(results)` is called after each one (a killed run keeps them)."""
  import jax  # pylint: disable=g-import-not-at-top

  deadline = time.monotonic() + args.budget_s
  device = jax.devices()[0]
  backend = jax.default_backend()
  kind = getattr(device, "device_kind", str(device))
  peak, peak_source = peak_tflops(kind)
  memory_limit = _memory_limit(device)
  kernels = args.kernels.split(",") if args.kernels else supported_kernels(backend, kind)
  batch_sizes = sorted((int(b) for b in args.batch_sizes.split(",")), reverse=True)
  remat_modes = {"off": [False], "on": [True], "auto": [False, True]}[args.remat]
  base = build_config(args.tiny, False, "xla")
  unet_params = unet_param_count(base)
  side = latent_side(base)
  md_flops_per_image = 0.67 * side ** 2 * unet_params
  results = dict(
      device=dict(kind=kind, backend=backend, count=len(jax.devices()),
                  memory_limit_bytes=memory_limit, peak_bf16_tflops=peak,
                  peak_source=peak_source),
      model=dict(config="configs/smoke.py (--tiny)" if args.tiny else "configs/movi_e.py",
                 resolution=list(base.data.resolution),
                 tokens=(base.model.conditioning.max_objects + 1) * 4,
                 unet_parameters=unet_params,
                 maxdiffusion_flops_per_image=md_flops_per_image),
      machine=dict(platform=platform.platform(), jax=jax.__version__, python=sys.version.split()[0],
                   load_average=list(os.getloadavg())),
      installed=args.installed, steps=args.steps, batch_sizes=batch_sizes, kernels={})

  def mfu(flops_per_step, seconds):
    return None if not peak else flops_per_step / seconds / (peak * 1e12)

  best = None
  fits_below = None  # Batches above the last one that fitted are not retried for later kernels.
  for kernel in kernels:
    entry = dict(attempts=[])
    results["kernels"][kernel] = entry
    for remat in remat_modes:
      for batch in batch_sizes:
        if fits_below is not None and batch > fits_below:
          continue
        if time.monotonic() > deadline:
          entry["attempts"].append(dict(batch_size=batch, remat=remat,
                                        skipped="time budget (--budget_s) spent"))
          break
        config = build_config(args.tiny, remat, kernel)
        try:
          out = bench_full_step(config, batch, args.steps, memory_limit)
        except Exception as e:  # pylint: disable=broad-except
          reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
          entry["attempts"].append(dict(batch_size=batch, remat=remat, error=reason))
          print(f"[{kernel}] batch {batch} remat={remat}: {reason}", flush=True)
          save(results)
          if _is_oom(e):
            continue
          break  # Not a memory problem: this kernel does not run here.
        out.update(remat=remat, knobs=knobs(config, remat),
                   mfu_xla_flops=mfu(out["flops_per_step"], out["seconds_per_step"]),
                   mfu_maxdiffusion_formula=mfu(md_flops_per_image * batch,
                                                out["seconds_per_step"]))
        entry.update(result=out)
        save(results)
        fits_below = batch
        mfu_text = "n/a" if out["mfu_xla_flops"] is None else f"{out['mfu_xla_flops']:.1%}"
        print(f"[{kernel}] batch {batch} remat={remat}: {out['images_per_second']:.2f} images/s, "
              f"{out['seconds_per_step'] * 1e3:.1f} ms/step, "
              f"{out['flops_per_step'] / 1e12:.3f} TFLOP/step, MFU {mfu_text}", flush=True)
        if best is None or out["images_per_second"] > best[1]["images_per_second"]:
          best = (kernel, out)
        break
      if "result" in entry:
        break

  results["best"] = None if best is None else dict(kernel=best[0], **{
      k: best[1][k] for k in ("batch_size", "images_per_second", "seconds_per_step",
                              "mfu_xla_flops", "mfu_maxdiffusion_formula", "remat")})
  use_torch = args.torch == "on" or (args.torch == "auto" and backend == "gpu")
  if best is None:
    results["unet_comparison"] = "skipped: no JAX measurement succeeded"
  elif use_torch and time.monotonic() > deadline + args.torch_grace_s:
    results["unet_comparison"] = "skipped: time budget (--budget_s + --torch_grace_s) spent"
  elif use_torch:
    kernel, out = best
    config = build_config(args.tiny, out["remat"], kernel)
    batch = out["batch_size"]
    try:
      jax_unet = bench_unet_jax(config, batch, args.steps)
      jax_unet.update(kernel=kernel, remat=out["remat"],
                      mfu_xla_flops=mfu(jax_unet["flops_per_step"], jax_unet["seconds_per_step"]))
      results["unet_step_jax"] = jax_unet
      save(results)
      torch_unet = bench_unet_torch(config, batch, args.steps,
                                    use_compile=not args.no_torch_compile)
      results["unet_step_torch"] = torch_unet
      results["unet_jax_over_torch_images_per_second"] = (jax_unet["images_per_second"] /
                                                          torch_unet["images_per_second"])
      print(f"UNet step at batch {batch}: JAX {jax_unet['images_per_second']:.2f} images/s, "
            f"PyTorch {torch_unet['images_per_second']:.2f} images/s, ratio "
            f"{results['unet_jax_over_torch_images_per_second']:.2f}", flush=True)
    except Exception as e:  # pylint: disable=broad-except
      results["unet_comparison_error"] = f"{type(e).__name__}: {str(e)[:500]}"
      print("UNet comparison failed:", results["unet_comparison_error"], flush=True)
  elif not use_torch:
    results["unet_comparison"] = f"skipped (--torch {args.torch}, backend {backend})"
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true", help="Smoke-size model (CPU tests).")
  parser.add_argument("--batch_sizes", default="",
                      help="Per-chip batches to try, largest first (default 256..8; tiny: 2).")
  parser.add_argument("--steps", type=int, default=10, help="Timed steps per measurement.")
  parser.add_argument("--kernels", default="", help="Attention kernels (default: all supported).")
  parser.add_argument("--remat", choices=("auto", "on", "off"), default="auto",
                      help="auto: without remat first, with it only if no batch fits.")
  parser.add_argument("--torch", choices=("auto", "on", "off"), default="auto",
                      help="diffusers/PyTorch UNet step (auto: on GPU only).")
  parser.add_argument("--no_torch_compile", action="store_true")
  parser.add_argument("--budget_s", type=float, default=330.0,
                      help="Stop starting new JAX measurements after this many seconds.")
  parser.add_argument("--torch_grace_s", type=float, default=60.0)
  parser.add_argument("--wheels", default=None, help="Directory of wheels to install from.")
  parser.add_argument("--no_install", action="store_true")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/accelerator.json"))
  args = parser.parse_args(argv)
  if not args.batch_sizes:
    args.batch_sizes = "2" if args.tiny else "128,64,32,16,8"
  start = time.perf_counter()
  args.installed = ensure_dependencies(args)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

  def save(results):
    results["wall_seconds"] = time.perf_counter() - start
    with open(args.out + ".tmp", "w") as f:
      json.dump(results, f, indent=2)
    os.replace(args.out + ".tmp", args.out)

  results = run(args, save)
  results["complete"] = True
  save(results)
  print(f"Wrote {args.out} ({results['wall_seconds']:.0f} s)")
  return results


if __name__ == "__main__":
  main()
