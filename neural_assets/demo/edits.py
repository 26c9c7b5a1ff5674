"""Demo step 4: every edit type of `neural_assets.editing` on held-out scenes, and one edit
trajectory per edit type that has a path (`evaluation.trajectory_fidelity.TRAJECTORY_TYPES`:
not remove, insert, background swap) as an animated GIF under that type's grid.

Trajectory cost is kept small and set by `config.demo` (defaults in `settings.py`): `trajectory_frames`
(0: no trajectories), `trajectory_steps` (DDIM steps per frame), `trajectory_fps`."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import ml_collections
import numpy as np

from neural_assets import report as report_lib
from neural_assets.images import image_grid
from neural_assets.demo.evaluation import Restored
from neural_assets.demo.settings import demo_settings
from neural_assets.evaluation import edit_cases

EDIT_TYPES = edit_cases.EDIT_TYPES  # The demo shows the edits the benchmark scores.
def trajectory_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """(frames, steps, fps) of the demo's trajectories from `config.demo` (`settings.DEFAULTS`)."""
  demo = demo_settings(config)
  frames, steps, fps = demo.trajectory_frames, demo.trajectory_steps, demo.trajectory_fps
  if frames != 0 and frames < 2:
    raise ValueError(f"config.demo.trajectory_frames must be 0 (off) or >= 2, got {frames}.")
  if steps < 1 or not np.isfinite(fps) or fps <= 0:
    raise ValueError(f"config.demo.trajectory_steps must be >= 1 and trajectory_fps > 0, got "
                     f"{steps} and {fps}.")
  return dict(frames=frames, steps=steps, fps=fps)


def render_trajectories(bundle: Any, scene: Any, num_frames: int, num_steps: int,
                        seed: int) -> dict[str, tuple[str, np.ndarray]]:
  """{type: (spec, [F, H, W, 3] uint8 frames)} for each trajectory type that has a path on
  `scene` (chosen as the trajectory-fidelity benchmark chooses them), shared noise."""
  # pylint: disable=g-import-not-at-top
  from neural_assets.editing import trajectory
  from neural_assets.evaluation import trajectory_fidelity
  # pylint: enable=g-import-not-at-top
  out = {}
  for name in trajectory_fidelity.TRAJECTORY_TYPES:
    chosen = trajectory_fidelity.choose_trajectory(scene, name, num_frames, bundle.max_objects)
    if chosen is None:
      continue
    spec, edits = chosen
    out[name] = (spec, trajectory.render_frames(bundle, edits, seed=seed, num_steps=num_steps,
                                                batch_size=num_frames))
  return out


def read_eval_record(config: ml_collections.ConfigDict, video_index: int) -> dict[str, Any]:
  """Decoded video record `video_index` of the eval split (the frame-pair `video_index`)."""
  from data_pipelines import data_config  # pylint: disable=g-import-not-at-top
  from data_pipelines import record_source  # pylint: disable=g-import-not-at-top
  source = record_source.VideoRecordSource(
      data_config.resolve_files(config.data.data_dir, config.data.eval_files))
  return source.read_record(int(video_index))  # Frames are read when used.


def make_edits(scene: Any, other: Any, max_objects: int
               ) -> dict[str, tuple[Optional[Any], str]]:
  """Every edit type on `scene`: {type: (its `edit_cases.EditCase` or None, note)}, chosen
  exactly as the edit-fidelity benchmark chooses them (`make_cases`: objects by decreasing size,
  a few magnitudes, within the model's `max_objects` slots); `other` (another scene, or None)
  donates the inserted object and the swapped background."""
  cases = edit_cases.make_cases(scene, other, max_objects)
  edits = {}
  for name in EDIT_TYPES:
    case = cases.get(name)
    if case is not None:
      edits[name] = (case, case.edit.name)
    elif other is None and name in ("insert", "background swap"):
      edits[name] = (None, "needs a second scene")
    else:
      edits[name] = (None, "no variant the editing API accepts fits the slots")
  return edits


def edited_object_boxes(scene: Any, case: Any) -> tuple[np.ndarray, np.ndarray]:
  """([K, 4] boxes before, [K, 4] target boxes after) of what an edit changed: its
  `region_assets` (before: those already in the unedited scene), or every object when the edit
  changes no single one (background swap)."""
  target = case.edit.target_boxes_2d()
  region = list(case.region_assets)
  if not region:
    active = case.edit.active()
    return scene.boxes_2d, target[active] if active.any() else np.zeros((0, 4))
  before = [a for a in region if a < scene.num_objects and case.in_unedited]
  return scene.boxes_2d[before].reshape(-1, 4), target[region]


