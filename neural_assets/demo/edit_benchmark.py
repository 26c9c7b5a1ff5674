"""The edit-fidelity benchmark on held-out synthetic scenes: edits rendered by a model against
the generator's ground truth. Shared by the demo, `benchmarks/edit_fidelity.py` (its CLI and
the description of its outputs), `benchmarks/edit_curve.py` and `benchmarks/ablations.py`.

For each held-out scene (`data_pipelines/synthetic_edits.py`: videos of the generator's stream
`seed`, never used for training) `run` applies every edit type of the editing API
(`evaluation/edit_cases.py`; scene i's donors of inserted objects and backgrounds are the next
NUM_DONORS held-out scenes), renders each edit with the model (`editing.render`: DDIM +
guidance, the same noise for every edit of a scene) and the ground truth with the generator's
own ray caster from the same edited 3D state and camera, and scores every method
(`evaluation/edit_fidelity.py`); whether each edit type takes effect is
`evaluation/edit_effects.py` (paired differences over scenes, 95% bootstrap intervals).
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Any, Mapping, Optional

import numpy as np

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
from neural_assets.evaluation.edit_report import write_outputs

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


def heldout_pool(config, max_objects: int, num_scenes: int, seed: int = DEFAULT_SEED,
                 scene_overrides: Optional[Mapping[str, Any]] = None
                 ) -> tuple[synthetic.SceneConfig, list[HeldOutScene]]:
  """The experiment's toy world and its `num_scenes` held-out scenes plus their donors."""
  scene_config = synthetic_edits.scene_config_for(config, **dict(scene_overrides or {}))
  pool = num_scenes + min(NUM_DONORS, num_scenes)
  resolution = tuple(int(r) for r in config.data.resolution)
  scenes = synthetic_edits.heldout_scenes(scene_config, seed, pool, resolution, max_objects,
                                          resize_method=config.data.resize_method)
  return scene_config, scenes


def load_bundle(checkpoint: str, step: Optional[int] = None):
  """The model for rendering, through the one inference entry point."""
  return inference.load_model_for_inference(checkpoint, step=step)


def run(bundle, *, num_scenes: int = DEFAULT_NUM_SCENES, seed: int = DEFAULT_SEED,
        out_dir: Optional[str] = None, lpips_fn=None, diff_threshold: float = 0.1,
        crop_size: int = 64, render_seed: int = 0, guidance_scale: Optional[float] = None,
        num_steps: Optional[int] = None, scene_overrides: Optional[Mapping[str, Any]] = None,
        label: str = "", render_model=None, min_change: float = MIN_GROUND_TRUTH_CHANGE,
        bootstrap_seed: int = BOOTSTRAP_SEED, n_resamples: int = BOOTSTRAP_RESAMPLES,
        held_out: Optional[tuple[synthetic.SceneConfig, list[HeldOutScene]]] = None,
        log=print) -> dict[str, Any]:
  """Scores a model bundle on `num_scenes` held-out scenes; writes `out_dir` if given.

  Scene i's donors (inserted objects, backgrounds) are the next NUM_DONORS held-out scenes.
  `held_out`: `heldout_pool(...)` made once for several bundles of one run (edit_curve);
  default: made here from `seed` and `scene_overrides`.

  Returns the JSON content: 'means' {type: {method: {metric: mean}}}, 'differences' (see
  `paired_differences`), 'takes_effect' {type: bool}, 'summary', 'per_scene' (every scene's
  scores, edit names and ground-truth change), 'settings', machine, load and seconds.
  """
  start = time.time()
  load_start = os.getloadavg()
  config = bundle.config
  resolution = tuple(int(r) for r in config.data.resolution)
  if held_out is None:
    held_out = heldout_pool(config, bundle.max_objects, num_scenes, seed, scene_overrides)
  scene_config, scenes = held_out
  pool = len(scenes)
  if pool != num_scenes + min(NUM_DONORS, num_scenes):
    raise ValueError(f"held_out has {pool} scenes; {num_scenes} scenes need "
                     f"{num_scenes + min(NUM_DONORS, num_scenes)} (heldout_pool).")
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
