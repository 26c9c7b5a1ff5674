r"""Trajectory fidelity: edit trajectories scored frame by frame against the generator's truth.

  python -m neural_assets.evaluation.trajectory_fidelity --checkpoint WORKDIR \
      [--num_scenes 4 --num_frames 8 --seed 1000 --num_steps N --guidance G] \
      [--lpips_weights pretrained|none|FILES] [--no_per_frame_noise] [--out_dir DIR]

The still-edit benchmark (`edit_fidelity`) asks whether one edit lands; a trajectory also asks
whether the frames in between hold together. On held-out synthetic scenes (`edit_fidelity.
heldout_scenes`, the generator's stream `--seed`), each trajectory type moves one object (the
largest the editing API accepts along the whole path) or the camera along a path of
`--num_frames` frames, written in the trajectory grammar (`neural_assets.editing.trajectory`):

  translate (image plane)  translate K x=0:M:N frame=camera   (M of edit_fidelity's offsets)
  translate (depth)        K's centre slid along its camera ray to a depth factor
  rotate (yaw)             rotate K yaw=0:A:N, a full turn (A = 360 (N-1)/N, so it loops)
  rescale                  rescale K 1:F:N
  duplicate                duplicate K x=0:M:N frame=camera   (the copy slides out of K)
  camera move              camera x=0:X y=0:Y z=0:Z:N          (a dolly for z)
  camera orbit             camera orbit=0:D:N

Every frame's ground truth is the generator's ray-cast render of that frame's edited 3D state
(`edit_fidelity.render_ground_truth`, which also gives the objects' masks); a path is used only
if some frame's ground truth changes at least MIN_GROUND_TRUTH_CHANGE of its region
(`edit_fidelity.changed_fraction`). Scores, per trajectory, then averaged over scenes:

- region/psnr, region/ssim, region/lpips, image/psnr: the mean over frames of
  `edit_fidelity.Scorer` against that frame's ground truth. The region of frame k is the smallest
  rectangle holding the ground-truth masks of what frame k changed (the moved / added object, in
  the unedited frame and in frame k; every object for camera paths), as in `edit_fidelity`;
- flicker: the mean over consecutive frame pairs of the mean |frame k+1 - frame k| (RGB, [0, 1])
  over the pixels OUTSIDE both frames' regions, where nothing should move. For object paths the
  ground truth scores exactly 0 there (no shadows); a camera path moves the background, so the
  ground truth's own flicker is the motion that is right, and
- flicker/excess: a method's flicker minus the ground truth's, on the same pixels: the change
  that the scene does not explain (0 for a perfect renderer).

Methods: `model` (shared initial noise, the default of `render_frames`), `model, per-frame
noise` (frame k from seed + k: what sharing buys), `source frame` (the unedited frame every
frame: no flicker, no motion) and `ground truth (ceiling)` (PSNR at the cap, flicker excess 0).
Writes `trajectory_fidelity.json` (means, per-scene values, specs, settings), `table.md` and,
for the first scene, `<type>.gif` (ground truth | model | model, per-frame noise) to `--out_dir`
(default: CHECKPOINT/trajectory_fidelity).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from data_pipelines import synthetic_edits
from neural_assets import editing
from neural_assets.editing import trajectory
from neural_assets.evaluation import edit_cases
from neural_assets.evaluation import edit_fidelity as ef
from neural_assets.evaluation import edit_report

TRAJECTORY_TYPES = ("translate (image plane)", "translate (depth)", "rotate (yaw)", "rescale",
                    "duplicate", "camera move", "camera orbit")
METHODS = ("model", "model, per-frame noise", "source frame", "ground truth (ceiling)")
FRAME_METRICS = ("region/psnr", "region/ssim", "region/lpips", "image/psnr")
METRICS = FRAME_METRICS + ("flicker", "flicker/excess")
DEFAULT_NUM_FRAMES = 8
DEFAULT_NUM_SCENES = 4
DEFAULT_FPS = 6.0  # The GIFs: slow enough to follow a few frames.
FULL_TURN = 360.0
GIF_SCALE = 2  # Nearest upscaling of the GIFs of small synthetic frames.
# Model renders per sampler call: one compiled shape for every trajectory of a run.
DEFAULT_BATCH_SIZE = DEFAULT_NUM_FRAMES

# render_model(scene, edits [F], shared_noise) -> [F, H, W, 3] uint8.
RenderFn = Callable[[editing.Scene, Sequence[editing.Edit], bool], np.ndarray]


# ------------------------------------------------------------------------------------------------
# Paths.


def _num(value: float) -> str:
  return repr(float(value))


def candidate_specs(scene: editing.Scene, name: str, num_frames: int) -> list[str]:
  """The trajectory specs of type `name` on `scene`, in the order they are tried: objects by
  decreasing 2D box size, then `edit_fidelity`'s magnitudes for that edit type."""
  n = int(num_frames)
  objects = scene.largest_first()
  if name == "translate (image plane)":
    return [f"translate {k} x=0:{_num(m)}:{n} frame=camera" for k in objects
            for m in edit_cases.IMAGE_PLANE_OFFSETS]
  if name == "translate (depth)":
    specs = []
    for k in objects:
      center = scene.world_to_camera[:3, :3] @ scene.centers[k] + scene.world_to_camera[:3, 3]
      # The offset that takes the centre to factor x its depth.
      for factor in edit_cases.DEPTH_FACTORS:
        dx, dy, dz = ((factor - 1.0) * center).tolist()
        specs.append(f"translate {k} x=0:{_num(dx)} y=0:{_num(dy)} z=0:{_num(dz)}:{n} "
                     "frame=camera")
    return specs
  if name == "rotate (yaw)":
    end = FULL_TURN * (n - 1) / n  # The frame after the last would be 360 = frame 0: it loops.
    return [f"rotate {k} yaw=0:{_num(end)}:{n}" for k in objects]
  if name == "rescale":
    return [f"rescale {k} 1:{_num(f)}:{n}" for k in objects for f in edit_cases.RESCALE_FACTORS]
  if name == "duplicate":
    return [f"duplicate {k} x=0:{_num(m)}:{n} frame=camera" for k in objects
            for m in edit_cases.DUPLICATE_OFFSETS]
  if name == "camera move":
    return [f"camera x=0:{_num(x)} y=0:{_num(y)} z=0:{_num(z)}:{n}"
            for x, y, z in edit_cases.CAMERA_OFFSETS]
  if name == "camera orbit":
    return [f"camera orbit=0:{_num(d)}:{n}" for d in edit_cases.ORBIT_DEGREES]
  raise ValueError(f"Unknown trajectory type {name!r} (want one of {TRAJECTORY_TYPES}).")