def run_edits(config: ml_collections.ConfigDict, restored: Restored,
              examples: Mapping[str, np.ndarray], num_scenes: int) -> list[report_lib.Grid]:
  """Each edit type of `neural_assets.editing` on the source frames of the first `num_scenes`
  examples (scene i+1 donates to scene i). Returns an overview grid and one grid per edit type.

  Every scene renders the same number of edits in one `editing.render` call (one compiled
  shape); an edit that no object allows is rendered as the reconstruction and shown grey.
  Scene 0's trajectories (`render_trajectories`, settings from `trajectory_settings`) are the
  animations of the per-type grids.
  """
  # pylint: disable=g-import-not-at-top
  from neural_assets import editing
  from neural_assets import inference
  # pylint: enable=g-import-not-at-top
  bundle = inference.bundle_from_train_state(config, restored.state, restored.step,
                                             use_ema=bool(config.eval.use_ema))
  count = min(num_scenes, len(examples["video_index"]))
  if count < 1:
    raise ValueError("run_edits needs at least one example.")
  scenes = []
  for i in range(count + (1 if count < len(examples["video_index"]) else 0)):
    record = read_eval_record(config, examples["video_index"][i])
    scenes.append(editing.scene_from_video_record(
        record, int(examples["source_frame"][i]), resolution=tuple(config.data.resolution),
        resize_method=config.data.resize_method, min_depth=float(config.data.min_depth),
        min_projected_size=float(config.data.min_projected_size)
    ).keep_largest(bundle.max_objects))
  per_type: dict[str, list[list[np.ndarray]]] = {name: [] for name in EDIT_TYPES}
  overview, notes = [], {name: [] for name in EDIT_TYPES}
  grey = np.full(scenes[0].image.shape, 128, np.uint8)
  for i in range(count):
    scene = scenes[i]
    other = scenes[(i + 1) % len(scenes)] if len(scenes) > 1 else None
    edits = make_edits(scene, other, bundle.max_objects)
    to_render = [scene] + [c.edit if c is not None else scene for c, _ in edits.values()]
    images = editing.render(bundle, scene, *to_render, seed=int(config.eval.seed))[:, 0]
    recon = images[0]
    row = [report_lib.draw_boxes(scene.image, scene.boxes_2d), recon]
    for (name, (case, note)), image in zip(edits.items(), images[1:]):
      notes[name].append(f"scene {i}: {note}")
      if case is None:
        per_type[name].append([scene.image, recon, grey])
        row.append(grey)
        continue
      before, after = edited_object_boxes(scene, case)
      per_type[name].append([
          report_lib.draw_boxes(scene.image, before, color=(255, 255, 0)),
          report_lib.draw_boxes(recon, before, color=(0, 160, 0)),
          report_lib.draw_boxes(image, after, color=(0, 160, 0))])
      row.append(image)
    overview.append(row)
  settings = trajectory_settings(config)
  motions = (render_trajectories(bundle, scenes[0], settings["frames"], settings["steps"],
                                 int(config.eval.seed)) if settings["frames"] else {})
  grids = [report_lib.Grid(
      "edits_overview", "All edits", image_grid(overview),
      columns=("source + boxes", "reconstruction") + EDIT_TYPES,
      caption="One row per eval scene (its source frame); grey: no object allowed the edit.")]
  for name in EDIT_TYPES:
    spec, frames = motions.get(name, ("", None))
    animation = dict(animation=frames, animation_fps=settings["fps"], animation_caption=(
        f"Trajectory on scene 0: {spec!r} ({settings['frames']} frames, {settings['steps']} DDIM "
        "steps, the same initial noise for every frame).")) if frames is not None else {}
    grids.append(report_lib.Grid(
        "edit_" + name.replace(" ", "_"), f"Edit: {name}", image_grid(per_type[name]),
        columns=("source (edited object boxed)", "before: render of the unedited scene",
                 "after: render of the edit"),
        caption=("Green: the edited object's box before and its target box after the edit "
                 "(every object's for background swap and camera edits). " + " | ".join(
                     notes[name])), **animation))
  return grids
