"""Scene editing with a trained Neural Assets model: scenes, pure edit operations, rendering.

A `Scene` is one image with its objects: 2D boxes (where each object's appearance is read), 3D
boxes in the WORLD frame (center, size, box-to-world rotation; corners by `geometry.box_corners`),
instance ids and the camera (normalised intrinsics, OpenCV world_to_camera). It saves to / loads
from one `.npz` file and can be cut out of a video record (`scene_from_video_record`).

An `Edit` says what to render: a list of `Asset`s (appearance = object `index` of scene `scene`,
pose = a 3D box in the edited scene's world frame), which scene gives the background token, and
the target camera. Edit operations are pure functions `op(scene_or_edit, ...) -> Edit`, so they
chain: `rotate(translate(scene, 0, (0.5, 0, 0)), 1, yaw=90)`. Object indices refer to
`edit.assets` and stay stable: `remove` only masks an asset, `duplicate` and `insert` append.
A move that would put an object behind the camera or fully off-screen raises `EditError` (the
reason comes from `geometry.box_validity`) unless `allow_invalid=True`; such objects are then
left out of the conditioning when rendering (the model never saw invalid boxes in training).

Rendering (`render`) builds one tokenizer batch with one example ("run") per scene that an edit
draws from: the run's source is that scene's image and 2D boxes, its target corners are the
edited 3D boxes projected with the target camera. Every object of the run's scene is kept in a
slot of the run (also removed ones), so the object / background images the tokenizer paints are
the ones it saw in training and a removed object does not leak into the background token. The
edit's tokens are then spliced slot by slot from the runs (tokens reshaped to [R, N+1, T, D]),
masked slots are zeroed (the padded-slot convention) and the last slot is the background scene's
background token. DDIM with classifier-free guidance and the frozen VAE decoder make the images;
variation v of every edit starts from the same noise (drawn from the seed and v only), so a grid
of edits compares like with like and does not depend on how many variations are asked for.

Checkpoints: `load_model_for_inference` reads the training code's orbax layout
(`<workdir>/checkpoints/<step>/{state,meta}`, see `training/checkpointing.py`), restoring only
`params` (or `ema_params`) and `frozen_params['vae']` of the saved `TrainState`.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
from typing import Any, Mapping, Sequence, Union
import zipfile

import einops
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from neural_assets import geometry
from neural_assets.models.neural_assets import NeuralAssetsModel
from neural_assets.training import train_step

SCENE_FORMAT_VERSION = 1
SCENE_ARRAYS = ("image", "boxes_2d", "centers", "sizes", "rotations", "instance_ids",
                "intrinsics", "world_to_camera")
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


# ------------------------------------------------------------------------------------------------
# Scenes.


def _as_float(x, shape, name) -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.shape != shape:
    raise ValueError(f"Scene {name} must have shape {shape}, got {x.shape}.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"Scene {name} holds non-finite values.")
  return x


def _check_rotations(rotations: np.ndarray, what: str, atol: float = 1e-3) -> None:
  """Raises unless every [.., 3, 3] matrix is a proper rotation (orthonormal, det +1)."""
  eye = np.eye(3, dtype=np.float32)
  gram = np.einsum("...ji,...jk->...ik", rotations, rotations)
  bad = ~np.all(np.abs(gram - eye) < atol, axis=(-2, -1))
  bad |= np.abs(np.linalg.det(rotations) - 1.0) > atol
  if np.any(bad):
    raise ValueError(f"{what} must be proper rotations (orthonormal, det +1); entries "
                     f"{np.flatnonzero(bad).tolist()} are not.")


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
  """One image and its objects (K of them).

  Attributes:
    image: [H, W, 3] uint8.
    boxes_2d: [K, 4] float32 normalised [y0, x0, y1, x1]: where each object's appearance is read.
    centers: [K, 3] float32 3D box centres, world frame.
    sizes: [K, 3] float32 full extents along each box's own x, y, z axes (> 0).
    rotations: [K, 3, 3] float32 box-to-world rotations (columns = box axes in world coordinates).
    instance_ids: [K] int32.
    intrinsics: [3, 3] float32 normalised pinhole intrinsics (u, v in [0, 1]).
    world_to_camera: [4, 4] float32 OpenCV (x right, y down, z forward).
  """
  image: np.ndarray
  boxes_2d: np.ndarray
  centers: np.ndarray
  sizes: np.ndarray
  rotations: np.ndarray
  instance_ids: np.ndarray
  intrinsics: np.ndarray
  world_to_camera: np.ndarray

  def __post_init__(self):
    image = np.asarray(self.image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise ValueError(f"Scene image must be [H, W, 3] uint8, got {image.shape} {image.dtype}.")
    k = int(np.shape(self.boxes_2d)[0]) if np.ndim(self.boxes_2d) else -1
    if k < 0:
      raise ValueError(f"Scene boxes_2d must be [K, 4], got shape {np.shape(self.boxes_2d)}.")
    boxes = _as_float(self.boxes_2d, (k, 4), "boxes_2d")
    if np.any(boxes < 0) or np.any(boxes > 1) or np.any(boxes[:, 2:] < boxes[:, :2]):
      raise ValueError("Scene boxes_2d must be normalised [y0, x0, y1, x1] in [0, 1] with "
                       "y0 <= y1 and x0 <= x1.")
    sizes = _as_float(self.sizes, (k, 3), "sizes")
    if np.any(sizes <= 0):
      raise ValueError(f"Scene sizes must be positive, got {sizes.tolist()}.")
    rotations = _as_float(self.rotations, (k, 3, 3), "rotations")
    _check_rotations(rotations, "Scene rotations")
    ids = np.asarray(self.instance_ids)
    if ids.shape != (k,) or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"Scene instance_ids must be [K] = ({k},) integers, got {ids.shape} "
                       f"{ids.dtype}.")
    w2c = _as_float(self.world_to_camera, (4, 4), "world_to_camera")
    _check_rotations(w2c[:3, :3], "Scene world_to_camera's rotation")
    for name, value in (("image", image), ("boxes_2d", boxes),
                        ("centers", _as_float(self.centers, (k, 3), "centers")),
                        ("sizes", sizes), ("rotations", rotations),
                        ("instance_ids", ids.astype(np.int32)),
                        ("intrinsics", _as_float(self.intrinsics, (3, 3), "intrinsics")),
                        ("world_to_camera", w2c)):
      object.__setattr__(self, name, value)

  @property
  def num_objects(self) -> int:
    return int(self.boxes_2d.shape[0])

  @property
  def height(self) -> int:
    return int(self.image.shape[0])

  @property
  def width(self) -> int:
    return int(self.image.shape[1])

  def corners_world(self) -> np.ndarray:
    """[K, 8, 3] world-space corners (canonical order)."""
    return geometry.box_corners(self.centers, self.sizes, self.rotations).astype(np.float32)

  def projected_corners(self) -> np.ndarray:
    """[K, 8, 3] (u, v, depth) of the corners in this scene's camera."""
    return geometry.project_box(self.corners_world(), self.world_to_camera,
                                self.intrinsics).astype(np.float32)

  def subset(self, indices: Sequence[int]) -> "Scene":
    """The scene with only objects `indices` (in that order), e.g. to fit the model's slots."""
    keep = np.asarray(indices, np.int64).reshape(-1)
    if keep.size and (keep.min() < 0 or keep.max() >= self.num_objects):
      raise ValueError(f"Object indices {keep.tolist()} out of range 0..{self.num_objects - 1}.")
    return Scene(image=self.image, boxes_2d=self.boxes_2d[keep], centers=self.centers[keep],
                 sizes=self.sizes[keep], rotations=self.rotations[keep],
                 instance_ids=self.instance_ids[keep], intrinsics=self.intrinsics,
                 world_to_camera=self.world_to_camera)

  def save(self, path: str) -> None:
    """Writes the scene to one `.npz` file (no pickles)."""
    with open(path, "wb") as f:
      np.savez(f, format_version=np.int32(SCENE_FORMAT_VERSION),
               **{name: getattr(self, name) for name in SCENE_ARRAYS})

  @classmethod
  def load(cls, path: str) -> "Scene":
    """Reads a scene written by `save`. Raises ValueError on a file that is not one."""
    try:
      with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # Else np.load would try (and refuse) a pickle.
          raise ValueError("no zip header: not an .npz file, or its start is damaged")
      with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as e:
      raise ValueError(f"Scene file {path} does not exist.") from e
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
      # BadZipFile: truncated, or a flipped byte (CRC); one line, not the zipfile traceback.
      raise ValueError(f"{path} is not a readable scene .npz file ({type(e).__name__}: "
                       f"{e}); it is damaged or truncated: write it again with Scene.save.") from e
    missing = [k for k in ("format_version",) + SCENE_ARRAYS if k not in arrays]
    if missing:
      raise ValueError(f"{path} is not a scene file: it lacks {missing} (has {sorted(arrays)}).")
    version = int(arrays.pop("format_version"))
    if version != SCENE_FORMAT_VERSION:
      raise ValueError(f"{path} has scene format version {version}; this code reads "
                       f"{SCENE_FORMAT_VERSION}.")
    return cls(**{k: arrays[k] for k in SCENE_ARRAYS})