def choose_trajectory(scene: editing.Scene, name: str, num_frames: int, max_objects: int,
                      accept: Optional[Callable[[str, list[editing.Edit]], bool]] = None
                      ) -> Optional[tuple[str, list[editing.Edit]]]:
  """The first candidate spec (`candidate_specs`) whose every frame the editing API accepts,
  fits the model's `max_objects` slots and passes `accept(spec, edits)`; None if none does."""
  for spec in candidate_specs(scene, name, num_frames):
    try:
      edits = trajectory.build_trajectory(scene, spec)
    except trajectory.TrajectoryError:
      continue  # A frame left the view (or the object list): the next candidate.
    if any(int(e.active().sum()) > max_objects for e in edits):
      continue
    if accept is None or accept(spec, edits):
      return spec, edits
  return None


def changed_assets(edit: editing.Edit, unedited: editing.Edit) -> list[int]:
  """Assets an edit changed: moved / turned / resized / removed / added ones, or every active one
  when the camera changed (then every object moves on screen)."""
  if not (np.array_equal(edit.world_to_camera, unedited.world_to_camera)
          and np.array_equal(edit.intrinsics, unedited.intrinsics)):
    return [int(a) for a in np.flatnonzero(edit.active())]
  changed = []
  for a, asset in enumerate(edit.assets):
    if a >= len(unedited.assets):
      changed.append(a)
      continue
    base = unedited.assets[a]
    if asset.removed != base.removed or not all(
        np.array_equal(getattr(asset, f), getattr(base, f)) for f in ("center", "size",
                                                                     "rotation")):
      changed.append(a)
  return changed


