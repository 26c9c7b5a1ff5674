r"""Edit fidelity against ground truth on held-out synthetic scenes.

The library half: `run(bundle, ...)` scores a model bundle (the demo calls `run_for_workdir`);
the command line is `benchmarks/edit_fidelity.py`:

  python -m benchmarks.edit_fidelity --checkpoint WORKDIR [--num_scenes 32] [--seed 1000] \
      [--out_dir DIR] [--lpips_weights pretrained|none|FILES] [--num_steps N] [--guidance G]

Real scenes have no ground truth for "this object, moved 1 m left"; the synthetic generator
(`data_pipelines/synthetic.py`) does. For each held-out scene (videos of the generator's stream
`--seed`, never used for training: the demo trains on seed 0 and evaluates on seed 1) this
runner applies every edit type of the editing API through its public functions
(`neural_assets.editing`): translate in the image plane and in depth, rotate (yaw), rescale,
remove, duplicate, insert an object of another held-out scene, background swap, camera move and
camera orbit (magnitudes: the constants below, tried in order until the editing API accepts
one and its ground truth differs from the unedited ground truth in at least
MIN_GROUND_TRUTH_CHANGE of the scored region's pixels). It renders each edit with the model (`editing.render`: DDIM + guidance, the same
noise for every edit of a scene) and renders the ground truth with the generator's own ray caster
(`synthetic.render_state`) from the same edited 3D state and camera:

- the edited state is the edit's assets (not the removed ones), each with the shape, size,
  texture and colours of the object of the video it was read from (`Asset.scene`, `Asset.index`
  -> that scene's instance id -> the generator's object) at the asset's edited world pose; the
  camera is the edit's target camera (world_to_camera, normalised intrinsics); the ground and sky
  colours are those of the video of the edit's background scene (a background swap = the donor's
  ground and sky, seen from this scene's camera);
- objects that are not in the `Scene` (not visible in its frame) are in neither the model's nor
  the ground truth's scene, so the unedited ground truth is the source frame (bit-identical:
  the edit's change of each pose is applied to the generator's exact float64 pose; the JSON
  reports that PSNR as a check).

Scores (per scene and edit type; means over scenes), each against the ground-truth render of the
edit:
- image level: PSNR (capped at PSNR_CAP dB, so identical images score the cap, not inf), SSIM
  and LPIPS (`--lpips_weights`, the installed pretrained AlexNet by default) on [0, 1] images;
- region level: the same three inside the union of the edited object's boxes before and after
  the edit (the boxes of its ground-truth masks in the unedited and edited renders; all objects
  for camera edits; the whole image for a background swap), as the smallest rectangle holding
  both, cropped and resized to `--crop_size` as the object-level metrics
  (`evaluation/object_regions.py`);
- localisation IoU. Choice: IoU between the edited object's ground-truth mask (its visible
  pixels in the ground-truth render of the edit; for `remove`, in the unedited render) and the
  pixels where the model's render WITH the object differs from its render WITHOUT it (same noise)
  by more than `--diff_threshold` in some colour channel (max over RGB of |difference|, [0, 1]); for `remove`,
  with = the unedited scene, without = the edit. Why: it asks the model itself where it drew the
  object, so it is independent of colour fidelity (a right-place, wrong-colour object still
  localises) and of the rest of the image; the generator has no shadows, so for the ground truth
  the same difference is exactly the object's visible silhouette (up to pixels whose colour
  matches what is behind within the threshold): a perfect model scores IoU 1. A background swap
  has no object: its localisation is the IoU of the pixels the swap changes (model: its render
  of the swap vs of the unedited scene; truth: the same pair of ground-truth renders).

Does an edit take effect? Per edit type, the paired differences model - `model, unedited` and
model - `source frame` over the same scenes in region PSNR, region LPIPS and localisation IoU,
each with a 95% bootstrap interval of the mean difference (scipy.stats.bootstrap, BCa, resampling
scenes, fixed seed; scenes where either score is NaN drop out of that pair). It takes effect when
both differences are better than zero at the lower end of the interval in region PSNR and IoU
(LPIPS is reported, not required: it is not scored without weights).

Methods in the same run, all scored against the same ground truth:
- `model`: the model's render of the edit;
- `model, unedited`: the model's render of the unedited scene (same noise): isolates whether the
  edit itself took effect. Its localisation = where it draws the object unedited (its render with
  vs without the object); nothing (IoU 0) for added objects, `remove` (it removes nothing) and
  a background swap (it changes nothing);
- `source frame`: the unedited source frame; localisation = the object's source-frame mask
  (nothing, as above, for added objects, `remove` and a background swap);
- `ground truth (ceiling)`: the generator's render itself through the same scoring: PSNR at the
  cap, SSIM 1, LPIPS 0, IoU ~1 (the tests check this exactly on a chosen scene).

Writes to `--out_dir` (default: CHECKPOINT/edit_fidelity, i.e. WORKDIR/edit_fidelity for a demo
workdir, which the demo report links): `edit_fidelity.json` (`takes_effect` {type: bool},
`differences` {type: {baseline: {metric: {mean, low, high, n, better, better_than_zero}}}},
`means` {type: {method: {metric: mean, scenes}}}, `per_scene` [{video, notes (the edit applied),
scores {type: {method: {metric}}}, ground_truth_change {type: fraction}}], settings (seeds,
magnitudes, bootstrap), machine and load), `table.md` (the verdict table with the intervals,
then the means, each row marked), `index.html` (the same) and one PNG grid per edit type
(`grid_<type>.png`: rows = scenes; columns source | ground truth | model | model, unedited |
localisation: green = ground-truth mask only, red = model only, yellow = both), and prints the
summary table. The JSON also goes to `--results_json` (benchmarks/results/ by default).
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import platform
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from data_pipelines import synthetic
from neural_assets import editing
from neural_assets import geometry
from neural_assets import inference

EDIT_TYPES = ("translate (image plane)", "translate (depth)", "rotate (yaw)", "rescale", "remove",
              "duplicate", "insert", "background swap", "camera move", "camera orbit")
METHODS = ("model", "model, unedited", "source frame", "ground truth (ceiling)")
METRICS = ("image/psnr", "image/ssim", "image/lpips", "region/psnr", "region/ssim",
           "region/lpips", "localisation/iou")
PSNR_CAP = 100.0
DEFAULT_SEED = 1000  # The held-out stream: the demo trains on seed 0 and evaluates on seed 1.
# 32 scenes per edit type: with the scenes' spread of region PSNR differences on the demo (~2-3
# dB), a 95% interval is about +-1 dB wide, enough to tell a 1 dB effect from zero; 4 were not.
DEFAULT_NUM_SCENES = 32
# An edit must change its ground truth visibly: at least this fraction of the scored region's
# pixels differs from the unedited ground truth (by more than `diff_threshold`, as in the
# localisation), else the next magnitude / object is tried (a 45-degree turn of a box can look
# the same). On the demo worlds the accepted edits change 20-90% (tests/test_edit_fidelity.py).
MIN_GROUND_TRUTH_CHANGE = 0.2
# Paired differences (model - baseline over the same scenes) with bootstrap intervals.
BASELINES = ("model, unedited", "source frame")
DIFFERENCE_METRICS = ("region/psnr", "region/lpips", "localisation/iou")
EFFECT_METRICS = ("region/psnr", "localisation/iou")  # Both > 0 vs both baselines: takes effect.
LOWER_IS_BETTER = ("image/lpips", "region/lpips")
FULL_IMAGE_BOX = np.array([0.0, 0.0, 1.0, 1.0], np.float32)  # a background swap's region.
CONFIDENCE = 0.95
NUM_DONORS = 3  # held-out scenes offered as the inserted object's / the background's source.
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
# Edit magnitudes, tried in order (with the objects by decreasing size) until the editing API
# accepts one and its ground truth changes by MIN_GROUND_TRUTH_CHANGE.
IMAGE_PLANE_OFFSETS = (1.0, -1.0, 0.6, -0.6)  # camera x, world units.
DEPTH_FACTORS = (0.6, 1.6, 0.75, 1.35)  # the object's new depth / its depth, along its ray
# (its image position stays; its apparent size changes by 1 / factor).
YAW_DEGREES = (90.0, -90.0, 45.0, 180.0)
RESCALE_FACTORS = (1.6, 0.6, 2.0, 0.5)
DUPLICATE_OFFSETS = (1.5, -1.5, 1.0, -1.0)  # camera x.
CAMERA_OFFSETS = ((1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0))
ORBIT_DEGREES = (20.0, -20.0, 30.0, -30.0)


# ------------------------------------------------------------------------------------------------
# Held-out scenes and their 3D states.


@dataclasses.dataclass(frozen=True, eq=False)
class HeldOutScene:
  """One held-out frame: the editing Scene and the generator's state of that frame."""
  scene: editing.Scene
  state: synthetic.SceneState  # Every object of the video (instance id = object index).
  video: int
  frame: int