def box_from_corners(corners: np.ndarray, rtol: float = 1e-3) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
  """Inverse of `geometry.box_corners`: [..., 8, 3] corners -> (center, size, rotation).

  The box axes are the edges p4 - p0 (x), p2 - p0 (y), p1 - p0 (z); their directions are
  orthonormalised (nearest rotation, SVD) so that small float noise in stored corners is absorbed.

  Returns:
    center [..., 3], size [..., 3], rotation [..., 3, 3] (box-to-world).

  Raises:
    ValueError: the corners are not those of a right-handed box with positive extents (e.g. a
      reader wrote another corner order), detected by rebuilding them.
  """
  corners = np.asarray(corners, np.float64)
  if corners.shape[-2:] != (8, 3):
    raise ValueError(f"box_from_corners wants [..., 8, 3], got {corners.shape}.")
  center = corners.mean(axis=-2)
  # [..., 3 (x, y, z coordinates), 3 (own axes)]: the edges p4 - p0, p2 - p0, p1 - p0.
  edges = np.stack([corners[..., i, :] - corners[..., 0, :] for i in (4, 2, 1)], axis=-1)
  size = np.linalg.norm(edges, axis=-2)
  if np.any(size <= 0):
    raise ValueError("box_from_corners got a box with a zero extent.")
  u, _, vt = np.linalg.svd(edges / size[..., None, :])
  rotation = u @ vt
  rebuilt = geometry.box_corners(center, size, rotation)
  scale = np.maximum(size.max(axis=-1), 1e-6)[..., None, None]
  err = np.abs(rebuilt - corners) / scale
  if np.linalg.det(rotation).min(initial=1.0) < 0 or err.max(initial=0.0) > rtol:
    raise ValueError(
        "box_from_corners: the corners are not a right-handed box in the canonical order "
        f"(index bits x=4, y=2, z=1); max relative rebuild error {err.max(initial=0.0):.3g}.")
  return center.astype(np.float32), size.astype(np.float32), rotation.astype(np.float32)


