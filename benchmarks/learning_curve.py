"""Learning curve of the demo's toy model: does it beat copying the source frame, and when?

Trains `--config` (default configs/synthetic.py, the demo's) for `--minutes` of wall-clock on the
demo's synthetic data (rendered and its VAE warmed up first, as `python -m neural_assets.demo`
does, into --workdir), and every `--eval_every_steps` steps measures on the held-out pairs
(frame gap >= 1):
  - the model (DDIM + guidance, EMA weights if configured) vs the copy-source-frame baseline:
    PSNR, SSIM and LPIPS (pretrained AlexNet, `config.evaluation.lpips`) at image and object
    level (the Evaluator);
  - the token-swap test: denoising MSE with the true tokens vs another scene's tokens (and vs
    the null context), per timestep bucket (`neural_assets.demo.evaluation.conditioning_errors`).
Training time excludes evaluation time. Writes --out (JSON; rewritten after every point, so a
killed run keeps its curve) and the same name with .png (the plot).

Usage:
  python -m benchmarks.learning_curve [--minutes 10] [--eval_every_steps 300] \
      [--workdir /tmp/na_curve] [--config configs/synthetic.py] [--set optimizer.lr=1e-3 ...] \
      [--out benchmarks/results/learning_curve.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax
import numpy as np

from neural_assets import config_files


def _load() -> dict[str, float]:
  load1, load5, _ = os.getloadavg()
  return {"load1": round(load1, 2), "load5": round(load5, 2)}


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  points = result["points"]
  if not points:
    return
  steps = [p["step"] for p in points]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for level, style in (("image", "-"), ("object", "--")):
    axes[0].plot(steps, [p["model"][f"{level}/psnr"] for p in points], "o" + style,
                 color="C0", label=f"model, {level}")
    axes[0].axhline(result["baseline"][f"{level}/psnr"], color="C1", ls=style,
                    label=f"copy source, {level}")
    axes[0].axhline(result["ceiling"][f"{level}/psnr"], color="C2", ls=style, lw=0.8,
                    label=f"VAE ceiling, {level}")
    axes[1].plot(steps, [p["model"][f"{level}/ssim"] for p in points], "o" + style,
                 color="C0", label=f"model, {level}")
    axes[1].axhline(result["baseline"][f"{level}/ssim"], color="C1", ls=style,
                    label=f"copy source, {level}")
  axes[0].set_title("PSNR (dB), held-out pairs")
  axes[1].set_title("SSIM")
  buckets = points[0]["conditioning"]["buckets"]
  for i, (t0, t1) in enumerate(buckets):
    axes[2].plot(steps, [p["conditioning"]["swap_ratio"][i] for p in points], "o-",
                 label=f"t in [{t0}, {t1})")
  axes[2].plot(steps, [p["conditioning"]["mid_swap_ratio"] for p in points], "k-", lw=2,
               label="mid timesteps")
  axes[2].axhline(0.8, color="r", ls=":", label="target (20% below)")
  axes[2].set_title("denoising error: true / another scene's tokens")
  for ax in axes:
    ax.set_xlabel("training step")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
  overrides = f" ({', '.join(result['overrides'])})" if result["overrides"] else ""
  fig.suptitle(f"{result['config']}{overrides}: {result['minutes']} min of training, "
               f"{result['machine']}, load ~{result['load_at_start']['load1']}")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "synthetic.py"))
  parser.add_argument("--set", nargs="*", default=[], help="config overrides a.b=value")
  parser.add_argument("--minutes", type=float, default=10.0, help="training time (no eval)")
  parser.add_argument("--vae_minutes", type=float, default=None,
                      help="VAE warm-up (default: config.demo.vae_minutes or 2)")
  parser.add_argument("--eval_every_steps", type=int, default=300)
  parser.add_argument("--workdir", default="/tmp/na_learning_curve")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                    "learning_curve.json"))
  args = parser.parse_args()

  from clu import metric_writers
  from data_pipelines import pipeline
  from neural_assets.demo import data as demo_data
  from neural_assets.demo import evaluation as demo_eval
  from neural_assets.demo import host_devices
  from neural_assets.demo import vae_warmup
  from neural_assets.diffusion.ddim import DDIMSampler
  from neural_assets.training import mesh as mesh_lib
  from neural_assets.training import sharding as sharding_lib
  from neural_assets.training import train_step as train_step_lib
  from neural_assets.training import trainer
  from neural_assets.training.eval_sampling import evaluate, make_evaluator, make_sample_fn
  from neural_assets.training.init_checkpoint import load_pretrained
  from neural_assets.training.state_setup import setup_state

  t_start = time.time()
  config = config_files.load(args.config, args.set)
  host_devices.prepare_process(config)  # May restart this process; before JAX starts.
  workdir = os.path.abspath(args.workdir)
  config.data.data_dir = os.path.join(workdir, "data")
  spec = demo_data.data_spec(config)
  data_seconds = demo_data.ensure_data(config.data.data_dir, spec)
  vae_minutes = args.vae_minutes
  if vae_minutes is None:
    vae_minutes = float(config.get("demo", {}).get("vae_minutes", 2.0))
  vae_info = vae_warmup.ensure_vae(config, os.path.join(workdir, "vae"), 60.0 * vae_minutes)
  if vae_info is not None:
    config.model.vae.scaling_factor = float(vae_info["scaling_factor"])
    config.training.init_checkpoint = os.path.join(workdir, "vae", "checkpoint")

  mesh = mesh_lib.create_mesh(config.mesh)
  model, vae = train_step_lib.build_models(config)
  setup = setup_state(config, model, vae, mesh)
  state = setup.init_fn(jax.random.key(config.training.seed))
  if config.training.init_checkpoint:
    state = load_pretrained(state, config.training.init_checkpoint, setup,
                                    config.optimizer.ema_decay > 0)
  step_fn = train_step_lib.make_train_step(
      config, model, vae, setup.tx, setup.schedules, setup.state_shardings,
      sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh))
  train_iter = pipeline.make_train_iterator(config)
  cache_start = time.time()
  cache = (trainer.build_latent_cache(config, vae, state) if config.training.cache_latents
           else None)
  cache_seconds = time.time() - cache_start  # Counted as training time (the step's share).

  eval_config = copy.deepcopy(config)
  eval_batches = []
  for index, batch in enumerate(pipeline.make_eval_iterator(eval_config)):
    if 0 <= eval_config.eval.num_batches <= index:
      break
    eval_batches.append(batch)
  sampler = DDIMSampler.from_config(config.diffusion, config.sampler)
  sample_fn = make_sample_fn(config, model, vae, sampler)
  evaluator = make_evaluator(config)
  quiet = metric_writers.MultiWriter([])
  strip = lambda m: {k[len("eval/"):]: float(v) for k, v in m.items()}  # noqa: E731
  baseline = strip(evaluate(eval_config, model, vae, state, mesh, quiet,
                                    demo_eval.copy_source_sample_fn, evaluator))
  ceiling = strip(evaluate(eval_config, model, vae, state, mesh, quiet,
                                   demo_eval.make_vae_reconstruction_fn(vae), evaluator))
  error_fn = demo_eval.make_conditioning_error_fn(config, model, vae)

  config_name = os.path.relpath(args.config, ROOT)
  result = dict(config=config_name, overrides=args.set, minutes=args.minutes,
                machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
                data=spec, data_seconds=round(data_seconds, 1), vae=vae_info,
                baseline=baseline, ceiling=ceiling, load_at_start=_load(), points=[])
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

  def evaluate(step, train_seconds, loss):
    t0 = time.time()
    model_metrics = strip(evaluate(eval_config, model, vae, state, mesh, quiet,
                                           sample_fn, evaluator))
    params = (state.ema_params if (config.eval.use_ema and state.ema_params is not None)
              else state.params)
    cond = demo_eval.conditioning_errors(config, model, vae, params, state.frozen_params["vae"],
                                         eval_batches, error_fn)
    point = dict(step=step, train_seconds=round(train_seconds, 1), train_loss=loss,
                 model=model_metrics, conditioning=cond, eval_seconds=round(time.time() - t0, 1),
                 load=_load())
    result["points"].append(point)
    print(f"step {step:5d} train {train_seconds:6.0f}s loss {loss:.4f} | image PSNR "
          f"{model_metrics['image/psnr']:.2f} (copy {baseline['image/psnr']:.2f}, ceiling "
          f"{ceiling['image/psnr']:.2f}) | object PSNR {model_metrics['object/psnr']:.2f} (copy "
          f"{baseline['object/psnr']:.2f}) | SSIM {model_metrics['image/ssim']:.3f} (copy "
          f"{baseline['image/ssim']:.3f}) | swap ratio "
          f"{' '.join(f'{r:.2f}' for r in cond['swap_ratio'])} mid {cond['mid_swap_ratio']:.3f} "
          f"| null {' '.join(f'{r:.2f}' for r in cond['null_ratio'])} | {_load()}", flush=True)
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)
    plot(result, os.path.splitext(args.out)[0] + ".png")

  budget = 60.0 * args.minutes
  train_seconds, step, losses = cache_seconds, 0, []
  segment_start = time.time()
  while train_seconds + time.time() - segment_start < budget:
    state, metrics = step_fn(state, trainer.next_global_batch(train_iter, cache, mesh))
    step += 1
    losses.append(metrics["loss"])
    if step == 1:
      jax.block_until_ready(state.step)
      result["first_step_seconds (compile)"] = round(time.time() - segment_start, 1)
    if step % args.eval_every_steps == 0:
      jax.block_until_ready(state.step)
      train_seconds += time.time() - segment_start
      evaluate(step, train_seconds, float(np.mean(jax.device_get(losses))))
      losses = []
      segment_start = time.time()
  jax.block_until_ready(state.step)
  train_seconds += time.time() - segment_start
  if step % args.eval_every_steps:
    evaluate(step, train_seconds, float(np.mean(jax.device_get(losses))))
  result["steps"] = step
  result["steps_per_second"] = round(step / max(train_seconds, 1e-9), 3)
  result["total_seconds"] = round(time.time() - t_start, 1)
  result["load_at_end"] = _load()
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  plot(result, os.path.splitext(args.out)[0] + ".png")
  print(json.dumps({k: result[k] for k in ("steps", "steps_per_second", "total_seconds")}))


if __name__ == "__main__":
  main()
