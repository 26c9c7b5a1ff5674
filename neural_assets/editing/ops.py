"""Edits: what to render (`Edit`, `Asset`) and the pure edit operations on them.

An `Edit` says what to render: a list of `Asset`s (appearance = object `index` of scene `scene`,
pose = a 3D box in the edited scene's world frame), which scene gives the background token, and
the target camera. Edit operations are pure functions `op(scene_or_edit, ...) -> Edit`, so they
chain: `rotate(translate(scene, 0, (0.5, 0, 0)), 1, yaw=90)`. Object indices refer to
`edit.assets` and stay stable: `remove` only masks an asset, `duplicate` and `insert` append.
A move that would put an object behind the camera or fully off-screen raises `EditError` (the
reason comes from `geometry.box_validity`) unless `allow_invalid=True`; such objects are then
left out of the conditioning when rendering (the model never saw invalid boxes in training).
No model is involved: everything here is geometry, cheap enough to run on every UI change.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Union

import numpy as np

from neural_assets import geometry
from neural_assets.editing.scene import Scene
from neural_assets.editing.scene import check_rotations
from neural_assets.editing.scene import read_npz

EDIT_FORMAT_VERSION = 1
FRAMES = ("world", "camera")
# Own-axis indices (x=0, y=1, z=2) that yaw, pitch and roll turn about by default: yaw about the
# object's z, the up axis of Kubric / MOVi and Waymo boxes (Objectron boxes are y-up: pass
# axes=(1, 0, 2) there).
DEFAULT_ROTATION_AXES = (2, 1, 0)
# The same for the camera (OpenCV frame): yaw pans about the camera's y (down) axis, pitch tilts
# about x, roll turns about the optical axis z.
CAMERA_ROTATION_AXES = (1, 0, 2)

_REASON_TEXT = {
    geometry.BoxStatus.DEGENERATE: "degenerate (non-finite coordinates or a non-positive size)",
    geometry.BoxStatus.BEHIND_CAMERA: "behind the camera (a corner has depth <= min_depth)",
    geometry.BoxStatus.OFF_SCREEN: "fully off-screen",
    geometry.BoxStatus.TOO_SMALL: "too small on screen (below min_projected_size)",
}


class EditError(ValueError):
  """An edit that cannot be applied (bad object index, invalid resulting box, ...)."""


# How the API spells the override of a refusal; front ends (CLI, app) pass their own spelling to
# `EditRefused.message`.
API_OVERRIDE = "Pass allow_invalid=True to apply it anyway"


class EditRefused(EditError):
  """An edit refused because an object's resulting box would be invalid (behind the camera,
  off-screen, ...). `step` names the edit, `problems` says which object would be what."""

  def __init__(self, step: str, problems: Sequence[str]):
    self.step, self.problems = step, tuple(problems)
    super().__init__(self.message())

  def message(self, override: str = API_OVERRIDE) -> str:
    """The refusal, with `override` saying how to force it in the caller's own terms."""
    return (f"Edit {self.step!r} refused: {'; '.join(self.problems)}. {override} (such objects "
            "are then left out of the render).")