def scene_from_video_record(record: Mapping[str, Any], frame: int,
                            resolution: Sequence[int] | None = None, resize_method: str = "area",
                            min_depth: float = 1e-2, min_projected_size: float = 0.0) -> Scene:
  """Frame `frame` of a decoded video record (DESIGN.md) as a Scene.

  Objects kept: visible in the frame, with a non-empty 2D box and a valid projected 3D box
  (`geometry.box_validity`). With `resolution` (H, W), the frame is centre-cropped to that aspect
  ratio and resized exactly as the training pipeline does (`data_pipelines.frame_pairs`), with
  the intrinsics and 2D boxes adjusted; else the full frame is kept.
  """
  from data_pipelines import frame_pairs  # pylint: disable=g-import-not-at-top
  num_frames = len(record["frames"])
  if not 0 <= frame < num_frames:
    raise ValueError(f"Frame {frame} out of range for a video of {num_frames} frames.")
  data = record["frames"][frame]
  height, width = frame_pairs.image_size(data)
  if resolution is None:
    crop, out_size = None, (height, width)
    intrinsics = np.asarray(record["intrinsics"][frame], np.float32)
    boxes = np.asarray(record["boxes_2d"][frame], np.float32)
  else:
    out_size = tuple(int(r) for r in resolution)
    crop = frame_pairs.center_crop_box(height, width, *out_size)
    intrinsics = frame_pairs.crop_intrinsics(np.asarray(record["intrinsics"][frame]), crop,
                                             height, width)
    boxes = frame_pairs.crop_boxes(np.asarray(record["boxes_2d"][frame]), crop, height, width)
  image = frame_pairs.decode_frame(data, crop, out_size, resize_method)
  w2c = np.asarray(record["world_to_camera"][frame], np.float32)
  corners = np.asarray(record["box_corners_world"][frame], np.float32)
  uvd = geometry.project_box(corners, w2c, intrinsics)
  valid, _ = geometry.box_validity(uvd, min_depth=min_depth, min_size=min_projected_size)
  has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  keep = np.flatnonzero(np.asarray(record["visible"][frame], bool) & valid & has_area)
  center, size, rotation = box_from_corners(corners[keep]) if keep.size else (
      np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3, 3)))
  return Scene(image=image, boxes_2d=boxes[keep], centers=center, sizes=size, rotations=rotation,
               instance_ids=np.asarray(record["instance_ids"])[keep], intrinsics=intrinsics,
               world_to_camera=w2c)


