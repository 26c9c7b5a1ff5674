r"""The trajectory-fidelity benchmark: edit trajectories of held-out synthetic scenes, frame by
frame against the generator's ground truth (the scores: `neural_assets/evaluation/
trajectory_fidelity.py`).

  python -m benchmarks.trajectory_fidelity --checkpoint WORKDIR \
      [--num_scenes 4 --num_frames 8 --seed 1000 --num_steps N --guidance G] \
      [--lpips_weights pretrained|none|FILES] [--no_per_frame_noise] [--out_dir DIR]

Held-out scenes are videos of the generator's stream `--seed` (`data_pipelines/
synthetic_edits.py`), never used in training. Writes `trajectory_fidelity.json` (means,
per-scene values, specs, settings), `table.md` and, for the first scene, `<type>.gif` (ground
truth | model | model, per-frame noise) to `--out_dir` (default:
CHECKPOINT/trajectory_fidelity).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from data_pipelines import synthetic_edits
from neural_assets import inference
from neural_assets.editing import trajectory
from neural_assets.evaluation import edit_fidelity as ef
from neural_assets.evaluation import edit_report
from neural_assets.evaluation import lpips
from neural_assets.evaluation.trajectory_fidelity import (DEFAULT_NUM_FRAMES, RenderFn,
                                                          aggregate, format_table, score_scene)
from neural_assets.range_checks import finite_float, int_at_least

DEFAULT_NUM_SCENES = 4
DEFAULT_FPS = 6.0  # The GIFs: slow enough to follow a few frames.
GIF_SCALE = 2  # Nearest upscaling of the GIFs of small synthetic frames.
# Model renders per sampler call: one compiled shape for every trajectory of a run.
DEFAULT_BATCH_SIZE = DEFAULT_NUM_FRAMES


def model_renderer(bundle, seed: int = 0, guidance_scale: Optional[float] = None,
                   num_steps: Optional[int] = None,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> RenderFn:
  """(scene, edits, shared_noise) -> frames, with `trajectory.render_frames`."""

  def render(scene, edits, shared_noise):
    del scene  # The edits know their scene.
    return trajectory.render_frames(bundle, edits, seed=seed, shared_noise=shared_noise,
                                    guidance_scale=guidance_scale, num_steps=num_steps,
                                    batch_size=batch_size)

  return render


def run(bundle, *, num_scenes: int = DEFAULT_NUM_SCENES, num_frames: int = DEFAULT_NUM_FRAMES,
        seed: int = synthetic_edits.DEFAULT_SEED, out_dir: Optional[str] = None, lpips_fn=None,
        render_seed: int = 0, guidance_scale: Optional[float] = None,
        num_steps: Optional[int] = None, per_frame_noise: bool = True, crop_size: int = 64,
        diff_threshold: float = 0.1, render_model: Optional[RenderFn] = None,
        fps: float = DEFAULT_FPS, log=print) -> dict[str, Any]:
  """Scores a model bundle's trajectories on `num_scenes` held-out scenes; writes `out_dir`.

  Returns the JSON content: 'means' (`aggregate`), 'per_scene' (specs and scores with their
  per-frame values), 'settings', machine, load and seconds.
  """
  start = time.time()
  load_start = os.getloadavg()
  config = bundle.config
  resolution = tuple(int(r) for r in config.data.resolution)
  scene_config = synthetic_edits.scene_config_for(config)
  scenes = synthetic_edits.heldout_scenes(scene_config, seed, num_scenes, resolution,
                                          bundle.max_objects,
                                          resize_method=config.data.resize_method)
  render_model = render_model or model_renderer(bundle, render_seed, guidance_scale, num_steps,
                                                max(1, int(num_frames)))
  scorer = ef.Scorer(lpips_fn, crop_size)
  per_scene = []
  for i, held in enumerate(scenes):
    t0 = time.time()
    ground_truth = synthetic_edits.ground_truth_renderer(held, [], scene_config)
    result = score_scene(held.scene, ground_truth, bundle.max_objects, render_model, scorer,
                         num_frames, per_frame_noise, diff_threshold)
    result["video"] = held.video
    per_scene.append(result)
    log(f"scene {i + 1}/{num_scenes} (video {held.video}): {time.time() - t0:.1f} s")
  report = {
      "checkpoint_step": getattr(bundle, "step", None),
      "means": aggregate(per_scene),
      "per_scene": [{"video": s["video"], "specs": s["specs"], "scores": s["scores"]}
                    for s in per_scene],
      "settings": {"held_out_seed": seed, "num_scenes": num_scenes, "num_frames": num_frames,
                   "frame": scenes[0].frame, "render_seed": render_seed,
                   "per_frame_noise": per_frame_noise, "resolution": list(resolution),
                   "crop_size": crop_size, "diff_threshold": diff_threshold,
                   "psnr_cap": ef.PSNR_CAP, "lpips": bool(lpips_fn),
                   "min_ground_truth_change": ef.MIN_GROUND_TRUTH_CHANGE,
                   "guidance_scale": guidance_scale if guidance_scale is not None
                   else float(config.sampler.guidance_scale),
                   "num_steps": num_steps if num_steps is not None
                   else int(config.sampler.num_inference_steps)},
      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
      "load_1min_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
      "seconds": round(time.time() - start, 1),
  }
  if out_dir:
    write_outputs(out_dir, report, per_scene[0]["frames"] if per_scene else {}, fps)
  return report


def write_outputs(out_dir: str, report: Mapping[str, Any],
                  frames: Mapping[str, Mapping[str, np.ndarray]], fps: float = DEFAULT_FPS
                  ) -> None:
  """trajectory_fidelity.json, table.md and one GIF per type of the first scene (columns:
  ground truth | model | model, per-frame noise when rendered)."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "trajectory_fidelity.json"), "w") as f:
    json.dump(report, f, indent=2, default=str)
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(format_table(report["means"]) + "\n")
  for name, by_method in frames.items():
    columns = [by_method[m] for m in ("ground truth (ceiling)", "model",
                                      "model, per-frame noise") if m in by_method]
    side_by_side = np.concatenate(columns, axis=2)  # [F, H, C*W, 3]
    trajectory.write_video(side_by_side, os.path.join(out_dir, f"{_file_name(name)}.gif"), fps,
                           GIF_SCALE)