def scene_config_for(config, **overrides) -> synthetic.SceneConfig:
  """The generator settings the model's data were made with: `config.synthetic` (the demo's
  section: object counts, frames, and `scene`, a dict of further SceneConfig fields) at the
  model's resolution."""
  section = dict(config.synthetic) if "synthetic" in config else {}
  fields = {k: section[k] for k in ("min_objects", "max_objects", "num_frames") if k in section}
  scene = section.get("scene") or {}
  scene = scene.to_dict() if hasattr(scene, "to_dict") else dict(scene)
  fields = {**{k: tuple(v) if isinstance(v, list) else v for k, v in scene.items()}, **fields}
  size = int(max(config.data.resolution))
  fields.update(height=size, width=size)
  fields.update({k: v for k, v in overrides.items() if v is not None})
  known = {f.name for f in dataclasses.fields(synthetic.SceneConfig)}
  unknown = set(fields) - known
  if unknown:
    raise ValueError(f"config.synthetic sets unknown SceneConfig fields {sorted(unknown)}.")
  return synthetic.SceneConfig(**fields)


def heldout_scenes(scene_config: synthetic.SceneConfig, seed: int, count: int,
                   resolution: Sequence[int], max_objects: int, resize_method: str = "area",
                   frame: Optional[int] = None, max_tries: int = 10) -> list[HeldOutScene]:
  """The first `count` videos of stream `seed` whose frame has 1..max_objects objects in view.

  Each video goes through the real path: `generate_example` -> `movi_e.example_to_video_record`
  (PNG frames) -> `editing.scene_from_video_record` at the model's resolution.
  """
  from data_pipelines import movi_e  # pylint: disable=g-import-not-at-top
  frame = scene_config.num_frames // 2 if frame is None else frame
  scenes = []
  for index in range(count * max_tries):
    if len(scenes) == count:
      break
    record = movi_e.example_to_video_record(synthetic.generate_example(seed, index, scene_config))
    scene = editing.scene_from_video_record(record, frame, resolution=tuple(resolution),
                                            resize_method=resize_method)
    if 1 <= scene.num_objects <= max_objects:
      scenes.append(HeldOutScene(scene, synthetic.state_at(seed, index, frame, scene_config),
                                 index, frame))
  if len(scenes) < count:
    raise ValueError(f"Only {len(scenes)} of {count * max_tries} held-out videos have 1.."
                     f"{max_objects} objects in view; lower --num_scenes.")
  return scenes