# ------------------------------------------------------------------------------------------------
# Edits.


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
  """Returns `edit` unless one of `indices` has an invalid target box (then EditError)."""
  if allow_invalid or not indices:
    return edit
  _, reason = edit.validity()
  problems = [f"object {i} would be {_REASON_TEXT[geometry.BoxStatus(int(reason[i]))]}"
              for i in indices if reason[i] != geometry.BoxStatus.OK]
  if problems:
    raise EditError(f"Edit {what!r} refused: {'; '.join(problems)}. Pass allow_invalid=True to "
                    "apply it anyway (such objects are then left out of the render).")
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
    _check_rotations(rotation, "rotation")
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
    _check_rotations(w2c[:3, :3], "world_to_camera's rotation")
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


# ------------------------------------------------------------------------------------------------
# Models and checkpoints.


def _denoise(model, params, latents, timesteps, tokens):
  return model.apply({"params": params}, latents, timesteps, tokens,
                     method=NeuralAssetsModel.denoise)


class ModelBundle:
  """A model ready to render: config, modules, parameters and the jitted pieces.

  Attributes:
    config: the experiment config (model, diffusion, sampler, data.resolution are read).
    model: `NeuralAssetsModel`; vae: `AutoencoderKL` (frozen).
    params: {'tokenizer', 'unet'}; vae_params: the VAE's params.
    step: the checkpoint step (None for parameters not from a checkpoint).
  """

  def __init__(self, config: ml_collections.ConfigDict, params: Any, vae_params: Any,
               step: int | None = None):
    self.config = config
    self.model, self.vae = train_step.build_models(config)
    self.params, self.vae_params, self.step = params, vae_params, step
    cond = config.model.conditioning
    self.max_objects = int(cond.max_objects)
    self.tokens_per_slot = int(np.prod(cond.roi_output_size))
    model, vae = self.model, self.vae

    def tokenize(params, batch):
      drop = jnp.zeros((batch["slot_mask"].shape[0],), bool)
      return model.apply({"params": params}, batch, drop, method=NeuralAssetsModel.tokenize)[0]

    self.tokenize_fn = jax.jit(tokenize)
    # One object for the sampler's static argument, so its compilation is reused across calls.
    self.denoise_fn = functools.partial(_denoise, model)
    self.decode_fn = jax.jit(functools.partial(train_step.decode_latents, vae))

  @property
  def resolution(self) -> tuple[int, int]:
    return tuple(int(r) for r in self.config.data.resolution)

  def latent_shape(self, batch_size: int) -> tuple[int, int, int, int]:
    from neural_assets.training import trainer  # pylint: disable=g-import-not-at-top
    return trainer.latent_shape(self.config, self.vae, batch_size)

  def sampler(self, guidance_scale: float | None = None, num_steps: int | None = None,
              eta: float | None = None):
    """`DDIMSampler` from the config's `diffusion` and `sampler` blocks, with overrides."""
    from neural_assets.diffusion.ddim import DDIMSampler  # pylint: disable=g-import-not-at-top
    overrides = {k: v for k, v in (("guidance_scale", guidance_scale),
                                   ("num_inference_steps", num_steps), ("eta", eta))
                 if v is not None}
    return DDIMSampler.from_config(self.config.diffusion, {**dict(self.config.sampler),
                                                           **overrides})


