r"""Trajectory fidelity: edit trajectories scored frame by frame against a ground-truth renderer.

The benchmark (held-out synthetic scenes, the run, the CLI) is `benchmarks/trajectory_fidelity.py`:

  python -m benchmarks.trajectory_fidelity --checkpoint WORKDIR \
      [--num_scenes 4 --num_frames 8 --seed 1000 --num_steps N --guidance G] \
      [--lpips_weights pretrained|none|FILES] [--no_per_frame_noise] [--out_dir DIR]

The still-edit benchmark (`edit_fidelity`) asks whether one edit lands; a trajectory also asks
whether the frames in between hold together. On held-out synthetic scenes (`data_pipelines.
synthetic_edits.heldout_scenes`, the generator's stream `--seed`), each trajectory type moves one object (the
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
(`synthetic_edits.render_ground_truth`, which also gives the objects' masks); a path is used only
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
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from neural_assets import editing
from neural_assets.editing import trajectory
from neural_assets.evaluation import edit_cases
from neural_assets.evaluation import edit_fidelity as ef

TRAJECTORY_TYPES = ("translate (image plane)", "translate (depth)", "rotate (yaw)", "rescale",
                    "duplicate", "camera move", "camera orbit")
METHODS = ("model", "model, per-frame noise", "source frame", "ground truth (ceiling)")
FRAME_METRICS = ("region/psnr", "region/ssim", "region/lpips", "image/psnr")
METRICS = FRAME_METRICS + ("flicker", "flicker/excess")
DEFAULT_NUM_FRAMES = 8
FULL_TURN = 360.0

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


def score_scene(scene: editing.Scene, ground_truth: ef.GroundTruthFn, max_objects: int,
                render_model: RenderFn, scorer: ef.Scorer, num_frames: int = DEFAULT_NUM_FRAMES,
                per_frame_noise: bool = True, diff_threshold: float = 0.1,
                min_change: float = ef.MIN_GROUND_TRUTH_CHANGE,
                types: Sequence[str] = TRAJECTORY_TYPES) -> dict[str, Any]:
  """Every trajectory type on one held-out scene, each method scored against the ground truth.

  Args:
    scene: the scene whose trajectories are scored.
    ground_truth: edit -> (rgb, masks), the ground-truth render of an edit of `scene` (the
      benchmark's is `synthetic_edits.ground_truth_renderer`); called for every frame of every
      candidate path, so it should cache.
    render_model: (scene, edits, shared_noise) -> [F, H, W, 3] uint8 (the model; a test may
      pass the ground-truth renderer, a perfect model).
    per_frame_noise: also render the `model, per-frame noise` method.

  Returns:
    {'scores': {type: {method: {metric: value, 'per_frame': ...}}}, 'specs': {type: spec or
    None}, 'frames': {type: {method: [F, H, W, 3]}}}.
  """
  unedited = editing.as_edit(scene)
  u_img, u_masks = ground_truth(unedited)

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