@dataclasses.dataclass(frozen=True, eq=False)
class Asset:
  """One object to render: appearance from `scenes[scene]` object `index`, pose in world frame.

  Attributes:
    scene: index into `Edit.scenes` (0 = the edited scene).
    index: object index within that scene (its 2D box gives the appearance).
    center: [3] world-frame box centre (of the edited scene's world).
    size: [3] full extents (> 0).
    rotation: [3, 3] box-to-world rotation.
    instance_id: int (duplicates and inserted objects get fresh ids).
    removed: True once removed: the slot is masked (all-zero tokens).
  """
  scene: int
  index: int
  center: np.ndarray
  size: np.ndarray
  rotation: np.ndarray
  instance_id: int
  removed: bool = False

  def corners_world(self) -> np.ndarray:
    """[8, 3]."""
    return geometry.box_corners(self.center, self.size, self.rotation).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Edit:
  """What to render: assets (target poses), background source and target camera.

  Attributes:
    scenes: (edited scene, donor scenes...): `scenes[0]` gives the source image; donors give
      inserted objects' appearance or the background.
    assets: one per object slot, in order (see `Asset`).
    world_to_camera: [4, 4] target camera (OpenCV).
    intrinsics: [3, 3] target normalised intrinsics.
    background_scene: index into `scenes` of the scene whose background token is used.
    min_depth, min_projected_size: the validity rule of `geometry.box_validity` for edits.
    steps: human-readable description of every edit applied, in order.
  """
  scenes: tuple[Scene, ...]
  assets: tuple[Asset, ...]
  world_to_camera: np.ndarray
  intrinsics: np.ndarray
  background_scene: int = 0
  min_depth: float = 1e-2
  min_projected_size: float = 0.0
  steps: tuple[str, ...] = ()

  @property
  def source(self) -> Scene:
    return self.scenes[0]

  @property
  def name(self) -> str:
    return "; ".join(self.steps) if self.steps else "reconstruction"

  def corners_world(self) -> np.ndarray:
    """[M, 8, 3] world corners of all assets (removed ones too)."""
    if not self.assets:
      return np.zeros((0, 8, 3), np.float32)
    return np.stack([a.corners_world() for a in self.assets])

  def target_corners(self) -> np.ndarray:
    """[M, 8, 3] (u, v, depth) of every asset's corners in the target camera."""
    return geometry.project_box(self.corners_world(), self.world_to_camera,
                                self.intrinsics).astype(np.float32)

  def validity(self) -> tuple[np.ndarray, np.ndarray]:
    """(valid [M] bool, reason [M] int32 `geometry.BoxStatus`) of the projected target boxes."""
    sizes = (np.stack([a.size for a in self.assets]) if self.assets
             else np.zeros((0, 3), np.float32))
    valid, reason = geometry.box_validity(self.target_corners(), self.min_depth,
                                          self.min_projected_size, sizes)
    return np.asarray(valid), np.asarray(reason)

  def target_boxes_2d(self) -> np.ndarray:
    """[M, 4] 2D boxes (normalised, clipped) of the projected target boxes (for drawing)."""
    return geometry.box2d_from_corners(self.target_corners()).astype(np.float32)

  def active(self) -> np.ndarray:
    """[M] bool: assets that condition the render (not removed, valid target box)."""
    removed = np.array([a.removed for a in self.assets], bool)
    return ~removed & self.validity()[0]

  def save(self, path: str) -> None:
    """Writes the edit (its scenes, assets, camera, background choice) to one `.npz` file.

    `python -m neural_assets.edit_cli --scene FILE` and `load_scene_or_edit` read it back; further
    edits apply on top. Arrays: `scene<i>_<name>` per scene (`Scene.arrays`), `asset_*` [M, ...]
    per asset, `world_to_camera`, `intrinsics`, `background_scene`, `min_depth`,
    `min_projected_size`, `steps` (strings), `kind` = "edit", `format_version`.
    """
    m = len(self.assets)
    arrays = {}
    for i, scene in enumerate(self.scenes):
      arrays.update(scene.arrays(f"scene{i}_"))
    arrays.update(
        format_version=np.int32(EDIT_FORMAT_VERSION), kind=np.str_("edit"),
        num_scenes=np.int32(len(self.scenes)),
        asset_scene=np.array([a.scene for a in self.assets], np.int32).reshape(m),
        asset_index=np.array([a.index for a in self.assets], np.int32).reshape(m),
        asset_center=np.array([a.center for a in self.assets], np.float32).reshape(m, 3),
        asset_size=np.array([a.size for a in self.assets], np.float32).reshape(m, 3),
        asset_rotation=np.array([a.rotation for a in self.assets], np.float32).reshape(m, 3, 3),
        asset_instance_id=np.array([a.instance_id for a in self.assets], np.int32).reshape(m),
        asset_removed=np.array([a.removed for a in self.assets], bool).reshape(m),
        world_to_camera=np.asarray(self.world_to_camera, np.float32),
        intrinsics=np.asarray(self.intrinsics, np.float32),
        background_scene=np.int32(self.background_scene),
        min_depth=np.float32(self.min_depth),
        min_projected_size=np.float32(self.min_projected_size),
        steps=np.array(list(self.steps), dtype=np.str_).reshape(len(self.steps)))
    with open(path, "wb") as f:
      np.savez(f, **arrays)

  @classmethod
  def load(cls, path: str) -> "Edit":
    """Reads an edit written by `save`. Raises ValueError on a file that is not one."""
    arrays = read_npz(path, "edit")
    if str(arrays.get("kind", "")) != "edit":
      raise ValueError(f"{path} is not an edit file (no kind='edit'); a scene file is read by "
                       "Scene.load, either by load_scene_or_edit.")
    version = int(arrays["format_version"])
    if version != EDIT_FORMAT_VERSION:
      raise ValueError(f"{path} has edit format version {version}; this code reads "
                       f"{EDIT_FORMAT_VERSION}.")
    scenes = tuple(Scene.from_arrays(arrays, f"scene{i}_", path)
                   for i in range(int(arrays["num_scenes"])))
    assets = []
    for k in range(arrays["asset_scene"].shape[0]):
      scene_id, index = int(arrays["asset_scene"][k]), int(arrays["asset_index"][k])
      if not (0 <= scene_id < len(scenes) and 0 <= index < scenes[scene_id].num_objects):
        raise ValueError(f"{path}: asset {k} refers to object {index} of scene {scene_id}, "
                         "which the file does not hold.")
      assets.append(Asset(scene=scene_id, index=index, center=arrays["asset_center"][k],
                          size=arrays["asset_size"][k], rotation=arrays["asset_rotation"][k],
                          instance_id=int(arrays["asset_instance_id"][k]),
                          removed=bool(arrays["asset_removed"][k])))
    background = int(arrays["background_scene"])
    if not 0 <= background < len(scenes):
      raise ValueError(f"{path}: background scene {background} is not in the file.")
    return cls(scenes=scenes, assets=tuple(assets), world_to_camera=arrays["world_to_camera"],
               intrinsics=arrays["intrinsics"], background_scene=background,
               min_depth=float(arrays["min_depth"]),
               min_projected_size=float(arrays["min_projected_size"]),
               steps=tuple(str(x) for x in arrays["steps"]))