def _tuples(x):
  """JSON lists -> tuples, recursively (configs hold tuples; JSON writes lists)."""
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  return x


def config_from_json(text: str) -> ml_collections.ConfigDict:
  """A config saved with `ConfigDict.to_json_best_effort` -> ConfigDict (lists back to tuples)."""
  return ml_collections.ConfigDict(_tuples(json.loads(text)))


def _load_config_file(path: str) -> ml_collections.ConfigDict:
  if path.endswith(".json"):
    with open(path) as f:
      return config_from_json(f.read())
  spec = importlib.util.spec_from_file_location("_edit_config", path)
  if spec is None or spec.loader is None:
    raise ValueError(f"Cannot import config file {path} (want a .py with get_config() or .json).")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def find_checkpoint(path: str, step: int | None = None) -> tuple[str, int]:
  """Resolves a training workdir, a demo workdir, a `checkpoints/` directory or a step directory.

  Returns:
    (step directory holding `state/` and `meta/`, step).
  Raises:
    FileNotFoundError: nothing that looks like a checkpoint, or `step` is not there.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(os.path.join(path, "state")):
    name = os.path.basename(path)
    if step is not None and name != str(step):
      raise FileNotFoundError(f"{path} is the checkpoint of step {name}, not {step}.")
    return path, int(name) if name.isdigit() else -1
  # A training workdir, the demo's workdir (`neural_assets.demo`: WORKDIR/train) or the
  # checkpoints directory itself.
  candidates = [os.path.join(path, "checkpoints"), os.path.join(path, "train", "checkpoints")]
  root = next((c for c in candidates if os.path.isdir(c)), path)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"No checkpoint at {path}: not a directory.")
  # Orbax writes `<step>.orbax-checkpoint-tmp-*` first and renames when complete: digits only.
  steps = sorted(int(d) for d in os.listdir(root)
                 if d.isdigit() and os.path.isdir(os.path.join(root, d, "state")))
  if not steps:
    raise FileNotFoundError(f"No checkpoint under {root} (want <workdir>/checkpoints/<step>/state "
                            "as written by neural_assets.main).")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise FileNotFoundError(f"No checkpoint of step {step} under {root}; found {steps}.")
  return os.path.join(root, str(step)), step


def load_model_for_inference(workdir_or_checkpoint: str,
                             config: Union[ml_collections.ConfigDict, str, None] = None,
                             step: int | None = None, use_ema: bool = True) -> ModelBundle:
  """Restores a trained model for rendering.

  Reads the layout of `neural_assets.training.checkpointing.Checkpointer`: `<step>/state` is the
  orbax PyTree of the `TrainState` (`params`, `frozen_params['vae']`, `ema_params` or None, ...),
  `<step>/meta/metadata` is JSON with `config` (the run's config as JSON) and `shapes`. Only the
  parameters are read (partial restore: no optimizer state), onto the first local device.

  Args:
    workdir_or_checkpoint: a training workdir, the demo's workdir (`WORKDIR/train` holds the
      run), a `checkpoints/` dir or one step dir.
    config: the experiment config (ConfigDict, or a path to a `.py` with `get_config()` / a
      `.json`); None: the config stored in the checkpoint's metadata, else `<workdir>/config.json`.
    step: which step (default: the newest).
    use_ema: sample with the EMA weights when the checkpoint has them.

  Raises:
    FileNotFoundError: no checkpoint / config found.
    ValueError: the checkpoint's parameters do not fit the model built from the config.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from neural_assets.training import checkpointing
  from neural_assets.training import trainer
  # pylint: enable=g-import-not-at-top
  step_dir, step = find_checkpoint(workdir_or_checkpoint, step)
  meta_path = os.path.join(step_dir, "meta", "metadata")
  meta = {}
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      meta = json.load(f)
  if isinstance(config, str):
    config = _load_config_file(config)
  if config is None:
    if meta.get("config") and meta["config"] != "{}":
      config = config_from_json(meta["config"])
    else:
      workdir_config = os.path.join(os.path.dirname(os.path.dirname(step_dir)), "config.json")
      if not os.path.exists(workdir_config):
        raise FileNotFoundError(f"The checkpoint {step_dir} stores no config and there is no "
                                f"{workdir_config}: pass config=.")
      config = _load_config_file(workdir_config)

  model, vae = train_step.build_models(config)
  abstract_params, abstract_frozen = jax.eval_shape(
      functools.partial(trainer.init_params, config, model, vae), jax.random.key(0))
  state_dir = os.path.join(step_dir, "state")
  saved = ocp.PyTreeCheckpointer().metadata(state_dir)
  saved = getattr(saved, "item_metadata", saved)
  saved = getattr(saved, "tree", saved)
  ema = use_ema and saved.get("ema_params") is not None
  params_key = "ema_params" if ema else "params"
  wanted = {"params": abstract_params, "frozen_params": {"vae": abstract_frozen["vae"]}}
  stored = {"params": saved.get(params_key), "frozen_params": {"vae": (saved.get(
      "frozen_params") or {}).get("vae")}}
  problems = checkpointing.describe_mismatch(checkpointing.shapes_of(stored),
                                             checkpointing.shapes_of(wanted))
  if problems:
    raise ValueError(f"Checkpoint {step_dir} does not fit the model built from the config "
                     f"({'EMA ' if ema else ''}parameters):\n  " + "\n  ".join(problems))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  item = {params_key: abstract_params, "frozen_params": {"vae": abstract_frozen["vae"]}}
  item = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), item)
  restore_args = jax.tree_util.tree_map(lambda _: ocp.ArrayRestoreArgs(sharding=device), item)
  restored = ocp.PyTreeCheckpointer().restore(
      state_dir, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                             partial_restore=True))
  return ModelBundle(config, restored[params_key], restored["frozen_params"]["vae"], step)


