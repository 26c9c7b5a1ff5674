r"""Edit effects against training steps: the edit-fidelity benchmark at several checkpoints of a run.

  python -m benchmarks.edit_curve --checkpoint WORKDIR [--steps 1000,4000,16000 | --every 4] \
      [--num_scenes 32] [--out benchmarks/results/edit_curve.json]

For each chosen step of the run's checkpoints (`--steps`, else every `--every`-th kept step and
the last), scores `neural_assets.demo.edit_benchmark.run` on the same held-out scenes (made
once; each step's weights go into the first step's bundle, so its renders compile once) and
keeps, per edit type, whether it takes effect and the paired differences (model - model,
unedited and model - source frame; region PSNR and localisation IoU, with their 95% bootstrap
intervals). Writes --out (JSON, rewritten after every step, so a killed run keeps its curve)
and the same name with .png: one panel per edit type, the differences against steps with their
intervals. Keep the checkpoints of a run with `--config.checkpoint.max_to_keep` (the demo's configs keep 2).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Optional, Sequence

from neural_assets.demo import edit_benchmark
from neural_assets.evaluation.edit_effects import BASELINES, EFFECT_METRICS
from neural_assets.range_checks import int_at_least
from neural_assets.training import checkpoint_files


def choose_steps(available: Sequence[int], every: int) -> list[int]:
  """Every `every`-th of the available steps (oldest first) and always the last one."""
  if not available:
    return []
  chosen = list(available[every - 1::every])
  if available[-1] not in chosen:
    chosen.append(available[-1])
  return chosen


def curve_point(report: dict[str, Any]) -> dict[str, Any]:
  """The part of an edit-fidelity report the curve keeps: {type: {takes_effect, baseline:
  {metric: {mean, low, high}}}}."""
  point = {}
  for name, took in report["takes_effect"].items():
    point[name] = {"takes_effect": bool(took)}
    for base in BASELINES:
      point[name][base] = {m: {k: report["differences"][name][base][m][k]
                               for k in ("mean", "low", "high")} for m in EFFECT_METRICS}
  return point


def plot(result: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  points = result["points"]
  if not points:
    return
  names = list(points[0]["effects"])
  steps = [p["step"] for p in points]
  fig, axes = plt.subplots(len(EFFECT_METRICS), len(names),
                           figsize=(2.2 * len(names), 2.4 * len(EFFECT_METRICS)), squeeze=False)
  for col, name in enumerate(names):
    for row, metric in enumerate(EFFECT_METRICS):
      ax = axes[row][col]
      for base in BASELINES:
        cells = [p["effects"][name][base][metric] for p in points]
        value = lambda c, k: float("nan") if c[k] is None else c[k]  # No interval: n < 2.
        line, = ax.plot(steps, [value(c, "mean") for c in cells], marker="o", ms=3, label=base)
        ax.fill_between(steps, [value(c, "low") for c in cells],
                        [value(c, "high") for c in cells], color=line.get_color(), alpha=0.2)
      ax.axhline(0.0, color="k", lw=0.6)
      took = [p["step"] for p in points if p["effects"][name]["takes_effect"]]
      if row == 0:
        ax.set_title(name + (f"\n(takes effect at {took[0]})" if took else "\n(never)"),
                     fontsize=8)
      if col == 0:
        ax.set_ylabel(f"model - baseline\n{metric}", fontsize=8)
      ax.tick_params(labelsize=6)
      if row == len(EFFECT_METRICS) - 1:
        ax.set_xlabel("step", fontsize=7)
  axes[0][0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="Demo workdir, training workdir or checkpoints/ dir.")
  parser.add_argument("--steps", default=None, help="Comma-separated steps (default: --every).")
  parser.add_argument("--every", type=int_at_least(1), default=4,
                      help="Every N-th kept checkpoint, and the last.")
  parser.add_argument("--num_scenes", type=int_at_least(2),
                      default=edit_benchmark.DEFAULT_NUM_SCENES)
  parser.add_argument("--seed", type=int, default=edit_benchmark.DEFAULT_SEED)
  parser.add_argument("--out", default=os.path.join("benchmarks", "results", "edit_curve.json"))
  args = parser.parse_args(argv)

  step_dir, _ = checkpoint_files.find_checkpoint(args.checkpoint)
  available = sorted(int(p.name) for p in checkpoint_files.step_dirs(os.path.dirname(step_dir)))
  if args.steps:
    steps = [int(s) for s in args.steps.split(",")]
    missing = sorted(set(steps) - set(available))
    if missing:
      raise SystemExit(f"No checkpoint for step(s) {missing}; kept: {available}.")
  else:
    steps = choose_steps(available, args.every)
  result = {"checkpoint": os.path.abspath(args.checkpoint), "num_scenes": args.num_scenes,
            "held_out_seed": args.seed, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "points": []}
  bundle = lpips_fn = held_out = None
  for step in steps:
    start = time.time()
    loaded = edit_benchmark.load_bundle(args.checkpoint, step)
    if bundle is None:
      bundle = loaded
      lpips_fn = edit_benchmark.experiment_lpips(bundle)
      held_out = edit_benchmark.heldout_pool(bundle.config, bundle.max_objects, args.num_scenes,
                                             args.seed)
    else:
      bundle = bundle.with_weights(loaded)
    report = edit_benchmark.run(bundle, num_scenes=args.num_scenes, seed=args.seed,
                                lpips_fn=lpips_fn, held_out=held_out, label=f"step {step}",
                                log=lambda *_: None)
    result["points"].append({"step": step, "effects": curve_point(report),
                             "seconds": round(time.time() - start, 1),
                             "load_1min": round(os.getloadavg()[0], 2)})
    took = [n for n, t in report["takes_effect"].items() if t]
    print(f"step {step}: {len(took)} of {len(report['takes_effect'])} take effect "
          f"({', '.join(took) or 'none'}); {time.time() - start:.0f} s", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)
    plot(result, os.path.splitext(args.out)[0] + ".png")
  return result


if __name__ == "__main__":
  main()
  sys.exit(0)