def ground_truth_state(edit: editing.Edit, states: Mapping[int, synthetic.SceneState]
                       ) -> tuple[synthetic.SceneState, dict[int, int]]:
  """The 3D state an edit describes.

  Args:
    edit: an Edit (or Scene) whose scenes all have a generator state in `states`.
    states: id(Scene) -> the generator's state of that scene's frame.

  Returns:
    (state, objects): the edited state (one object per asset not removed, in asset order) and
    asset index -> object index in it.
  """
  edit = editing.as_edit(edit)

  def state_of(scene_index: int) -> synthetic.SceneState:
    scene = edit.scenes[scene_index]
    if id(scene) not in states:
      raise KeyError(f"Scene {scene_index} of edit {edit.name!r} has no generator state.")
    return states[id(scene)]

  rows, objects = [], {}
  for a, asset in enumerate(edit.assets):
    if asset.removed:
      continue
    scene, state = edit.scenes[asset.scene], state_of(asset.scene)
    instance = int(scene.instance_ids[asset.index])
    match = np.flatnonzero(np.asarray(state.instance_ids) == instance)
    if match.size != 1:
      raise ValueError(f"Object {asset.index} of scene {asset.scene} (instance {instance}) is "
                       "not in that scene's generator state.")
    j = int(match[0])
    center, size, rotation = (np.asarray(x, np.float64) for x in (asset.center, asset.size,
                                                                  asset.rotation))
    if asset.scene == 0:
      # The Scene holds float32 copies of the generator's poses: apply the edit's change to the
      # generator's exact pose, so that what the edit left alone renders bit-identically.
      i = asset.index
      center = state.centers[j] + (center - scene.centers[i].astype(np.float64))
      size = state.sizes[j] * (size / scene.sizes[i].astype(np.float64))
      if np.array_equal(asset.rotation, scene.rotations[i]):
        rotation = np.asarray(state.rotations[j], np.float64)
      else:  # R_edit = R_delta @ R_scene -> R_delta @ R_generator.
        rotation = rotation @ scene.rotations[i].T.astype(np.float64) @ state.rotations[j]
    objects[a] = len(rows)
    rows.append((state, j, center, size, rotation))
  background = state_of(edit.background_scene)
  source, source_state = edit.scenes[0], state_of(0)
  cam_to_world = geometry.invert_pose(np.asarray(edit.world_to_camera, np.float64))
  intrinsics = np.asarray(edit.intrinsics, np.float64)
  if (np.array_equal(edit.world_to_camera, source.world_to_camera)
      and np.array_equal(edit.intrinsics, source.intrinsics)
      and np.allclose(source.intrinsics, source_state.intrinsics, atol=1e-6)):
    cam_to_world, intrinsics = source_state.cam_to_world, source_state.intrinsics

  def pick(name):
    if not rows:
      return np.zeros((0,) + np.shape(getattr(background, name))[1:])
    return np.stack([np.asarray(getattr(s, name))[j] for s, j, *_ in rows])

  state = synthetic.SceneState(
      shapes=pick("shapes").astype(np.int64), patterns=pick("patterns").astype(np.int64),
      colors=pick("colors"), instance_ids=pick("instance_ids").astype(np.int64),
      centers=np.asarray([r[2] for r in rows], np.float64).reshape(-1, 3),
      sizes=np.asarray([r[3] for r in rows], np.float64).reshape(-1, 3),
      rotations=np.asarray([r[4] for r in rows], np.float64).reshape(-1, 3, 3),
      ground=background.ground, sky=background.sky, cam_to_world=cam_to_world,
      intrinsics=intrinsics)
  return state, objects


