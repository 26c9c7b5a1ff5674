"""Ground truth of edits on held-out synthetic scenes: the generator renders what an edit describes.

Real scenes have no ground truth for "this object, moved 1 m left"; the synthetic generator
(`data_pipelines/synthetic.py`) does. The edit-fidelity benchmark (`benchmarks/edit_fidelity.py`)
and the trajectory benchmark (`benchmarks/trajectory_fidelity.py`) take held-out
scenes from here (`heldout_scenes`: videos of the generator's stream `seed`, never used for
training: the demo trains on seed 0 and evaluates on seed 1) and render the ground truth of
each edit with the generator's own ray caster (`synthetic.render_state`) from the same edited
3D state and camera (`render_ground_truth`):

- the edited state is the edit's assets (not the removed ones), each with the shape, size,
  texture and colours of the object of the video it was read from (`Asset.scene`, `Asset.index`
  -> that scene's instance id -> the generator's object) at the asset's edited world pose; the
  camera is the edit's target camera (world_to_camera, normalised intrinsics); the ground and sky
  colours are those of the video of the edit's background scene (a background swap = the donor's
  ground and sky, seen from this scene's camera);
- objects that are not in the `Scene` (not visible in its frame) are in neither the model's nor
  the ground truth's scene, so the unedited ground truth is the source frame (bit-identical:
  the edit's change of each pose is applied to the generator's exact float64 pose; the
  benchmark's JSON reports that PSNR as a check).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from data_pipelines import synthetic
from neural_assets import editing
from neural_assets import geometry

DEFAULT_SEED = 1000  # The held-out stream: the demo trains on seed 0 and evaluates on seed 1.

# (rgb [H, W, 3] uint8, asset index -> mask [H, W] bool) of an edit's ground truth.
GroundTruth = tuple[np.ndarray, dict[int, np.ndarray]]


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


def ground_truth_renderer(held: HeldOutScene, others: Sequence[HeldOutScene],
                          scene_config: synthetic.SceneConfig
                          ) -> Callable[[editing.Edit], GroundTruth]:
  """edit -> its ground truth (`render_ground_truth`), for edits of `held`'s scene whose donors
  are among `others`' scenes; each edit (by identity) rendered once."""
  resolution = held.scene.image.shape[:2]
  states = {id(held.scene): held.state, **{id(o.scene): o.state for o in others}}
  # id(edit) -> (edit, render): holding the edit keeps its id from being reused by a later
  # edit once the caller frees this one (a refused candidate, say).
  truth: dict[int, tuple[editing.Edit, GroundTruth]] = {}

  def ground_truth(edit):
    if id(edit) not in truth:
      truth[id(edit)] = (edit, render_ground_truth(edit, states, scene_config, resolution))
    return truth[id(edit)][1]

  return ground_truth