# ------------------------------------------------------------------------------------------------
# Rendering.


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
  if image.shape[:2] == (height, width):
    return image
  return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def build_token_plan(edits: Sequence[Edit], max_objects: int
                     ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
  """The tokenizer batch of all runs and, per edit and slot, where its tokens come from.

  Args:
    edits: E edits of the same source scene.
    max_objects: N, the model's foreground slots.

  Returns:
    batch: the tokenizer batch of R runs (`source_image` [R, H, W, 3] uint8, `source_boxes`
      [R, N, 4], `target_corners` [R, N, 8, 3], `slot_mask` [R, N], `relative_pose` [R, 4, 4]).
    run_index, slot_index: [E, N+1] int32: slot s of edit e takes run `run_index[e, s]`'s slot
      `slot_index[e, s]` (the last slot, the background, is a run's slot N).
    slot_valid: [E, N+1] bool: False for unused / removed / invalid slots (zero tokens).

  Raises:
    EditError: an edit has more active objects than N.
  """
  n = max_objects
  source = edits[0].source
  height, width = source.height, source.width
  runs = []  # dicts of one example each.
  run_index = np.zeros((len(edits), n + 1), np.int32)
  slot_index = np.zeros((len(edits), n + 1), np.int32)
  slot_valid = np.zeros((len(edits), n + 1), bool)

  def new_run(edit: Edit, scene_id: int, items: list[tuple[int, np.ndarray]]) -> int:
    """One example: `items` (source index, target corners) first, then the scene's other objects
    (zero corners) so that they are painted as in training, as far as the N slots allow."""
    scene = edit.scenes[scene_id]
    used = {index for index, _ in items}
    fill = [(i, np.zeros((8, 3), np.float32)) for i in range(scene.num_objects) if i not in used]
    slots = (items + fill)[:n]
    boxes = np.zeros((n, 4), np.float32)
    corners = np.zeros((n, 8, 3), np.float32)
    mask = np.zeros((n,), bool)
    for s, (index, uvd) in enumerate(slots):
      boxes[s], corners[s], mask[s] = scene.boxes_2d[index], uvd, True
    runs.append(dict(
        source_image=_resized(scene.image, height, width), source_boxes=boxes,
        target_corners=corners, slot_mask=mask,
        relative_pose=np.asarray(geometry.relative_pose(source.world_to_camera,
                                                        edit.world_to_camera), np.float32)))
    return len(runs) - 1

  for e, edit in enumerate(edits):
    if edit.source is not source:
      raise EditError(f"All edits rendered together must edit the same scene; edit {e} "
                      f"({edit.name!r}) edits another one.")
    active = np.flatnonzero(edit.active())
    if active.size > n:
      raise EditError(f"Edit {edit.name!r} has {active.size} objects but the model has only {n} "
                      "slots: remove some, or keep fewer objects with Scene.subset.")
    corners = edit.target_corners()
    by_scene: dict[int, list[tuple[int, int]]] = {}  # scene -> [(target slot, asset index)]
    for slot, a in enumerate(active):
      by_scene.setdefault(edit.assets[a].scene, []).append((slot, int(a)))
    first_run: dict[int, int] = {}
    for scene_id, members in sorted(by_scene.items()):
      for start in range(0, len(members), n):
        chunk = members[start:start + n]
        r = new_run(edit, scene_id, [(edit.assets[a].index, corners[a]) for _, a in chunk])
        first_run.setdefault(scene_id, r)
        for s, (slot, _) in enumerate(chunk):
          run_index[e, slot], slot_index[e, slot], slot_valid[e, slot] = r, s, True
    bg = edit.background_scene
    bg_run = first_run[bg] if bg in first_run else new_run(edit, bg, [])
    run_index[e, n], slot_index[e, n], slot_valid[e, n] = bg_run, n, True

  batch = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
  return batch, run_index, slot_index, slot_valid


def compose_tokens(bundle: ModelBundle, edits: Sequence[Edit]) -> jax.Array:
  """[E, (N+1)*T, D] conditioning tokens of each edit, spliced from one tokenizer call."""
  batch, run_index, slot_index, slot_valid = build_token_plan(edits, bundle.max_objects)
  tokens = bundle.tokenize_fn(bundle.params, batch)  # [R, (N+1)*T, D]
  tokens = einops.rearrange(tokens, "r (s t) d -> r s t d", t=bundle.tokens_per_slot)
  spliced = tokens[jnp.asarray(run_index), jnp.asarray(slot_index)]  # [E, N+1, T, D]
  spliced = spliced * jnp.asarray(slot_valid, spliced.dtype)[..., None, None]
  return einops.rearrange(spliced, "e s t d -> e (s t) d")


def render(bundle: ModelBundle, scene: Scene, *edits: Union[Edit, Scene],
           guidance_scale: float | None = None, num_steps: int | None = None, seed: int = 0,
           num_variations: int = 1, eta: float | None = None) -> np.ndarray:
  """Renders edits of `scene` with DDIM + classifier-free guidance and the VAE decoder.

  Args:
    bundle: from `load_model_for_inference` (or `ModelBundle(config, params, vae_params)`).
    scene: the edited scene (the source image).
    *edits: Edits of `scene` (a Scene itself = its reconstruction); none: the reconstruction.
    guidance_scale, num_steps, eta: sampler overrides (default: `config.sampler`).
    seed: variation v of every edit starts from the same noise, drawn from
      `fold_in(split(PRNGKey(seed))[0], v)` (the other half feeds eta > 0 steps).
    num_variations: samples per edit.

  Returns:
    [E, V, H, W, 3] uint8 images at `config.data.resolution`.
  """
  if num_variations < 1:
    raise ValueError(f"num_variations must be >= 1, got {num_variations}.")
  edits = [as_edit(e) for e in (edits or (scene,))]
  for e, edit in enumerate(edits):
    if edit.source is not scene:
      raise EditError(f"Edit {e} ({edit.name!r}) was not made from the scene passed to render.")
  sampler = bundle.sampler(guidance_scale, num_steps, eta)
  cond = compose_tokens(bundle, edits)
  cond = einops.repeat(cond, "e l d -> (e v) l d", v=num_variations)
  batch = cond.shape[0]
  shape = bundle.latent_shape(batch)
  noise_key, step_key = jax.random.split(jax.random.PRNGKey(seed))
  noise = jnp.stack([jax.random.normal(jax.random.fold_in(noise_key, v), shape[1:], jnp.float32)
                     for v in range(num_variations)])
  noise = einops.repeat(noise, "v h w c -> (e v) h w c", e=len(edits))
  latents = sampler.sample(bundle.denoise_fn, bundle.params, cond, step_key, shape, None, noise)
  images = np.asarray(bundle.decode_fn(bundle.vae_params, latents))
  images = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
  return einops.rearrange(images, "(e v) h w c -> e v h w c", v=num_variations)