def render_ground_truth(edit, states, scene_config: synthetic.SceneConfig,
                        resolution: Sequence[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """Ground-truth render of an edit: (rgb [H, W, 3] uint8, asset index -> mask [H, W] bool)."""
  state, objects = ground_truth_state(edit, states)
  out = synthetic.render_state(state, scene_config, tuple(resolution))
  return out["rgb"], {a: out["masks"][j] for a, j in objects.items()}


# ------------------------------------------------------------------------------------------------
# Edits.


@dataclasses.dataclass(frozen=True, eq=False)
class EditCase:
  """One edit type applied to one scene.

  Attributes:
    edit: the edit. obj: the edited asset (index into `with_edit.assets`; None: no object).
    with_edit / without_edit: the localisation pair (the object present / absent).
    in_unedited: the object exists in the unedited scene (False for added objects).
    region_assets: assets whose boxes before / after make the scored region (empty: none).
  """
  edit: editing.Edit
  obj: Optional[int]
  with_edit: Optional[editing.Edit]
  without_edit: Optional[editing.Edit]
  in_unedited: bool
  region_assets: tuple[int, ...]


def object_order(scene: editing.Scene) -> list[int]:
  """Objects by decreasing 2D box area: the biggest is the clearest to edit."""
  boxes = scene.boxes_2d
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  return [int(i) for i in np.argsort(-area, kind="stable")]


def make_cases(scene: editing.Scene, others: Sequence[editing.Scene], max_objects: int,
               accept: Optional[Callable[[str, "EditCase"], bool]] = None,
               unedited: Optional[editing.Edit] = None) -> dict[str, Optional[EditCase]]:
  """Every edit type on `scene` (`others` donate the inserted object and the background, tried
  in order; empty: insert and background swap get None).

  Each op is tried on the objects by decreasing 2D box size and the magnitudes above until the
  editing API accepts it (it refuses invalid boxes), it fits the model's slots (adding an object
  to a full scene first removes its smallest other object) and `accept(type, case)` (e.g. its
  ground truth changes visibly) holds. None: nothing was accepted. `unedited`: the caller's
  `as_edit(scene)`, so that `remove`'s localisation pair shares its render.
  """
  if isinstance(others, editing.Scene):
    others = [others]
  order = object_order(scene)
  unedited = editing.as_edit(scene) if unedited is None else unedited

  def room(k):
    if scene.num_objects < max_objects:
      return unedited
    smallest = [i for i in reversed(order) if i != k]
    return editing.remove(unedited, smallest[0]) if smallest else unedited

  def along_ray(k, factor):
    """Camera-frame offset moving object k's centre to `factor` x its depth along its ray."""
    center = scene.world_to_camera[:3, :3] @ scene.centers[k] + scene.world_to_camera[:3, 3]
    return tuple(float(c) for c in (factor - 1.0) * center)

  per_object = {
      "translate (image plane)": [lambda k, m=m: editing.translate(scene, k, (m, 0.0, 0.0),
                                                                   frame="camera")
                                  for m in IMAGE_PLANE_OFFSETS],
      "translate (depth)": [lambda k, f=f: editing.translate(scene, k, along_ray(k, f),
                                                             frame="camera")
                            for f in DEPTH_FACTORS],
      "rotate (yaw)": [lambda k, a=a: editing.rotate(scene, k, yaw=a) for a in YAW_DEGREES],
      "rescale": [lambda k, f=f: editing.rescale(scene, k, f) for f in RESCALE_FACTORS],
      "remove": [lambda k: editing.remove(scene, k)],
      "duplicate": [lambda k, m=m: editing.duplicate(room(k), k, (m, 0.0, 0.0), frame="camera")
                    for m in DUPLICATE_OFFSETS],
  }
  scene_level = {
      "insert": [lambda o=o, j=j: editing.insert(room(None), o, j)
                 for o in others for j in object_order(o)],
      "background swap": [lambda o=o: editing.replace_background(scene, o) for o in others],
      "camera move": [lambda o=o: editing.move_camera(scene, o) for o in CAMERA_OFFSETS],
      "camera orbit": [lambda d=d: editing.orbit_camera(scene, d) for d in ORBIT_DEGREES],
  }

  def fits(edit):
    return int(edit.active().sum()) <= max_objects

  def object_case(name, edit, k):
    if name == "remove":
      return EditCase(edit, k, unedited, edit, True, (k,))
    if name == "duplicate":
      new = len(edit.assets) - 1
      return EditCase(edit, new, edit, editing.remove(edit, new), False, (new,))
    return EditCase(edit, k, edit, editing.remove(edit, k), True, (k,))

  def scene_case(name, edit):
    if name == "insert":
      new = len(edit.assets) - 1
      return EditCase(edit, new, edit, editing.remove(edit, new), False, (new,))
    if name == "background swap":  # Localised as the pixels it changes (with vs unedited).
      return EditCase(edit, None, edit, unedited, False, ())
    # Camera edits: localise the largest object that stays valid; region = all.
    active = edit.active()
    k = next((i for i in order if active[i]), None)
    if k is None:
      return None
    return EditCase(edit, k, edit, editing.remove(edit, k), True,
                    tuple(int(i) for i in np.flatnonzero(active)))

  def attempts(name):
    if name in per_object:
      return [(attempt, k) for k in order for attempt in per_object[name]]
    return [(attempt, None) for attempt in scene_level[name]]

  cases: dict[str, Optional[EditCase]] = {}
  for name in EDIT_TYPES:
    found = None
    for attempt, k in attempts(name):
      try:
        edit = attempt(k) if k is not None else attempt()
      except editing.EditError:
        continue
      if not fits(edit):
        continue
      case = object_case(name, edit, k) if k is not None else scene_case(name, edit)
      if case is not None and (accept is None or accept(name, case)):
        found = case
        break
    cases[name] = found
  return cases


# ------------------------------------------------------------------------------------------------
# Scores.


def mask_box(mask: np.ndarray) -> Optional[np.ndarray]:
  """[H, W] bool -> normalised [y0, x0, y1, x1] of its pixels (pixel edges), None if empty."""
  ys, xs = np.nonzero(mask)
  if ys.size == 0:
    return None
  h, w = mask.shape
  return np.array([ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w],
                  np.float32)


def union_box(boxes: Sequence[Optional[np.ndarray]]) -> Optional[np.ndarray]:
  boxes = [b for b in boxes if b is not None]
  if not boxes:
    return None
  boxes = np.stack(boxes)
  return np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)])


