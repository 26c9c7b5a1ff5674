"""Demo step 4: every edit type of `neural_assets.editing` on held-out scenes."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import ml_collections
import numpy as np

from neural_assets import report as report_lib
from neural_assets.demo.evaluation import Restored

EDIT_TYPES = ("translate", "rotate", "rescale", "remove", "duplicate", "insert",
              "background swap", "camera change")


def read_eval_record(config: ml_collections.ConfigDict, video_index: int) -> dict[str, Any]:
  """Decoded video record `video_index` of the eval split (the frame-pair `video_index`)."""
  from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
  source = pipeline.VideoRecordSource(
      pipeline.resolve_files(config.data.data_dir, config.data.eval_files))
  return source.read_record(int(video_index))  # Frames are read when used.


def _object_order(scene: Any) -> list[int]:
  """Objects by decreasing 2D box area: the biggest is the clearest to edit."""
  boxes = scene.boxes_2d
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  return [int(i) for i in np.argsort(-area, kind="stable")]


def keep_largest_objects(scene: Any, max_objects: int) -> Any:
  """The scene with only its `max_objects` largest objects (2D box area), as the training
  pipeline keeps them when a frame has more objects than the model's slots."""
  from neural_assets import editing  # pylint: disable=g-import-not-at-top
  if scene.num_objects <= max_objects:
    return scene
  keep = np.sort(_object_order(scene)[:max_objects])
  return editing.Scene(image=scene.image, boxes_2d=scene.boxes_2d[keep],
                       centers=scene.centers[keep], sizes=scene.sizes[keep],
                       rotations=scene.rotations[keep], instance_ids=scene.instance_ids[keep],
                       intrinsics=scene.intrinsics, world_to_camera=scene.world_to_camera)


def make_edits(scene: Any, other: Any, max_objects: int
               ) -> dict[str, tuple[Any, Optional[int], str]]:
  """Every edit type on `scene` ({type: (Edit or None, edited object or None, note)}).

  Each op is tried on the objects by decreasing size and a few magnitudes until one gives valid
  boxes (editing raises EditError otherwise) and fits the model's `max_objects` slots (adding an
  object to a full scene first removes its smallest other object); `other` (another scene)
  donates the inserted object and the swapped background. None: nothing allowed the edit (the
  note says why).
  """
  from neural_assets import editing  # pylint: disable=g-import-not-at-top
  order = _object_order(scene)

  def room(k):
    """The scene, or the scene without its smallest object other than k when it is full."""
    if scene.num_objects < max_objects:
      return scene
    smallest = [i for i in reversed(order) if i != k]
    return editing.remove(scene, smallest[0]) if smallest else scene

  attempts = {
      # Camera-frame offsets (x right, y down, z forward) in scene units (metres for MOVi).
      "translate": [lambda k, m=m: editing.translate(scene, k, (m, 0.0, 0.0), frame="camera")
                    for m in (1.0, -1.0, 0.5, -0.5)],
      "rotate": [lambda k, a=a: editing.rotate(scene, k, yaw=a) for a in (90.0, 45.0)],
      "rescale": [lambda k, f=f: editing.rescale(scene, k, f) for f in (1.5, 0.6)],
      "remove": [lambda k: editing.remove(scene, k)],
      "duplicate": [lambda k, m=m: editing.duplicate(room(k), k, (m, 0.0, 0.0), frame="camera")
                    for m in (1.5, -1.5, 1.0, -1.0)],
      "insert": [lambda k, j=j: editing.insert(room(None), other, j)
                 for j in (_object_order(other) if other is not None else [])],
      "background swap": ([lambda k: editing.replace_background(scene, other)]
                          if other is not None else []),
      "camera change": [lambda k, d=d: editing.orbit_camera(scene, d)
                        for d in (20.0, -20.0, 10.0, -10.0)],
  }
  per_object = {"translate", "rotate", "rescale", "remove", "duplicate"}
  edits = {}
  for name in EDIT_TYPES:
    note = "no valid variant" if attempts[name] else "needs a second scene"
    if name in per_object and not order:
      edits[name] = (None, None, "the scene has no valid object")
      continue
    found = None
    for k in (order if name in per_object else [None]):
      for attempt in attempts[name]:
        try:
          edit = attempt(k)
        except editing.EditError as e:
          note = str(e)
          continue
        if int(edit.active().sum()) > max_objects:
          note = f"{edit.name}: more objects than the model's {max_objects} slots"
          continue
        found = (edit, k)
        break
      if found:
        break
    edits[name] = (found[0], found[1], found[0].name) if found else (None, None, note)
  return edits