def load_scene_or_edit(path: str) -> Union[Scene, Edit]:
  """A `.npz` written by `Scene.save` or by `Edit.save` (the app's "edited scene" download)."""
  arrays = read_npz(path, "scene or edit")
  return Edit.load(path) if "kind" in arrays else Scene.load(path)


def as_edit(target: Union[Scene, Edit], min_depth: float = 1e-2,
            min_projected_size: float = 0.0) -> Edit:
  """A Scene -> its identity edit (renders a reconstruction); an Edit is returned unchanged."""
  if isinstance(target, Edit):
    return target
  if not isinstance(target, Scene):
    raise TypeError(f"Expected a Scene or an Edit, got {type(target).__name__}.")
  assets = tuple(Asset(scene=0, index=i, center=target.centers[i], size=target.sizes[i],
                       rotation=target.rotations[i], instance_id=int(target.instance_ids[i]))
                 for i in range(target.num_objects))
  return Edit(scenes=(target,), assets=assets, world_to_camera=target.world_to_camera,
              intrinsics=target.intrinsics, min_depth=min_depth,
              min_projected_size=min_projected_size)


def _asset(edit: Edit, index: int) -> Asset:
  if not 0 <= index < len(edit.assets):
    raise EditError(f"No object {index}: the scene has objects 0..{len(edit.assets) - 1}.")
  asset = edit.assets[index]
  if asset.removed:
    raise EditError(f"Object {index} was removed by an earlier edit.")
  return asset


def _check_valid(edit: Edit, indices: Sequence[int], what: str, allow_invalid: bool) -> Edit:
  """Returns `edit` unless one of `indices` has an invalid target box (then EditRefused)."""
  if allow_invalid or not indices:
    return edit
  _, reason = edit.validity()
  problems = [f"object {i} would be {_REASON_TEXT[geometry.BoxStatus(int(reason[i]))]}"
              for i in indices if reason[i] != geometry.BoxStatus.OK]
  if problems:
    raise EditRefused(what, problems)
  return edit


def _replace_asset(edit: Edit, index: int, asset: Asset, step: str) -> Edit:
  assets = edit.assets[:index] + (asset,) + edit.assets[index + 1:]
  return dataclasses.replace(edit, assets=assets, steps=edit.steps + (step,))


def _axis_rotation(axis: int, degrees: float) -> np.ndarray:
  """[3, 3] rotation by `degrees` about coordinate axis `axis` (right-handed)."""
  a = np.deg2rad(degrees)
  c, s = np.cos(a), np.sin(a)
  i, j = (axis + 1) % 3, (axis + 2) % 3  # Cyclic order keeps the rotation right-handed.
  m = np.eye(3)
  m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
  return m