def difference_mask(with_image: np.ndarray, without_image: np.ndarray,
                    threshold: float) -> np.ndarray:
  """[H, W] bool: max over RGB of |with - without| (in [0, 1]) above `threshold`."""
  diff = np.abs(with_image.astype(np.float32) - without_image.astype(np.float32)) / 255.0
  return diff.max(axis=-1) > threshold


def iou(predicted: Optional[np.ndarray], truth: np.ndarray) -> float:
  """IoU of two [H, W] bool masks (None = empty prediction); NaN when the truth is empty."""
  if not truth.any():
    return float("nan")
  if predicted is None:
    return 0.0
  return float((predicted & truth).sum() / (predicted | truth).sum())


class Scorer:
  """PSNR / SSIM / LPIPS of uint8 images and of box crops (jitted once per shape)."""

  def __init__(self, lpips_fn: Optional[Callable[[Any, Any], Any]] = None, crop_size: int = 64):
    import jax  # pylint: disable=g-import-not-at-top
    from neural_assets.evaluation import image_metrics  # pylint: disable=g-import-not-at-top
    from neural_assets.evaluation import object_regions  # pylint: disable=g-import-not-at-top
    self.lpips_fn, self.crop_size = lpips_fn, crop_size
    self._psnr = jax.jit(lambda x, y: image_metrics.psnr(x, y, 1.0))
    self._ssim = jax.jit(lambda x, y: image_metrics.ssim(x, y, 1.0))
    self._crop = jax.jit(lambda images, boxes: object_regions.crop_boxes(images, boxes,
                                                                          crop_size)[:, 0])

  def _scores(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """x, y: [B, H, W, 3] float in [0, 1] -> mean psnr (capped), ssim, lpips."""
    psnr = np.minimum(np.asarray(self._psnr(x, y), np.float64), PSNR_CAP)
    out = {"psnr": float(psnr.mean()), "ssim": float(np.asarray(self._ssim(x, y)).mean())}
    out["lpips"] = (float(np.asarray(self.lpips_fn(x, y)).mean()) if self.lpips_fn
                    else float("nan"))
    return out

  def image(self, pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return self._scores(pred[None] / 255.0, truth[None] / 255.0)

  def region(self, pred: np.ndarray, truth: np.ndarray,
             box: Optional[np.ndarray]) -> dict[str, float]:
    if box is None:
      return {"psnr": float("nan"), "ssim": float("nan"), "lpips": float("nan")}
    both = np.stack([pred, truth]).astype(np.float32) / 255.0
    crops = np.asarray(self._crop(both, np.broadcast_to(box, (2, 1, 4))))
    return self._scores(crops[:1], crops[1:])


def render_list(cases: Mapping[str, Optional[EditCase]], unedited: editing.Edit
                ) -> list[editing.Edit]:
  """Every distinct edit a scene needs rendered: unedited, each edit, each localisation pair,
  and the unedited scene without each localised object (the `model, unedited` baseline)."""
  edits, seen = [unedited], {id(unedited)}

  def add(e):
    if e is not None and id(e) not in seen:
      seen.add(id(e))
      edits.append(e)

  for case in cases.values():
    if case is None:
      continue
    add(case.edit)
    add(case.with_edit)
    add(case.without_edit)
  return edits


def _without_in_unedited(unedited, k, cache):
  if k not in cache:
    cache[k] = editing.remove(unedited, k)
  return cache[k]


def changed_fraction(edited: np.ndarray, unedited: np.ndarray, box: Optional[np.ndarray],
                     threshold: float) -> float:
  """Fraction of the pixels inside normalised `box` (None: 0) where two [H, W, 3] uint8 images
  differ (`difference_mask`)."""
  if box is None:
    return 0.0
  h, w = edited.shape[:2]
  y0, x0 = int(np.floor(box[0] * h)), int(np.floor(box[1] * w))
  y1, x1 = max(int(np.ceil(box[2] * h)), y0 + 1), max(int(np.ceil(box[3] * w)), x0 + 1)
  return float(difference_mask(edited[y0:y1, x0:x1], unedited[y0:y1, x0:x1], threshold).mean())


def score_scene(held: HeldOutScene, others, max_objects: int,
                render_model: Callable[[editing.Scene, Sequence[editing.Edit]], np.ndarray],
                scorer: Scorer, scene_config: synthetic.SceneConfig,
                diff_threshold: float = 0.1,
                min_change: float = MIN_GROUND_TRUTH_CHANGE) -> dict[str, Any]:
  """All edit types on one held-out scene, every method scored against the ground truth.

  Args:
    others: held-out scenes (or one) donating inserted objects and backgrounds, in order.
    render_model: (scene, edits) -> [E, H, W, 3] uint8 renders (the model; a test may pass the
      ground-truth renderer: a perfect model).
    min_change: an edit is used only if its ground truth differs from the unedited ground truth
      in at least this fraction of the scored region's pixels (`changed_fraction`).

  Returns:
    {'scores': {type: {method: {metric: value}}}, 'images': {type: [source, truth, model,
    unedited model, localisation overlay]}, 'notes': {type: edit name}, 'ground_truth_change':
    {type: changed fraction of its region}, 'unedited_psnr': PSNR of the unedited ground truth
    against the source frame}.
  """
  if isinstance(others, HeldOutScene):
    others = [others]
  scene = held.scene
  resolution = scene.image.shape[:2]
  states = {id(scene): held.state, **{id(o.scene): o.state for o in others}}
  truth: dict[int, tuple[np.ndarray, dict[int, np.ndarray]]] = {}

  def ground_truth(edit):
    if id(edit) not in truth:
      truth[id(edit)] = render_ground_truth(edit, states, scene_config, resolution)
    return truth[id(edit)]

  unedited = editing.as_edit(scene)
  u_img, u_masks = ground_truth(unedited)

  def region_of(case):
    """The scored region: the edited objects' ground-truth boxes before and after (the whole
    image for a background swap)."""
    if case.with_edit is not None and case.obj is None:
      return FULL_IMAGE_BOX
    gt_masks = ground_truth(case.edit)[1]
    return union_box([mask_box(m[a]) for m in (u_masks, gt_masks) for a in case.region_assets
                      if a in m])

  changes: dict[str, float] = {}

  def visible(name, case):
    changes[name] = changed_fraction(ground_truth(case.edit)[0], u_img, region_of(case),
                                     diff_threshold)
    return changes[name] >= min_change

  cases = make_cases(scene, [o.scene for o in others], max_objects, visible, unedited)
  no_k: dict[int, editing.Edit] = {}
  for case in cases.values():
    if case is not None and case.in_unedited and case.obj is not None:
      _without_in_unedited(unedited, case.obj, no_k)
  edits = render_list(cases, unedited) + list(no_k.values())
  model_images = dict(zip(map(id, edits), np.asarray(render_model(scene, edits))))
  scores, images, notes, kept_changes = {}, {}, {}, {}
  for name, case in cases.items():
    if case is None:
      notes[name] = "no variant accepted"
      continue
    notes[name] = case.edit.name
    kept_changes[name] = changes[name]
    gt_img = ground_truth(case.edit)[0]
    model_img, unedited_img = model_images[id(case.edit)], model_images[id(unedited)]
    region = region_of(case)
    loc = {method: float("nan") for method in METHODS}
    pred_mask = None
    if case.with_edit is not None:
      # Localisation: where the object is present (the `with` render) vs absent; for a
      # background swap, the pixels the swap changes.
      with_img, with_masks = ground_truth(case.with_edit)
      without_truth = ground_truth(case.without_edit)[0]
      gt_diff = difference_mask(with_img, without_truth, diff_threshold)
      gt_mask = (with_masks.get(case.obj, np.zeros(resolution, bool)) if case.obj is not None
                 else gt_diff)
      pred_mask = difference_mask(model_images[id(case.with_edit)],
                                  model_images[id(case.without_edit)], diff_threshold)
      loc["model"] = iou(pred_mask, gt_mask)
      loc["ground truth (ceiling)"] = iou(gt_diff, gt_mask)
      # The baselines leave the scene as it is: they localise the object where the unedited
      # scene has it, and nothing for a removal (`remove`: the edit is the `without` render).
      unedited_has = (case.obj is not None and case.in_unedited
                      and case.without_edit is not case.edit)
      loc["model, unedited"] = iou(
          difference_mask(unedited_img, model_images[id(no_k[case.obj])], diff_threshold)
          if unedited_has else None, gt_mask)
      loc["source frame"] = iou(u_masks.get(case.obj) if unedited_has else None, gt_mask)
    preds = {"model": model_img, "model, unedited": unedited_img, "source frame": scene.image,
             "ground truth (ceiling)": gt_img}
    scores[name] = {}
    for method, pred in preds.items():
      s = {f"image/{k}": v for k, v in scorer.image(pred, gt_img).items()}
      s.update({f"region/{k}": v for k, v in scorer.region(pred, gt_img, region).items()})
      s["localisation/iou"] = loc[method]
      scores[name][method] = s
    overlay = np.zeros(resolution + (3,), np.uint8)
    if pred_mask is not None:
      overlay[..., 1] = np.where(gt_mask, 255, 0)
      overlay[..., 0] = np.where(pred_mask, 255, 0)
    images[name] = [_draw_region(scene.image, region), gt_img, model_img, unedited_img, overlay]
  check = scorer.image(u_img, scene.image)["psnr"]
  return {"scores": scores, "images": images, "notes": notes,
          "ground_truth_change": kept_changes, "unedited_psnr": check}


def _draw_region(image, box):
  from neural_assets import report as report_lib  # pylint: disable=g-import-not-at-top
  if box is None:
    return image
  return report_lib.to_uint8(report_lib.draw_boxes(image, box[None], color=(255, 255, 0)))


def aggregate(per_scene: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
  """Mean (ignoring NaN) and count of every metric over the scenes: {type: {method: {...}}}."""
  out = {}
  for name in EDIT_TYPES:
    out[name] = {}
    for method in METHODS:
      values = {m: [s["scores"][name][method][m] for s in per_scene if name in s["scores"]]
                for m in METRICS}
      row = {}
      for m, v in values.items():
        v = np.asarray(v, np.float64)
        finite = v[~np.isnan(v)]
        row[m] = float(finite.mean()) if finite.size else None
      row["scenes"] = int(sum(name in s["scores"] for s in per_scene))
      out[name][method] = row
  return out


def _fmt(value, metric):
  if value is None:
    return "n/a"
  return f"{value:.2f}" if "psnr" in metric else f"{value:.3f}"


def format_table(means: Mapping[str, Any], methods: Sequence[str] = METHODS,
                 effects: Optional[Mapping[str, bool]] = None) -> str:
  """Markdown table: one row per (edit type, method); with `effects`, each row says whether its
  edit type takes effect."""
  marks = ["takes effect"] if effects is not None else []
  header = "| edit | " + " | ".join(marks + ["method", "scenes"] + list(METRICS)) + " |"
  lines = [header, "|" + "---|" * (len(METRICS) + 3 + len(marks))]
  for name, by_method in means.items():
    mark = [("YES" if effects[name] else "no")] if effects is not None else []
    for method in methods:
      row = by_method[method]
      lines.append(f"| {name} | " + " | ".join(mark + [method, str(row["scenes"])]) + " | "
                   + " | ".join(_fmt(row[m], m) for m in METRICS) + " |")
  return "\n".join(lines)


def summary(means: Mapping[str, Any], method: str = "model") -> dict[str, Optional[float]]:
  """Mean over edit types of each metric of one method (NaN / n/a types skipped)."""
  out = {}
  for m in METRICS:
    v = [means[name][method][m] for name in means if means[name][method][m] is not None]
    out[m] = float(np.mean(v)) if v else None
  return out


# ------------------------------------------------------------------------------------------------
# Paired differences and whether an edit takes effect.


def bootstrap_interval(values: np.ndarray, confidence: float = CONFIDENCE,
                       n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                       ) -> tuple[Optional[float], Optional[float]]:
  """Bootstrap confidence interval of the mean of [n] paired differences (BCa; percentile where
  BCa is undefined). (None, None) for n < 2; (x, x) when every difference is x."""
  values = np.asarray(values, np.float64)
  if values.size < 2:
    return None, None
  if np.ptp(values) == 0:
    return float(values[0]), float(values[0])
  from scipy import stats  # pylint: disable=g-import-not-at-top
  for method in ("BCa", "percentile"):
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence,
                             n_resamples=n_resamples, method=method,
                             random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    if np.isfinite(low) and np.isfinite(high):
      return float(low), float(high)
  return None, None


def paired_differences(per_scene: Sequence[Mapping[str, Any]], confidence: float = CONFIDENCE,
                       n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                       ) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
  """Per edit type, baseline and metric: model - baseline over the scenes where both are finite.

  Returns:
    {type: {baseline: {metric: {'mean', 'low', 'high' (the interval; None for n < 2), 'n',
    'better': 'higher' | 'lower', 'better_than_zero': the whole interval on the better side}}}}.
  """
  out = {}
  for name in EDIT_TYPES:
    rows = [s["scores"][name] for s in per_scene if name in s["scores"]]
    out[name] = {}
    for baseline in BASELINES:
      out[name][baseline] = {}
      for metric in DIFFERENCE_METRICS:
        pairs = np.array([(r["model"][metric], r[baseline][metric]) for r in rows],
                         np.float64).reshape(-1, 2)
        pairs = pairs[np.isfinite(pairs).all(axis=1)]
        diff = pairs[:, 0] - pairs[:, 1]
        low, high = bootstrap_interval(diff, confidence, n_resamples, seed)
        lower = metric in LOWER_IS_BETTER
        better = low is not None and (high < 0 if lower else low > 0)
        out[name][baseline][metric] = {
            "mean": float(diff.mean()) if diff.size else None, "low": low, "high": high,
            "n": int(diff.size), "better": "lower" if lower else "higher",
            "better_than_zero": bool(better)}
  return out


def takes_effect(differences: Mapping[str, Any]) -> dict[str, bool]:
  """An edit type takes effect when the model beats both baselines at the lower end of the
  interval in every EFFECT_METRICS metric (region PSNR and localisation IoU)."""
  return {name: all(by_baseline[b][m]["better_than_zero"] for b in BASELINES
                    for m in EFFECT_METRICS)
          for name, by_baseline in differences.items()}


def format_difference(d: Mapping[str, Any], metric: str) -> str:
  if d["mean"] is None:
    return "n/a"
  digits = 2 if "psnr" in metric else 3
  mark = "*" if d["better_than_zero"] else ""
  if d["low"] is None:
    return f"{d['mean']:+.{digits}f} (n={d['n']})"
  return f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]{mark}"


def _effect_columns() -> list[str]:
  return [f"{metric} vs {baseline}" for baseline in BASELINES for metric in DIFFERENCE_METRICS]


def _effect_cells(by_baseline: Mapping[str, Any]) -> list[str]:
  return [format_difference(by_baseline[b][m], m) for b in BASELINES for m in DIFFERENCE_METRICS]


def format_effects(differences: Mapping[str, Any], effects: Mapping[str, bool]) -> str:
  """Markdown table: per edit type, whether it takes effect and model - baseline with its
  interval (* = the whole interval on the better side of zero)."""
  columns = _effect_columns()
  lines = ["| edit | takes effect | scenes | " + " | ".join(columns) + " |",
           "|" + "---|" * (len(columns) + 3)]
  for name, by_baseline in differences.items():
    n = max(d["n"] for b in by_baseline.values() for d in b.values())
    lines.append(f"| {name} | {'YES' if effects[name] else 'no'} | {n} | "
                 + " | ".join(_effect_cells(by_baseline)) + " |")
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The run.


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


def default_out_dir(checkpoint: str) -> str:
  """CHECKPOINT/edit_fidelity for a (demo or training) workdir; beside `checkpoints/` else."""
  path = os.path.abspath(os.path.expanduser(checkpoint))
  while os.path.basename(path).isdigit() or os.path.basename(path) in ("checkpoints", "train"):
    if os.path.basename(path) == "train" and not os.path.isdir(os.path.join(path, "checkpoints")):
      break
    path = os.path.dirname(path)
  return os.path.join(path, "edit_fidelity")


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
  scene_config = scene_config_for(config, **dict(scene_overrides or {}))
  pool = num_scenes + min(NUM_DONORS, num_scenes)
  scenes = heldout_scenes(scene_config, seed, pool, resolution, bundle.max_objects,
                          resize_method=config.data.get("resize_method", "area"))
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


def write_outputs(out_dir: str, report: Mapping[str, Any], per_scene) -> None:
  from neural_assets import report as report_lib  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "edit_fidelity.json"), "w") as f:
    json.dump(report, f, indent=2, default=str)
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(format_report_tables(report) + "\n")
  grids = []
  for name in EDIT_TYPES:
    rows = [s["images"][name] for s in per_scene if name in s["images"]]
    if not rows:
      continue
    path = f"grid_{name.replace(' ', '_').replace('(', '').replace(')', '')}.png"
    report_lib.write_png(report_lib.image_grid(rows), os.path.join(out_dir, path), scale=2)
    grids.append((name, path))
  columns = ("source (scored region boxed)", "ground truth", "model", "model, unedited",
             "localisation: green = truth only, red = model only, yellow = both")
  body = [f"<h1>Edit fidelity {html.escape(report.get('label') or '')}</h1>",
          f"<p>Checkpoint step {report['checkpoint_step']}; {report['settings']['num_scenes']} "
          f"held-out scenes (seed {report['settings']['held_out_seed']}); "
          f"{html.escape(report['machine'])}, load {report['load_1min_start_end']}, "
          f"{report['seconds']} s. Module docstring of "
          "neural_assets/evaluation/edit_fidelity.py: how each score is defined.</p>",
          "<h2>Does each edit take effect?</h2>", f"<p>{html.escape(EFFECTS_CAPTION)}</p>",
          _effects_html(report["differences"], report["takes_effect"]),
          "<h2>Means</h2>", _table_html(report["means"], report["takes_effect"])]
  for name, path in grids:
    body.append(f"<h2>{html.escape(name)}</h2><p>{' | '.join(map(html.escape, columns))}</p>"
                f"<img src='{path}' alt='{html.escape(name)}'>")
  with open(os.path.join(out_dir, "index.html"), "w") as f:
    f.write("<!doctype html><meta charset='utf-8'><title>Edit fidelity</title>"
            "<style>td,th{padding:2px 6px;border:1px solid #ccc}table{border-collapse:collapse}"
            "</style>" + "\n".join(body))