def edited_object_boxes(name: str, scene: Any, edit: Any, k: Optional[int]
                        ) -> tuple[np.ndarray, np.ndarray]:
  """([K, 4] boxes before, [K, 4] target boxes after) of what edit `name` changed: object k for
  the per-object edits, the added object (the edit's last asset) for duplicate / insert, every
  active object for background swap / camera change."""
  target = edit.target_boxes_2d()
  if name in ("duplicate", "insert"):
    source = scene.boxes_2d[k:k + 1] if (name == "duplicate" and k is not None) else np.zeros((0, 4))
    return source, target[-1:]
  if k is not None:
    return scene.boxes_2d[k:k + 1], target[k:k + 1]
  active = edit.active()
  return scene.boxes_2d, target[active] if active.any() else np.zeros((0, 4))


def run_edits(config: ml_collections.ConfigDict, restored: Restored,
              examples: Mapping[str, np.ndarray], num_scenes: int) -> list[report_lib.Grid]:
  """Each edit type of `neural_assets.editing` on the source frames of the first `num_scenes`
  examples (scene i+1 donates to scene i). Returns an overview grid and one grid per edit type.

  Every scene renders the same number of edits in one `editing.render` call (one compiled
  shape); an edit that no object allows is rendered as the reconstruction and shown grey.
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
    scenes.append(keep_largest_objects(editing.scene_from_video_record(
        record, int(examples["source_frame"][i]), resolution=tuple(config.data.resolution),
        resize_method=config.data.resize_method, min_depth=float(config.data.min_depth),
        min_projected_size=float(config.data.min_projected_size)), bundle.max_objects))
  per_type: dict[str, list[list[np.ndarray]]] = {name: [] for name in EDIT_TYPES}
  overview, notes = [], {name: [] for name in EDIT_TYPES}
  grey = np.full(scenes[0].image.shape, 128, np.uint8)
  for i in range(count):
    scene = scenes[i]
    other = scenes[(i + 1) % len(scenes)] if len(scenes) > 1 else None
    edits = make_edits(scene, other, bundle.max_objects)
    to_render = [scene] + [e if e is not None else scene for e, _, _ in edits.values()]
    images = editing.render(bundle, scene, *to_render, seed=int(config.eval.seed))[:, 0]
    recon = images[0]
    row = [report_lib.draw_boxes(scene.image, scene.boxes_2d), recon]
    for (name, (edit, k, note)), image in zip(edits.items(), images[1:]):
      notes[name].append(f"scene {i}: {note}")
      if edit is None:
        per_type[name].append([scene.image, recon, grey])
        row.append(grey)
        continue
      before, after = edited_object_boxes(name, scene, edit, k)
      per_type[name].append([
          report_lib.draw_boxes(scene.image, before, color=(255, 255, 0)),
          report_lib.draw_boxes(recon, before, color=(0, 160, 0)),
          report_lib.draw_boxes(image, after, color=(0, 160, 0))])
      row.append(image)
    overview.append(row)
  grids = [report_lib.Grid(
      "edits_overview", "All edits", report_lib.image_grid(overview),
      columns=("source + boxes", "reconstruction") + EDIT_TYPES,
      caption="One row per eval scene (its source frame); grey: no object allowed the edit.")]
  for name in EDIT_TYPES:
    grids.append(report_lib.Grid(
        "edit_" + name.replace(" ", "_"), f"Edit: {name}", report_lib.image_grid(per_type[name]),
        columns=("source (edited object boxed)", "before: render of the unedited scene",
                 "after: render of the edit"),
        caption=("Green: the edited object's box before and its target box after the edit "
                 "(every object's for background swap / camera change). " + " | ".join(
                     notes[name]))))
  return grids
