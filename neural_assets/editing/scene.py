"""Scenes: one image, its objects' 2D and 3D boxes and the camera; `.npz` files; video records.

A `Scene` is one image with its objects: 2D boxes (where each object's appearance is read), 3D
boxes in the WORLD frame (center, size, box-to-world rotation; corners by `geometry.box_corners`),
instance ids and the camera (normalised intrinsics, OpenCV world_to_camera). It saves to / loads
from one `.npz` file and can be cut out of a video record (`scene_from_video_record`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence
import zipfile

import numpy as np

from neural_assets import geometry

SCENE_FORMAT_VERSION = 1
SCENE_ARRAYS = ("image", "boxes_2d", "centers", "sizes", "rotations", "instance_ids",
                "intrinsics", "world_to_camera")


def _as_float(x, shape, name) -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.shape != shape:
    raise ValueError(f"Scene {name} must have shape {shape}, got {x.shape}.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"Scene {name} holds non-finite values.")
  return x


def check_rotations(rotations: np.ndarray, what: str, atol: float = 1e-3) -> None:
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
    check_rotations(rotations, "Scene rotations")
    ids = np.asarray(self.instance_ids)
    if ids.shape != (k,) or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"Scene instance_ids must be [K] = ({k},) integers, got {ids.shape} "
                       f"{ids.dtype}.")
    w2c = _as_float(self.world_to_camera, (4, 4), "world_to_camera")
    check_rotations(w2c[:3, :3], "Scene world_to_camera's rotation")
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

  def largest_first(self) -> list[int]:
    """Object indices by decreasing 2D box area (ties in index order): the biggest object is the
    clearest to edit and the last to drop."""
    boxes = self.boxes_2d
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return [int(i) for i in np.argsort(-area, kind="stable")]

  def keep_largest(self, max_objects: int) -> "Scene":
    """The scene with only its `max_objects` largest objects (2D box area) in their original
    order, as the training pipeline keeps them when a frame has more objects than the model's
    slots; the scene itself when it has no more."""
    if self.num_objects <= max_objects:
      return self
    return self.subset(np.sort(self.largest_first()[:max_objects]))

  def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
    """The scene's arrays keyed `prefix + name` (for `.npz` files holding several scenes)."""
    return {prefix + name: getattr(self, name) for name in SCENE_ARRAYS}

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "",
                  path: str = "") -> "Scene":
    """Inverse of `arrays`. Raises ValueError naming `path` when an array is missing."""
    missing = [prefix + k for k in SCENE_ARRAYS if prefix + k not in arrays]
    if missing:
      raise ValueError(f"{path} is not a scene file: it lacks {missing} (has {sorted(arrays)}).")
    return cls(**{k: arrays[prefix + k] for k in SCENE_ARRAYS})

  def save(self, path: str) -> None:
    """Writes the scene to one `.npz` file (no pickles)."""
    with open(path, "wb") as f:
      np.savez(f, format_version=np.int32(SCENE_FORMAT_VERSION), **self.arrays())

  @classmethod
  def load(cls, path: str) -> "Scene":
    """Reads a scene written by `save`. Raises ValueError on a file that is not one."""
    arrays = read_npz(path, "scene")
    if "kind" in arrays:  # An edit file (`Edit.save`): it holds scenes and more.
      raise ValueError(f"{path} is an edited-scene file (Edit.save), not a scene file: "
                       "read it with neural_assets.editing.load_scene_or_edit (or Edit.load).")
    missing = [k for k in ("format_version",) + SCENE_ARRAYS if k not in arrays]
    if missing:
      raise ValueError(f"{path} is not a scene file: it lacks {missing} (has {sorted(arrays)}).")
    version = int(arrays.pop("format_version"))
    if version != SCENE_FORMAT_VERSION:
      raise ValueError(f"{path} has scene format version {version}; this code reads "
                       f"{SCENE_FORMAT_VERSION}.")
    return cls.from_arrays(arrays, path=path)


def read_npz(path: str, what: str = "scene") -> dict[str, np.ndarray]:
  """All arrays of an `.npz` file (no pickles). Raises ValueError naming `path` and `what`."""
  try:
    with open(path, "rb") as f:
      if f.read(4) != b"PK\x03\x04":  # Else np.load would try (and refuse) a pickle.
        raise ValueError("no zip header: not an .npz file, or its start is damaged")
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except FileNotFoundError as e:
    raise ValueError(f"{what.capitalize()} file {path} does not exist.") from e
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
    # BadZipFile: truncated, or a flipped byte (CRC); one line, not the zipfile traceback.
    raise ValueError(f"{path} is not a readable {what} .npz file ({type(e).__name__}: {e}); "
                     "it is damaged or truncated: write it again.") from e


def box_from_corners(corners: np.ndarray, rtol: float = 1e-3) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
  """`geometry.box_from_corners` (the inverse of `geometry.box_corners`) as float32 arrays.

  Returns:
    center [..., 3], size [..., 3], rotation [..., 3, 3] (box-to-world), float32.

  Raises:
    ValueError: the corners are not those of a right-handed box in the canonical order.
  """
  center, size, rotation = geometry.box_from_corners(corners, rtol)
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
  from data_pipelines import image_decoding  # pylint: disable=g-import-not-at-top
  num_frames = len(record["frames"])
  if not 0 <= frame < num_frames:
    raise ValueError(f"Frame {frame} out of range for a video of {num_frames} frames.")
  data = record["frames"][frame]
  height, width = image_decoding.image_size(data)
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
  image = image_decoding.decode_frame(data, crop, out_size, resize_method)
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