def euler_rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                   axes: Sequence[int] = DEFAULT_ROTATION_AXES) -> np.ndarray:
  """[3, 3] R_yaw @ R_pitch @ R_roll (intrinsic yaw, then pitch, then roll), angles in degrees.

  `axes` = the axis indices (0=x, 1=y, 2=z) that yaw, pitch and roll turn about.
  """
  if sorted(axes) != [0, 1, 2]:
    raise ValueError(f"axes must be a permutation of (0, 1, 2), got {tuple(axes)}.")
  return (_axis_rotation(axes[0], yaw) @ _axis_rotation(axes[1], pitch)
          @ _axis_rotation(axes[2], roll)).astype(np.float32)


def _world_offset(edit: Edit, offset, frame: str) -> np.ndarray:
  offset = np.asarray(offset, np.float32)
  if offset.shape != (3,) or not np.all(np.isfinite(offset)):
    raise EditError(f"offset must be 3 finite numbers (x, y, z), got {offset!r}.")
  if frame not in FRAMES:
    raise EditError(f"frame must be one of {FRAMES}, got {frame!r}.")
  if frame == "camera":
    # A camera-axis offset in world coordinates: camera-to-world rotation = R_w2c^T.
    offset = edit.world_to_camera[:3, :3].T @ offset
  return offset.astype(np.float32)


def translate(target: Union[Scene, Edit], index: int, offset: Sequence[float],
              frame: str = "world", allow_invalid: bool = False) -> Edit:
  """Moves object `index` by `offset` (x, y, z) along the world axes or the target camera's axes
  (frame='camera': x right, y down, z forward, OpenCV)."""
  edit = as_edit(target)
  asset = _asset(edit, index)
  delta = _world_offset(edit, offset, frame)
  new = dataclasses.replace(asset, center=(asset.center + delta).astype(np.float32))
  step = f"translate {index} by {np.round(np.asarray(offset, float), 3).tolist()} ({frame})"
  return _check_valid(_replace_asset(edit, index, new, step), [index], step, allow_invalid)


def rotate(target: Union[Scene, Edit], index: int, yaw: float = 0.0, pitch: float = 0.0,
           roll: float = 0.0, axes: Sequence[int] = DEFAULT_ROTATION_AXES,
           allow_invalid: bool = False) -> Edit:
  """Turns object `index` about its own axes and centre by yaw, pitch, roll (degrees).

  The new box-to-world rotation is R @ R_yaw @ R_pitch @ R_roll with the angles about the
  object's own axes `axes` (default: yaw about own z, pitch about y, roll about x).
  """
  edit = as_edit(target)
  asset = _asset(edit, index)
  rotation = asset.rotation @ euler_rotation(yaw, pitch, roll, axes)
  new = dataclasses.replace(asset, rotation=rotation.astype(np.float32))
  step = f"rotate {index} yaw={yaw:g} pitch={pitch:g} roll={roll:g}"
  return _check_valid(_replace_asset(edit, index, new, step), [index], step, allow_invalid)


def rescale(target: Union[Scene, Edit], index: int, factor: Union[float, Sequence[float]],
            allow_invalid: bool = False) -> Edit:
  """Scales object `index` about its centre by `factor` (one number, or one per own axis)."""
  edit = as_edit(target)
  asset = _asset(edit, index)
  factor = np.broadcast_to(np.asarray(factor, np.float32), (3,))
  if not np.all(np.isfinite(factor)) or np.any(factor <= 0):
    raise EditError(f"rescale factor must be positive and finite, got {factor.tolist()}.")
  new = dataclasses.replace(asset, size=(asset.size * factor).astype(np.float32))
  step = f"rescale {index} by {np.round(factor.astype(float), 3).tolist()}"
  return _check_valid(_replace_asset(edit, index, new, step), [index], step, allow_invalid)


def remove(target: Union[Scene, Edit], index: int) -> Edit:
  """Removes object `index`: its slot is masked (all-zero tokens); indices do not shift."""
  edit = as_edit(target)
  asset = _asset(edit, index)
  return _replace_asset(edit, index, dataclasses.replace(asset, removed=True), f"remove {index}")


def _next_instance_id(edit: Edit) -> int:
  return max([a.instance_id for a in edit.assets] + [-1]) + 1


