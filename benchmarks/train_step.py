"""Training-step benchmark: speed, compiled cost and memory of the jitted step; FSDP memory plan.

In one run:
  1. the full Neural Assets step of `--config` on the mesh of `--mesh` (tokenizer + UNet +
     frozen-VAE encode + AdamW update): steps/s and images/s (wall clock, after compilation),
     FLOPs per step from XLA's `cost_analysis()` and per-device memory from `memory_analysis()`;
  2. a UNet-only training step (same UNet config, batch, latent size and context length;
     noise-prediction MSE + AdamW) in JAX and in diffusers' PyTorch `UNet2DConditionModel` on the
     same CPU, and their time ratio (PyTorch / JAX: > 1 means JAX is faster);
  3. for the paper-size model (SD-2.1 base at 256x256 + DINO ViT-B/8, `configs/movi_e.py`), the
     per-device bytes of parameters + optimizer state (+ the frozen VAE) when FSDP splits them over
     1, 8, 64 and 256 devices, from shapes and shardings only (`jax.eval_shape` on an abstract mesh;
     no weights are materialised).
Batches are random arrays of the configured shapes (the step's cost does not depend on values).

Usage:
  python -m benchmarks.train_step [--config configs/smoke.py] [--mesh data=-1,fsdp=1]
      [--batch_size 8] [--steps 10] [--no_torch] [--no_plan]
      [--out benchmarks/results/train_step.json]
Multi-device CPU runs: XLA_FLAGS=--xla_force_host_platform_device_count=8 ... --mesh data=2,fsdp=4
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from neural_assets.diffusion.schedule import NoiseSchedule
from neural_assets import config_files
from neural_assets.models.unet import UNet2DConditionModel
from neural_assets.training import mesh as mesh_lib
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import train_step as train_step_lib
from neural_assets.training.state_setup import setup_state
from neural_assets.training.train_step import latent_shape


def parse_mesh(text: str) -> dict[str, int]:
  return {k: int(v) for k, v in (item.split("=") for item in text.split(",") if item)}


def random_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  height, width = config.data.resolution
  n = config.model.conditioning.max_objects
  lo = rng.uniform(0.0, 0.5, (batch_size, n, 2))
  boxes = np.concatenate([lo, lo + rng.uniform(0.1, 0.5, (batch_size, n, 2))], -1)
  corners = np.concatenate([rng.uniform(0, 1, (batch_size, n, 8, 2)),
                            rng.uniform(1, 5, (batch_size, n, 8, 1))], -1)
  return dict(
      source_image=rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8),
      target_image=rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8),
      source_boxes=boxes.astype(np.float32), target_boxes=boxes.astype(np.float32),
      target_corners=corners.astype(np.float32),
      slot_mask=np.ones((batch_size, n), bool),
      relative_pose=np.broadcast_to(np.eye(4, dtype=np.float32), (batch_size, 4, 4)).copy(),
  )


def _cost_and_memory(compiled) -> dict[str, float]:
  out = {}
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  if cost:
    out["flops_per_step"] = float(cost.get("flops", float("nan")))
    out["bytes_accessed_per_step"] = float(cost.get("bytes accessed", float("nan")))
  mem = compiled.memory_analysis()
  if mem is not None:
    args = mem.argument_size_in_bytes
    outs = mem.output_size_in_bytes
    temp = mem.temp_size_in_bytes
    alias = mem.alias_size_in_bytes
    out["memory_per_device_bytes"] = dict(arguments=args, outputs=outs, temporaries=temp,
                                          aliased=alias, peak_estimate=args + outs + temp - alias)
  return out


def _time(fn, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    fn()
  return time.perf_counter() - start


def bench_full_step(config, mesh, batch_size: int, steps: int) -> dict:
  model, vae = train_step_lib.build_models(config)
  setup = setup_state(config, model, vae, mesh)
  step = train_step_lib.make_train_step(
      config, model, vae, setup.tx, setup.schedules, setup.state_shardings,
      sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh))
  state = setup.init_fn(jax.random.key(0))
  batch = sharding_lib.shard_batch(random_batch(config, batch_size), mesh)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    return metrics

  jax.block_until_ready(run())  # Warm-up.
  start = time.perf_counter()
  for _ in range(steps):
    metrics = run()
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  result = dict(compile_seconds=compile_s, seconds_per_step=seconds / steps,
                steps_per_second=steps / seconds, images_per_second=steps * batch_size / seconds,
                final_loss=float(metrics["loss"]))
  result.update(_cost_and_memory(compiled))
  return result


def _bare_unet_fields(config) -> dict:
  """The config's UNet as SD has it: the latents in, no extra input channels
  (`model.latent_coordinates` adds them in front of the UNet, not inside it)."""
  return dict(config.model.unet, in_channels=config.model.unet.out_channels)


def unet_train_step(unet, schedule: NoiseSchedule, tx, x0: jax.Array, ctx: jax.Array):
  """(params, opt_state, key) -> (params, opt_state, loss): one epsilon-loss step of the bare
  UNet on fixed latents x0 [B, h, w, 4] and context ctx [B, T, D] (the loss in float32)."""
  batch_size = x0.shape[0]

  def step(params, opt_state, key):
    noise_key, t_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, x0.shape)
    t = jax.random.randint(t_key, (batch_size,), 0, schedule.num_train_timesteps)

    def loss_fn(p):
      out = unet.apply({"params": p}, schedule.add_noise(x0, noise, t), t, ctx)
      return jnp.mean(jnp.square(out.astype(jnp.float32) - noise))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def bench_unet_jax(config, batch_size: int, steps: int) -> dict:
  unet = UNet2DConditionModel(**_bare_unet_fields(config))
  _, vae = train_step_lib.build_models(config)
  shape = latent_shape(config, vae, batch_size)
  context = ((config.model.conditioning.max_objects + 1) * 4, config.model.unet.cross_attention_dim)
  schedule = NoiseSchedule.from_config(config.diffusion)
  rng = np.random.default_rng(0)
  x0 = jnp.asarray(rng.normal(size=shape), jnp.float32)
  ctx = jnp.asarray(rng.normal(size=(batch_size, *context)), jnp.float32)
  params = unet.init(jax.random.key(0), x0, jnp.zeros((batch_size,), jnp.int32), ctx)["params"]
  tx = optax.adamw(1e-4)
  opt_state = tx.init(params)

  step = jax.jit(unet_train_step(unet, schedule, tx, x0, ctx))

  holder = {"p": params, "o": opt_state, "i": 0}

  def run():
    holder["i"] += 1
    holder["p"], holder["o"], loss = step(holder["p"], holder["o"], jax.random.key(holder["i"]))
    return loss

  jax.block_until_ready(run())
  start = time.perf_counter()
  for _ in range(steps):
    loss = run()
  jax.block_until_ready(loss)
  seconds = time.perf_counter() - start
  return dict(seconds_per_step=seconds / steps, steps_per_second=steps / seconds,
              latent_shape=list(shape), context_shape=[batch_size, *context])


def bench_unet_torch(config, batch_size: int, steps: int, latent: list[int]) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import diffusers  # pylint: disable=g-import-not-at-top
  known = set(inspect.signature(diffusers.UNet2DConditionModel.__init__).parameters)
  fields = {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in _bare_unet_fields(config).items() if k in known}
  torch.manual_seed(0)
  unet = diffusers.UNet2DConditionModel(**fields).float().train()
  optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
  schedule = NoiseSchedule.from_config(config.diffusion)
  acp = torch.tensor(np.asarray(schedule.alphas_cumprod))
  b, h, w, c = latent
  x0 = torch.randn(b, c, h, w)
  ctx = torch.randn(b, (config.model.conditioning.max_objects + 1) * 4,
                    config.model.unet.cross_attention_dim)

  def run():
    noise = torch.randn_like(x0)
    t = torch.randint(0, schedule.num_train_timesteps, (b,))
    a = acp[t].view(b, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(unet(x_t, t, ctx).sample, noise)
    loss.backward()
    optimizer.step()
    return loss.detach().item()

  run()
  seconds = _time(run, steps)
  return dict(seconds_per_step=seconds / steps, steps_per_second=steps / seconds,
              torch_threads=torch.get_num_threads(), torch_version=torch.__version__,
              diffusers_version=diffusers.__version__)


def fsdp_memory_plan(config_path: str, device_counts=(1, 8, 64, 256)) -> dict:
  """Per-device bytes of params / optimizer state / frozen VAE under FSDP over N devices.

  Shapes only; benchmarks/memory.py adds the compiled step's memory and the ratio to the ideal.
  """
  config = config_files.load(config_path)
  model, vae = train_step_lib.build_models(config)
  plan = {}
  for n in device_counts:
    mesh = mesh_lib.abstract_mesh({"data": 1, "fsdp": n}, n)  # fsdp factored as in training.
    setup = setup_state(config, model, vae, mesh)
    state, shardings = setup.abstract_state, setup.state_shardings
    parts = {name: sharding_lib.per_device_bytes(getattr(state, name), getattr(shardings, name))
             for name in ("params", "opt_state", "frozen_params")}
    parts["total"] = sum(parts.values())
    plan[f"fsdp_{n}"] = parts
  count = lambda tree: int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
  plan["num_params"] = dict(trainable=count(state.params), frozen=count(state.frozen_params))
  plan["config"] = config_path
  plan["min_size_to_shard"] = int(config.sharding.min_size_to_shard)
  return plan


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/smoke.py")
  parser.add_argument("--mesh", default="data=-1,fsdp=1")
  parser.add_argument("--batch_size", type=int, default=0, help="0: the config's batch.")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--no_plan", action="store_true")
  parser.add_argument("--plan_config", default="configs/movi_e.py")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/train_step.json"))
  args = parser.parse_args()

  config = config_files.load(args.config)
  batch_size = args.batch_size or config.data.global_batch_size
  mesh = mesh_lib.create_mesh(parse_mesh(args.mesh))
  results = dict(
      config=args.config, mesh={k: int(v) for k, v in mesh.shape.items()},
      batch_size=batch_size, resolution=list(config.data.resolution), steps=args.steps,
      compute_dtype=config.training.compute_dtype,
      machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                   jax=jax.__version__, backend=jax.default_backend(),
                   devices=[str(d) for d in jax.devices()][:4] + (
                       ["..."] if len(jax.devices()) > 4 else [])))
  results["full_step_jax"] = bench_full_step(config, mesh, batch_size, args.steps)
  print("full step (JAX):", json.dumps(results["full_step_jax"]), flush=True)
  unet_jax = bench_unet_jax(config, batch_size, args.steps)
  results["unet_step_jax"] = unet_jax
  print("UNet step (JAX):", json.dumps(unet_jax), flush=True)
  if not args.no_torch:
    unet_torch = bench_unet_torch(config, batch_size, args.steps, unet_jax["latent_shape"])
    results["unet_step_torch"] = unet_torch
    results["torch_over_jax_time_ratio"] = (unet_torch["seconds_per_step"] /
                                            unet_jax["seconds_per_step"])
    print("UNet step (PyTorch):", json.dumps(unet_torch), flush=True)
    print(f"PyTorch / JAX seconds per UNet step: {results['torch_over_jax_time_ratio']:.2f}")
  if not args.no_plan:
    results["fsdp_memory_plan"] = fsdp_memory_plan(args.plan_config)
    print("FSDP memory plan:", json.dumps(results["fsdp_memory_plan"]), flush=True)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)
  print(f"Wrote {args.out}")


if __name__ == "__main__":
  main()