def _file_name(name: str) -> str:
  return name.replace(" ", "_").replace("(", "").replace(")", "")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.trajectory_fidelity",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--step", type=int_at_least(0), default=None)
  parser.add_argument("--num_scenes", type=int_at_least(1), default=DEFAULT_NUM_SCENES)
  parser.add_argument("--num_frames", type=int_at_least(trajectory.MIN_FRAMES),
                      default=DEFAULT_NUM_FRAMES)
  parser.add_argument("--seed", type=int, default=synthetic_edits.DEFAULT_SEED,
                      help="Held-out generator stream (default: %(default)s).")
  parser.add_argument("--render_seed", type=int, default=0)
  parser.add_argument("--num_steps", type=int_at_least(1), default=None)
  parser.add_argument("--guidance", type=finite_float(low=0.0), default=None)
  parser.add_argument("--lpips_weights", default="pretrained",
                      help="'pretrained', 'none' or comma-separated weight files "
                      "(neural_assets.evaluation.lpips.distance_fn).")
  parser.add_argument("--no_per_frame_noise", action="store_true",
                      help="Skip the per-frame-noise method (halves the rendering).")
  parser.add_argument("--out_dir", default=None,
                      help="Default: CHECKPOINT/trajectory_fidelity.")
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(argv)
  bundle = inference.load_model_for_inference(args.checkpoint, step=args.step)
  out_dir = args.out_dir or os.path.join(
      os.path.dirname(edit_report.default_out_dir(args.checkpoint)), "trajectory_fidelity")
  report = run(bundle, num_scenes=args.num_scenes, num_frames=args.num_frames, seed=args.seed,
               out_dir=out_dir, lpips_fn=lpips.distance_fn(args.lpips_weights),
               render_seed=args.render_seed, guidance_scale=args.guidance,
               num_steps=args.num_steps, per_frame_noise=not args.no_per_frame_noise)
  print(format_table(report["means"]))
  print(f"Wrote {out_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