def _pose_overrides(base: Asset, edit: Edit, offset, frame, center, size,
                    rotation) -> dict[str, np.ndarray]:
  center = base.center if center is None else np.asarray(center, np.float32)
  size = base.size if size is None else np.asarray(size, np.float32)
  rotation = base.rotation if rotation is None else np.asarray(rotation, np.float32)
  if center.shape != (3,) or size.shape != (3,) or rotation.shape != (3, 3):
    raise EditError(f"center / size must be [3] and rotation [3, 3], got {center.shape}, "
                    f"{size.shape}, {rotation.shape}.")
  if np.any(size <= 0) or not np.all(np.isfinite(size)):
    raise EditError(f"size must be positive and finite, got {size.tolist()}.")
  try:
    check_rotations(rotation, "rotation")
  except ValueError as e:
    raise EditError(str(e)) from e
  center = center + _world_offset(edit, offset, frame)
  return dict(center=center.astype(np.float32), size=size.astype(np.float32),
              rotation=rotation.astype(np.float32))


def duplicate(target: Union[Scene, Edit], index: int, offset: Sequence[float] = (0.0, 0.0, 0.0),
              frame: str = "world", center=None, size=None, rotation=None,
              allow_invalid: bool = False) -> Edit:
  """Adds a copy of object `index` (same appearance, same box) at a new pose; it is appended, so
  its index is `len(edit.assets)`. The pose is the original's (or `center` / `size` / `rotation`
  when given) moved by `offset` (world or camera axes)."""
  edit = as_edit(target)
  asset = _asset(edit, index)
  pose = _pose_overrides(asset, edit, offset, frame, center, size, rotation)
  new = dataclasses.replace(asset, instance_id=_next_instance_id(edit), **pose)
  new_index = len(edit.assets)
  step = f"duplicate {index} as {new_index}"
  edit = dataclasses.replace(edit, assets=edit.assets + (new,), steps=edit.steps + (step,))
  return _check_valid(edit, [new_index], step, allow_invalid)


def _scene_index(edit: Edit, scene: Scene) -> tuple[Edit, int]:
  """Index of `scene` in edit.scenes (by identity), appending it if absent."""
  for i, s in enumerate(edit.scenes):
    if s is scene:
      return edit, i
  return dataclasses.replace(edit, scenes=edit.scenes + (scene,)), len(edit.scenes)


def insert(target: Union[Scene, Edit], other: Scene, other_index: int,
           offset: Sequence[float] = (0.0, 0.0, 0.0), frame: str = "world", center=None,
           size=None, rotation=None, allow_invalid: bool = False) -> Edit:
  """Inserts object `other_index` of scene `other` (appearance from `other`'s image and 2D box).

  Default pose: the same pose relative to the camera as in `other` (so, with equal intrinsics, it
  lands where it was in `other`'s image), expressed in this scene's world frame; `center`, `size`,
  `rotation` (world frame of this scene) override it and `offset` moves it. Appended: its index is
  `len(edit.assets)`.
  """
  edit = as_edit(target)
  if not isinstance(other, Scene):
    raise EditError(f"insert needs a Scene to take the object from, got {type(other).__name__}.")
  if not 0 <= other_index < other.num_objects:
    raise EditError(f"The other scene has no object {other_index} (it has "
                    f"{other.num_objects}).")
  # other's world -> this world, through the camera: inv(w2c_this) @ w2c_other.
  transfer = geometry.invert_pose(edit.world_to_camera) @ other.world_to_camera
  base = Asset(scene=-1, index=other_index,
               center=geometry.transform_points(transfer, other.centers[other_index]),
               size=other.sizes[other_index],
               rotation=transfer[:3, :3] @ other.rotations[other_index],
               instance_id=_next_instance_id(edit))
  pose = _pose_overrides(base, edit, offset, frame, center, size, rotation)
  edit, scene_index = _scene_index(edit, other)
  new = dataclasses.replace(base, scene=scene_index, **pose)
  new_index = len(edit.assets)
  step = f"insert object {other_index} of another scene as {new_index}"
  edit = dataclasses.replace(edit, assets=edit.assets + (new,), steps=edit.steps + (step,))
  return _check_valid(edit, [new_index], step, allow_invalid)


