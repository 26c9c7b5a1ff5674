r"""The edit-fidelity benchmark: edits of held-out synthetic scenes against the generator's truth.

  python -m benchmarks.edit_fidelity --checkpoint WORKDIR [--num_scenes 32] [--seed 1000] \
      [--out_dir DIR] [--lpips_weights pretrained|none|FILES] [--num_steps N] [--guidance G]

`run(bundle, ...)` scores a model bundle (the demo calls `run_for_workdir`). For each held-out
scene (`data_pipelines/synthetic_edits.py`: videos of the generator's stream `--seed`, never used
for training) it applies every edit type of the editing API (`evaluation/edit_cases.py`; scene
i's donors of inserted objects and backgrounds are the next NUM_DONORS held-out scenes), renders
each edit with the model (`editing.render`: DDIM + guidance, the same noise for every edit of a
scene) and the ground truth with the generator's own ray caster from the same edited 3D state
and camera, and scores every method (`evaluation/edit_fidelity.py` defines the scores and
methods). Whether each edit type takes effect: `evaluation/edit_effects.py` (paired differences
over scenes with 95% bootstrap intervals).

Writes to `--out_dir` (default: CHECKPOINT/edit_fidelity, i.e. WORKDIR/edit_fidelity for a demo
workdir, which the demo report links; `evaluation/edit_report.py`): `edit_fidelity.json`
(`takes_effect` {type: bool}, `differences` {type: {baseline: {metric: {mean, low, high, n,
better, better_than_zero}}}}, `means` {type: {method: {metric: mean, scenes}}}, `per_scene`
[{video, notes (the edit applied), scores {type: {method: {metric}}}, ground_truth_change {type:
fraction}}], settings (seeds, magnitudes, bootstrap), machine and load), `table.md`,
`index.html` and one PNG grid per edit type, and prints the tables: per edit type whether it
takes effect (model - baseline with 95% bootstrap intervals, paired over scenes), then the
means. The JSON also goes to `--results_json` (benchmarks/results/ by default).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np

# pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import synthetic
from data_pipelines import synthetic_edits
from data_pipelines.synthetic_edits import DEFAULT_SEED, HeldOutScene
from neural_assets import editing
from neural_assets import inference
from neural_assets.evaluation import edit_fidelity
from neural_assets.evaluation.edit_cases import (CAMERA_OFFSETS, DEPTH_FACTORS, DUPLICATE_OFFSETS,
                                                 IMAGE_PLANE_OFFSETS, ORBIT_DEGREES,
                                                 RESCALE_FACTORS, YAW_DEGREES)
from neural_assets.evaluation.edit_effects import (BASELINES, BOOTSTRAP_RESAMPLES,
                                                   BOOTSTRAP_SEED, CONFIDENCE,
                                                   DEFAULT_NUM_SCENES, EFFECT_METRICS,
                                                   paired_differences, takes_effect)
from neural_assets.evaluation.edit_fidelity import (METHODS, MIN_GROUND_TRUTH_CHANGE, PSNR_CAP,
                                                    Scorer, aggregate, summary)
from neural_assets.evaluation.edit_report import (default_out_dir, format_report_tables,
                                                  write_outputs)
# pylint: enable=g-import-not-at-top,wrong-import-position

NUM_DONORS = 3  # held-out scenes offered as the inserted object's / the background's source.


def score_scene(held: HeldOutScene, others, max_objects: int,
                render_model: edit_fidelity.RenderFn, scorer: Scorer,
                scene_config: synthetic.SceneConfig, diff_threshold: float = 0.1,
                min_change: float = MIN_GROUND_TRUTH_CHANGE) -> dict[str, Any]:
  """`edit_fidelity.score_edits` of one held-out scene against the generator's ground truth.

  Args:
    others: held-out scenes (or one) donating inserted objects and backgrounds, in order.
    render_model, min_change: as `score_edits`.
  """
  if isinstance(others, HeldOutScene):
    others = [others]
  ground_truth = synthetic_edits.ground_truth_renderer(held, others, scene_config)
  return edit_fidelity.score_edits(held.scene, [o.scene for o in others], ground_truth,
                                   max_objects, render_model, scorer, diff_threshold, min_change)


def model_renderer(bundle, seed: int = 0, guidance_scale: Optional[float] = None,
                   num_steps: Optional[int] = None, chunk: int = 32):
  """(scene, edits) -> [E, H, W, 3] uint8 with `editing.render` (same noise for every edit)."""

  def render(scene, edits):
    out = [editing.render(bundle, scene, *edits[i:i + chunk], seed=seed,
                          guidance_scale=guidance_scale, num_steps=num_steps)[:, 0]
           for i in range(0, len(edits), chunk)]
    return np.concatenate(out)

  return render


def load_lpips(weights: str, net: str = "alex"):
  """`--lpips_weights` ("pretrained", "none" or files; see lpips.py) -> fn(x01, y01) -> [B]."""
  from neural_assets.evaluation import lpips  # pylint: disable=g-import-not-at-top
  return lpips.distance_fn(weights, net)


def experiment_lpips(bundle, weights: Optional[str] = None, net: Optional[str] = None):
  """LPIPS as the experiment's held-out evaluation scores it (`evaluation.lpips`), unless
  `weights` / `net` override it."""
  lpips_cfg = bundle.config.evaluation.lpips
  return load_lpips(weights or lpips_cfg.weights, net or lpips_cfg.net)


def load_bundle(checkpoint: str, step: Optional[int] = None):
  """The model for rendering, through the one inference entry point."""
  return inference.load_model_for_inference(checkpoint, step=step)


def run(bundle, *, num_scenes: int = DEFAULT_NUM_SCENES, seed: int = DEFAULT_SEED,
        out_dir: Optional[str] = None, lpips_fn=None, diff_threshold: float = 0.1,
        crop_size: int = 64, render_seed: int = 0, guidance_scale: Optional[float] = None,
        num_steps: Optional[int] = None, scene_overrides: Optional[Mapping[str, Any]] = None,
        label: str = "", render_model=None, min_change: float = MIN_GROUND_TRUTH_CHANGE,
        bootstrap_seed: int = BOOTSTRAP_SEED, n_resamples: int = BOOTSTRAP_RESAMPLES,
        log=print) -> dict[str, Any]:
  """Scores a model bundle on `num_scenes` held-out scenes; writes `out_dir` if given.

  Scene i's donors (inserted objects, backgrounds) are the next NUM_DONORS held-out scenes.

  Returns the JSON content: 'means' {type: {method: {metric: mean}}}, 'differences' (see
  `paired_differences`), 'takes_effect' {type: bool}, 'summary', 'per_scene' (every scene's
  scores, edit names and ground-truth change), 'settings', machine, load and seconds.
  """
  start = time.time()
  load_start = os.getloadavg()
  config = bundle.config
  resolution = tuple(int(r) for r in config.data.resolution)
  scene_config = synthetic_edits.scene_config_for(config, **dict(scene_overrides or {}))
  pool = num_scenes + min(NUM_DONORS, num_scenes)
  scenes = synthetic_edits.heldout_scenes(scene_config, seed, pool, resolution,
                                          bundle.max_objects,
                                          resize_method=config.data.resize_method)
  render_model = render_model or model_renderer(bundle, render_seed, guidance_scale, num_steps)
  scorer = Scorer(lpips_fn, crop_size)
  per_scene = []
  for i in range(num_scenes):
    t0 = time.time()
    donors = [scenes[(i + j) % pool] for j in range(1, pool) if (i + j) % pool != i]
    result = score_scene(scenes[i], donors[:NUM_DONORS], bundle.max_objects, render_model,
                         scorer, scene_config, diff_threshold, min_change)
    result["video"] = scenes[i].video
    per_scene.append(result)
    log(f"scene {i + 1}/{num_scenes} (video {scenes[i].video}): {time.time() - t0:.1f} s")
  means = aggregate(per_scene)
  differences = paired_differences(per_scene, CONFIDENCE, n_resamples, bootstrap_seed)
  seconds = time.time() - start
  report = {
      "label": label,
      "checkpoint_step": getattr(bundle, "step", None),
      "takes_effect": takes_effect(differences),
      "differences": differences,
      "means": means,
      "summary": {method: summary(means, method) for method in METHODS},
      "per_scene": [{"video": s["video"], "notes": s["notes"], "scores": s["scores"],
                     "ground_truth_change": s["ground_truth_change"],
                     "unedited_ground_truth_vs_source_psnr": s["unedited_psnr"]}
                    for s in per_scene],
      "settings": {"held_out_seed": seed, "num_scenes": num_scenes, "frame": scenes[0].frame,
                   "min_ground_truth_change": min_change, "num_donors": NUM_DONORS,
                   "bootstrap": {"confidence": CONFIDENCE, "n_resamples": n_resamples,
                                 "seed": bootstrap_seed, "method": "BCa (percentile fallback)",
                                 "paired_over": "scenes", "baselines": list(BASELINES),
                                 "effect_metrics": list(EFFECT_METRICS)},
                   "magnitudes": {"image_plane_offsets": IMAGE_PLANE_OFFSETS,
                                  "depth_factors": DEPTH_FACTORS, "yaw_degrees": YAW_DEGREES,
                                  "rescale_factors": RESCALE_FACTORS,
                                  "duplicate_offsets": DUPLICATE_OFFSETS,
                                  "camera_offsets": CAMERA_OFFSETS,
                                  "orbit_degrees": ORBIT_DEGREES},
                   "resolution": list(resolution), "diff_threshold": diff_threshold,
                   "crop_size": crop_size, "psnr_cap": PSNR_CAP, "render_seed": render_seed,
                   "guidance_scale": guidance_scale if guidance_scale is not None
                   else float(config.sampler.guidance_scale),
                   "num_steps": num_steps if num_steps is not None
                   else int(config.sampler.num_inference_steps),
                   "lpips": bool(lpips_fn), "scene_config": dataclasses.asdict(scene_config)},
      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
      "load_1min_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
      "seconds": round(seconds, 1),
  }
  if out_dir:
    write_outputs(out_dir, report, per_scene)
  return report


def run_for_workdir(bundle, workdir: str, num_scenes: int = DEFAULT_NUM_SCENES,
                    **kwargs) -> dict[str, Any]:
  """For the demo: scores `bundle` (e.g. `inference.bundle_from_train_state(config, state)`)
  into WORKDIR/edit_fidelity; the result has 'index' (the HTML path) for the report to link
  (from WORKDIR/report/index.html: `../edit_fidelity/index.html`)."""
  out_dir = os.path.join(workdir, "edit_fidelity")
  if "lpips_fn" not in kwargs:
    kwargs["lpips_fn"] = experiment_lpips(bundle)
  report = run(bundle, num_scenes=num_scenes, out_dir=out_dir, **kwargs)
  report["index"] = os.path.join(out_dir, "index.html")
  return report


_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        "edit_fidelity.json")


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="Demo workdir, training workdir, checkpoints/ dir or step dir.")
  parser.add_argument("--step", type=int, default=None)
  parser.add_argument("--num_scenes", type=int, default=DEFAULT_NUM_SCENES,
                      help="Held-out scenes per edit type (the intervals need ~32).")
  parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                      help="Held-out generator stream (not the training / eval seeds).")
  parser.add_argument("--out_dir", default=None, help="Default: CHECKPOINT/edit_fidelity.")
  parser.add_argument("--results_json", default=_RESULTS, help="'' to skip.")
  parser.add_argument("--lpips_weights", default=None,
                      help='"pretrained" (installed v0.1 weights), "none" or files (lpips.py). '
                      "Default: the experiment's evaluation.lpips, as its held-out eval scores.")
  parser.add_argument("--lpips_net", default=None, help="alex | vgg. Default: the experiment's.")
  parser.add_argument("--diff_threshold", type=float, default=0.1)
  parser.add_argument("--crop_size", type=int, default=64)
  parser.add_argument("--render_seed", type=int, default=0)
  parser.add_argument("--guidance", type=float, default=None)
  parser.add_argument("--num_steps", type=int, default=None)
  parser.add_argument("--min_change", type=float, default=MIN_GROUND_TRUTH_CHANGE,
                      help="Fraction of an edit's scored region its ground truth must change.")
  parser.add_argument("--bootstrap_seed", type=int, default=BOOTSTRAP_SEED)
  parser.add_argument("--bootstrap_resamples", type=int, default=BOOTSTRAP_RESAMPLES)
  parser.add_argument("--label", default="")
  args = parser.parse_args(argv)
  bundle = load_bundle(args.checkpoint, args.step)
  out_dir = args.out_dir or default_out_dir(args.checkpoint)
  lpips_fn = experiment_lpips(bundle, args.lpips_weights, args.lpips_net)
  report = run(bundle, num_scenes=args.num_scenes, seed=args.seed, out_dir=out_dir,
               lpips_fn=lpips_fn,
               diff_threshold=args.diff_threshold, crop_size=args.crop_size,
               render_seed=args.render_seed, guidance_scale=args.guidance,
               num_steps=args.num_steps, label=args.label or args.checkpoint,
               min_change=args.min_change, bootstrap_seed=args.bootstrap_seed,
               n_resamples=args.bootstrap_resamples)
  print(format_report_tables(report))
  print(f"\nWrote {out_dir}/index.html, edit_fidelity.json, table.md and the grids "
        f"({report['seconds']} s, {report['machine']}, load {report['load_1min_start_end']}).")
  if args.results_json:
    os.makedirs(os.path.dirname(os.path.abspath(args.results_json)), exist_ok=True)
    with open(args.results_json, "w") as f:
      json.dump(report, f, indent=2, default=str)
  return report


if __name__ == "__main__":
  main()