# ------------------------------------------------------------------------------------------------
# Scores.


def box_mask(box: Optional[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
  """[H, W] bool: the pixels of normalised [y0, x0, y1, x1] `box` (None: none), with the pixel
  rounding of `edit_fidelity.changed_fraction`."""
  mask = np.zeros(shape, bool)
  if box is None:
    return mask
  h, w = shape
  y0, x0 = int(np.floor(box[0] * h)), int(np.floor(box[1] * w))
  y1, x1 = max(int(np.ceil(box[2] * h)), y0 + 1), max(int(np.ceil(box[3] * w)), x0 + 1)
  mask[y0:y1, x0:x1] = True
  return mask


def flicker(frames: np.ndarray, regions: Sequence[Optional[np.ndarray]]) -> np.ndarray:
  """[F-1] mean |frame k+1 - frame k| (RGB mean, [0, 1]) outside regions k and k+1.

  Args:
    frames: [F, H, W, 3] uint8.
    regions: F normalised boxes (None: no region, every pixel counts).

  Returns:
    [F-1] float64; NaN for a pair whose regions cover every pixel.
  """
  frames = np.asarray(frames, np.float64) / 255.0
  shape = frames.shape[1:3]
  out = []
  for k in range(len(frames) - 1):
    outside = ~(box_mask(regions[k], shape) | box_mask(regions[k + 1], shape))
    change = np.abs(frames[k + 1] - frames[k]).mean(-1)
    out.append(float(change[outside].mean()) if outside.any() else float("nan"))
  return np.asarray(out, np.float64)


def _nanmean(values) -> float:
  values = np.asarray(values, np.float64)
  finite = values[~np.isnan(values)]
  return float(finite.mean()) if finite.size else float("nan")


def score_frames(pred: np.ndarray, truth: np.ndarray, regions: Sequence[Optional[np.ndarray]],
                 scorer: ef.Scorer) -> dict[str, Any]:
  """One method's frames [F, H, W, 3] against the ground truth's: the METRICS (means over
  frames / frame pairs) and 'per_frame' {metric: [F] values}."""
  per_frame = {m: [] for m in FRAME_METRICS}
  for p, t, box in zip(pred, truth, regions):
    for k, v in scorer.region(p, t, box).items():
      per_frame[f"region/{k}"].append(v)
    per_frame["image/psnr"].append(scorer.image(p, t)["psnr"])
  scores = {m: _nanmean(v) for m, v in per_frame.items()}
  pred_flicker, truth_flicker = flicker(pred, regions), flicker(truth, regions)
  scores["flicker"] = _nanmean(pred_flicker)
  scores["flicker/excess"] = _nanmean(pred_flicker - truth_flicker)
  scores["per_frame"] = {**per_frame, "flicker": pred_flicker.tolist()}
  return scores


def score_scene(held: synthetic_edits.HeldOutScene, max_objects: int, render_model: RenderFn,
                scorer: ef.Scorer, scene_config, num_frames: int = DEFAULT_NUM_FRAMES,
                per_frame_noise: bool = True, diff_threshold: float = 0.1,
                min_change: float = ef.MIN_GROUND_TRUTH_CHANGE,
                types: Sequence[str] = TRAJECTORY_TYPES) -> dict[str, Any]:
  """Every trajectory type on one held-out scene, each method scored against the ground truth.

  Args:
    render_model: (scene, edits, shared_noise) -> [F, H, W, 3] uint8 (the model; a test may
      pass the ground-truth renderer, a perfect model).
    per_frame_noise: also render the `model, per-frame noise` method.

  Returns:
    {'scores': {type: {method: {metric: value, 'per_frame': ...}}}, 'specs': {type: spec or
    None}, 'frames': {type: {method: [F, H, W, 3]}}}.
  """
  scene = held.scene
  resolution = scene.image.shape[:2]
  states = {id(scene): held.state}
  unedited = editing.as_edit(scene)
  u_img, u_masks = synthetic_edits.render_ground_truth(unedited, states, scene_config,
                                                       resolution)
  # id(edit) -> (edit, render): holding the edit keeps its id from being reused by a later
  # candidate's edit once a refused candidate is freed.
  truth_cache: dict[int, tuple[editing.Edit, tuple[np.ndarray, dict[int, np.ndarray]]]] = {}

  def ground_truth(edit):
    if id(edit) not in truth_cache:
      truth_cache[id(edit)] = (edit, synthetic_edits.render_ground_truth(edit, states,
                                                                         scene_config, resolution))
    return truth_cache[id(edit)][1]

  def region(edit):
    masks = ground_truth(edit)[1]
    assets = changed_assets(edit, unedited)
    return ef.union_box([ef.mask_box(m[a]) for m in (u_masks, masks) for a in assets if a in m])

  def visible(spec, edits):
    return max(ef.changed_fraction(ground_truth(e)[0], u_img, region(e), diff_threshold)
               for e in edits) >= min_change

  scores, specs, frames = {}, {}, {}
  for name in types:
    chosen = choose_trajectory(scene, name, num_frames, max_objects, visible)
    specs[name] = chosen[0] if chosen else None
    if chosen is None:
      continue
    edits = chosen[1]
    truth = np.stack([ground_truth(e)[0] for e in edits])
    regions = [region(e) for e in edits]
    preds = {"model": np.asarray(render_model(scene, edits, True))}
    if per_frame_noise:
      preds["model, per-frame noise"] = np.asarray(render_model(scene, edits, False))
    preds["source frame"] = np.repeat(scene.image[None], len(edits), axis=0)
    preds["ground truth (ceiling)"] = truth
    scores[name] = {method: score_frames(p, truth, regions, scorer) for method, p in preds.items()}
    frames[name] = preds
  return {"scores": scores, "specs": specs, "frames": frames}


def aggregate(per_scene: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
  """{type: {method: {metric: mean over scenes (None: no finite value), 'scenes': count}}}."""
  out = {}
  for name in TRAJECTORY_TYPES:
    rows = [s["scores"][name] for s in per_scene if name in s["scores"]]
    out[name] = {}
    for method in METHODS:
      values = [r[method] for r in rows if method in r]
      if not values:
        continue
      means = {m: _nanmean([v[m] for v in values]) for m in METRICS}
      out[name][method] = {**{m: (None if np.isnan(v) else v) for m, v in means.items()},
                           "scenes": len(values)}
  return out


def format_table(means: Mapping[str, Any]) -> str:
  """Markdown: one row per (trajectory type, method)."""
  lines = ["| trajectory | method | scenes | " + " | ".join(METRICS) + " |",
           "|" + "---|" * (len(METRICS) + 3)]
  for name, by_method in means.items():
    for method, row in by_method.items():
      cells = ["n/a" if row[m] is None else (f"{row[m]:.2f}" if "psnr" in m else f"{row[m]:.4f}")
               for m in METRICS]
      lines.append(f"| {name} | {method} | {row['scenes']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The run.


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
                                          resize_method=config.data.get("resize_method", "area"))
  render_model = render_model or model_renderer(bundle, render_seed, guidance_scale, num_steps,
                                                max(1, int(num_frames)))
  scorer = ef.Scorer(lpips_fn, crop_size)
  per_scene = []
  for i, held in enumerate(scenes):
    t0 = time.time()
    result = score_scene(held, bundle.max_objects, render_model, scorer, scene_config,
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
  parser = argparse.ArgumentParser(prog="python -m neural_assets.evaluation.trajectory_fidelity",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  from neural_assets.cli_validation import finite_float, int_at_least  # pylint: disable=g-import-not-at-top
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
  from neural_assets import inference  # pylint: disable=g-import-not-at-top
  from neural_assets.evaluation import lpips  # pylint: disable=g-import-not-at-top
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