def replace_background(target: Union[Scene, Edit], other: Scene) -> Edit:
  """Uses `other`'s background token (its image with its objects painted out) as background."""
  edit = as_edit(target)
  if not isinstance(other, Scene):
    raise EditError(f"replace_background needs a Scene, got {type(other).__name__}.")
  edit, scene_index = _scene_index(edit, other)
  return dataclasses.replace(edit, background_scene=scene_index,
                             steps=edit.steps + ("replace background",))


def change_camera(target: Union[Scene, Edit], world_to_camera: np.ndarray,
                  intrinsics: np.ndarray | None = None, allow_invalid: bool = False) -> Edit:
  """Renders from a new camera (OpenCV world_to_camera [4, 4], optional new intrinsics [3, 3]).

  The object poses stay put in the world; their projections and the background token's relative
  camera pose (source -> target) change. Refused if a visible object would end up invalid.
  """
  edit = as_edit(target)
  w2c = np.asarray(world_to_camera, np.float32)
  if w2c.shape != (4, 4) or not np.all(np.isfinite(w2c)):
    raise EditError(f"world_to_camera must be a finite [4, 4] matrix, got {w2c.shape}.")
  try:
    check_rotations(w2c[:3, :3], "world_to_camera's rotation")
  except ValueError as e:
    raise EditError(str(e)) from e
  k = edit.intrinsics if intrinsics is None else np.asarray(intrinsics, np.float32)
  if k.shape != (3, 3):
    raise EditError(f"intrinsics must be [3, 3], got {k.shape}.")
  before = edit.active()
  step = "change camera"
  edit = dataclasses.replace(edit, world_to_camera=w2c, intrinsics=k, steps=edit.steps + (step,))
  return _check_valid(edit, np.flatnonzero(before).tolist(), step, allow_invalid)


def move_camera(target: Union[Scene, Edit], offset: Sequence[float] = (0.0, 0.0, 0.0),
                yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                allow_invalid: bool = False) -> Edit:
  """Moves the camera by `offset` along its own axes (x right, y down, z forward) and turns it
  about its own axes (degrees; yaw pans about y, pitch tilts about x, roll about z)."""
  edit = as_edit(target)
  c2w = geometry.invert_pose(edit.world_to_camera)
  local = geometry.pose_matrix(euler_rotation(yaw, pitch, roll, CAMERA_ROTATION_AXES),
                               np.asarray(offset, np.float32))
  new = change_camera(edit, geometry.invert_pose(c2w @ local), allow_invalid=allow_invalid)
  step = (f"move camera by {np.round(np.asarray(offset, float), 3).tolist()} yaw={yaw:g} "
          f"pitch={pitch:g} roll={roll:g}")
  return dataclasses.replace(new, steps=edit.steps + (step,))


def orbit_camera(target: Union[Scene, Edit], degrees: float, pivot: Sequence[float] | None = None,
                 up: Sequence[float] | None = None, allow_invalid: bool = False) -> Edit:
  """Orbits the camera by `degrees` about the line through `pivot` along `up` (world frame).

  Defaults: pivot = mean centre of the active objects (world origin if none); up = the camera's
  image-up direction (-y of the OpenCV camera) in world coordinates.
  """
  edit = as_edit(target)
  active = edit.active()
  if pivot is None:
    centers = [a.center for a, on in zip(edit.assets, active) if on]
    pivot = np.mean(centers, axis=0) if centers else np.zeros(3)
  if up is None:
    up = -edit.world_to_camera[1, :3]  # Row 1 of R_w2c = camera y axis in world coordinates.
  up = np.asarray(up, np.float64)
  up = up / np.linalg.norm(up)
  a = np.deg2rad(degrees)
  cross = np.array([[0, -up[2], up[1]], [up[2], 0, -up[0]], [-up[1], up[0], 0]])
  rot = np.eye(3) + np.sin(a) * cross + (1 - np.cos(a)) * cross @ cross  # Rodrigues.
  pivot = np.asarray(pivot, np.float64)
  world_motion = geometry.pose_matrix(rot, pivot - rot @ pivot)  # Turn the world about the pivot.
  c2w = world_motion @ geometry.invert_pose(edit.world_to_camera.astype(np.float64))
  new = change_camera(edit, geometry.invert_pose(c2w), allow_invalid=allow_invalid)
  return dataclasses.replace(new, steps=edit.steps + (f"orbit camera {degrees:g} deg",))