def _table_html(means, effects: Optional[Mapping[str, bool]] = None) -> str:
  marks = "<th>takes effect</th>" if effects is not None else ""
  rows = [f"<table><tr><th>edit</th>{marks}<th>method</th><th>scenes</th>"
          + "".join(f"<th>{m}</th>" for m in METRICS) + "</tr>"]
  for name, by_method in means.items():
    mark = (f"<td>{'YES' if effects[name] else 'no'}</td>" if effects is not None else "")
    for method in METHODS:
      row = by_method[method]
      rows.append(f"<tr><td>{html.escape(name)}</td>{mark}<td>{html.escape(method)}</td>"
                  f"<td>{row['scenes']}</td>"
                  + "".join(f"<td>{_fmt(row[m], m)}</td>" for m in METRICS) + "</tr>")
  return "".join(rows) + "</table>"


def _effects_html(differences, effects) -> str:
  rows = ["<table><tr><th>edit</th><th>takes effect</th><th>scenes</th>"
          + "".join(f"<th>{html.escape(c)}</th>" for c in _effect_columns()) + "</tr>"]
  for name, by_baseline in differences.items():
    n = max(d["n"] for b in by_baseline.values() for d in b.values())
    style = " style='background:#cfc'" if effects[name] else ""
    rows.append(f"<tr{style}><td>{html.escape(name)}</td>"
                f"<td>{'YES' if effects[name] else 'no'}</td><td>{n}</td>"
                + "".join(f"<td>{html.escape(c)}</td>" for c in _effect_cells(by_baseline))
                + "</tr>")
  return "".join(rows) + "</table>"


EFFECTS_CAPTION = (
    "Paired differences model - baseline over the same held-out scenes, mean [95% bootstrap "
    "interval] (* = the whole interval on the better side of zero: higher PSNR / IoU, lower "
    "LPIPS). An edit type takes effect when the model beats both its unedited render and the "
    "source frame in region PSNR and localisation IoU at the lower end of the interval.")


def format_report_tables(report: Mapping[str, Any]) -> str:
  """The text tables of a run: whether each edit takes effect (intervals), then the means."""
  return (f"{EFFECTS_CAPTION}\n\n"
          + format_effects(report["differences"], report["takes_effect"])
          + "\n\nMeans per edit type and method:\n\n"
          + format_table(report["means"], effects=report["takes_effect"]))
