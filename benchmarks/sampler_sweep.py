r"""Sampler settings against held-out scores: which DDIM settings a trained demo checkpoint
should sample with, chosen on validation videos that neither training nor the reported
evaluation uses.

  python -m benchmarks.sampler_sweep --checkpoint WORKDIR [--guidance 1.0,1.5,2.5] \
      [--eta 0,1] [--steps 20] [--num_videos 32] [--seed 2] \
      [--out benchmarks/results/sampler_sweep.json]

Renders `--num_videos` videos of the run's own world (`WORKDIR/data/spec.json`, the demo's data
spec) with generator seed `--seed` (the demo trains on seed 0, reports on 1 and scores edits on
1000) into `--work_dir`, then scores the checkpoint's EMA weights on their eval pairs (the
pipeline's fixed pairs, `config.data`) for every combination of guidance scale, DDIM eta and
step count, with the run's Evaluator (image and object PSNR / SSIM / LPIPS), beside the
copy-source-frame baseline on the same pairs. Writes --out (JSON; rewritten after every
setting) and prints a table; a setting "beats copy-source" when its image and object PSNR are
higher and its image and object LPIPS lower (means over the pairs).
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import sys
import time
from typing import Any, Optional, Sequence

import jax

from neural_assets import inference
from neural_assets.demo import data as demo_data
from neural_assets.demo.evaluation import copy_source_sample_fn
from neural_assets.diffusion.ddim import DDIMSampler
from neural_assets.training import eval_sampling
from neural_assets.training import mesh as mesh_lib

# (metric, better): what "beats copy-source" compares, where the Evaluator reports it.
VERDICT_METRICS = (("image/psnr", "higher"), ("object/psnr", "higher"),
                   ("image/lpips", "lower"), ("object/lpips", "lower"))


def floats(text: str) -> list[float]:
  return [float(v) for v in text.split(",") if v.strip()]


def validation_config(bundle: inference.ModelBundle, work_dir: str, num_videos: int, seed: int,
                      spec_path: Optional[str] = None) -> Any:
  """The bundle's config reading its eval split from `num_videos` fresh videos of seed `seed`
  (rendered into work_dir/data once per spec and seed) of the world in `spec_path` (default:
  `<config.data.data_dir>/spec.json`)."""
  config = copy.deepcopy(bundle.config)
  spec_path = spec_path or os.path.join(str(config.data.data_dir), "spec.json")
  if not os.path.exists(spec_path):
    raise FileNotFoundError(f"No data spec at {spec_path}: pass --spec (a demo workdir's "
                            "data/spec.json).")
  with open(spec_path) as f:
    spec = json.load(f)
  if seed in (int(spec["train_seed"]), int(spec["eval_seed"])):
    raise ValueError(f"--seed {seed} is the run's train or eval seed ({spec['train_seed']}, "
                     f"{spec['eval_seed']}): validation videos must be new ones.")
  spec = {**spec, "num_eval_videos": int(num_videos), "eval_seed": int(seed)}
  data_dir = os.path.join(work_dir, "data")
  marker = os.path.join(data_dir, "spec.json")
  made = None
  if os.path.exists(marker):
    with open(marker) as f:
      made = json.load(f)
  if made != spec:
    os.makedirs(data_dir, exist_ok=True)
    for name in os.listdir(data_dir):
      os.remove(os.path.join(data_dir, name))
    demo_data.render_split(data_dir, spec, "eval", int(num_videos), int(seed))
    with open(marker, "w") as f:
      json.dump(spec, f, indent=2)
  config.data.data_dir = data_dir
  config.eval.num_batches = -1  # Every validation pair.
  return config


def score(config: Any, bundle: inference.ModelBundle, sample_fn: Any) -> dict[str, float]:
  """The Evaluator's means of `sample_fn`'s images over every eval pair of `config`
  (`eval_sampling.score_eval_split` on `config.mesh`, the bundle's weights replicated)."""
  mesh = mesh_lib.create_mesh(config.mesh)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  params, vae_params = jax.device_put((bundle.params, bundle.vae_params), replicated)
  evaluator = eval_sampling.make_evaluator(config)
  eval_sampling.score_eval_split(config, params, vae_params, mesh, sample_fn, evaluator)
  return {k: float(v) for k, v in evaluator.result().items()}


def beats(row: dict[str, float], baseline: dict[str, float]) -> bool:
  """Better than the baseline on every VERDICT_METRICS entry the Evaluator reported."""
  present = [(m, b) for m, b in VERDICT_METRICS if m in row and m in baseline]
  return bool(present) and all(
      (row[m] > baseline[m]) if b == "higher" else (row[m] < baseline[m]) for m, b in present)


def sweep(bundle: inference.ModelBundle, config: Any, guidance: Sequence[float],
          etas: Sequence[float], steps: Sequence[int], out: Optional[str] = None,
          log=print) -> dict[str, Any]:
  """Scores every (guidance, eta, steps) setting and the copy-source baseline; see the module
  docstring. Returns {'copy_source', 'settings': [{guidance_scale, eta, num_inference_steps,
  metrics, seconds, beats_copy_source}], ...}."""
  result = {"checkpoint_step": bundle.step, "data_dir": str(config.data.data_dir),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "copy_source": score(config, bundle, copy_source_sample_fn), "settings": []}
  for g, eta, n in itertools.product(guidance, etas, steps):
    start = time.time()
    setting = copy.deepcopy(config)
    setting.sampler.update(dict(guidance_scale=float(g), eta=float(eta),
                                num_inference_steps=int(n)))
    sampler = DDIMSampler.from_config(setting.diffusion, setting.sampler)
    sample_fn = eval_sampling.make_sample_fn(setting, bundle.model, bundle.vae, sampler)
    metrics = score(setting, bundle, sample_fn)
    row = dict(guidance_scale=float(g), eta=float(eta), num_inference_steps=int(n),
               metrics=metrics, seconds=round(time.time() - start, 1),
               beats_copy_source=beats(metrics, result["copy_source"]))
    result["settings"].append(row)
    log(format_row(row))
    if out:
      os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
      with open(out, "w") as f:
        json.dump(result, f, indent=2)
  return result


def format_row(row: dict[str, Any]) -> str:
  m = row["metrics"]
  cells = " ".join(f"{k}={m[k]:.4f}" for k, _ in VERDICT_METRICS if k in m)
  return (f"guidance {row['guidance_scale']:.2f} eta {row['eta']:.2f} steps "
          f"{row['num_inference_steps']}: {cells} beats copy-source: {row['beats_copy_source']} "
          f"({row['seconds']:.0f} s)")


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True, help="Demo workdir or training workdir.")
  parser.add_argument("--guidance", type=floats, default=[1.0, 1.5, 2.5])
  parser.add_argument("--eta", type=floats, default=[0.0, 1.0])
  parser.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[20])
  parser.add_argument("--num_videos", type=int, default=32)
  parser.add_argument("--seed", type=int, default=2)
  parser.add_argument("--spec", default=None, help="Data spec (default: the run's data/spec.json).")
  parser.add_argument("--work_dir", default=None,
                      help="Where the validation videos go (default: CHECKPOINT/sampler_sweep).")
  parser.add_argument("--out", default=os.path.join("benchmarks", "results", "sampler_sweep.json"))
  args = parser.parse_args(argv)
  bundle = inference.load_model_for_inference(args.checkpoint)
  work_dir = args.work_dir or os.path.join(args.checkpoint, "sampler_sweep")
  config = validation_config(bundle, work_dir, args.num_videos, args.seed, args.spec)
  result = sweep(bundle, config, args.guidance, args.eta, args.steps, args.out)
  base = result["copy_source"]
  print("copy-source: " + " ".join(f"{k}={base[k]:.4f}" for k, _ in VERDICT_METRICS if k in base))
  return result


if __name__ == "__main__":
  main()
  sys.exit(0)
