"""Your own videos with 3D boxes -> video records (DESIGN.md): a folder of frames + one JSON file.

Input layout: `--input DIR` holds one directory per video (hidden names, starting with ".", are
ignored); a video directory holds

  annotations.json                 the cameras and the boxes (below)
  frames/000000.png, ...           the frames, PNG or JPEG (.png / .jpg / .jpeg), in name order

annotations.json, one JSON object (T = number of frames; unknown keys anywhere are refused, so a
misspelt key never passes silently):

  format_version     1 (required).
  video_id           optional string; default: the video directory's name.
  image_size         [height, width] in pixels (required); every frame must have this size.
  frame_files        optional list of T paths relative to the video directory, in frame order;
                     default: the .png / .jpg / .jpeg files of frames/, sorted by name.
  intrinsics_units   "pixels" or "normalized" (required).
                       pixels: OpenCV pixel convention, the centre of pixel (0, 0) is at (0, 0),
                         so the image spans [-0.5, W - 0.5]; normalised cx = (cx + 0.5) / W.
                       normalized: u, v in [0, 1] of the image width / height (the record's).
  intrinsics         [T][3][3] (one per frame) or [3][3] (the same for every frame):
                     [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], fx, fy > 0, no skew. Whatever the
                     camera convention, they map the camera's right / down / forward coordinates
                     to the image's u (right) and v (down), as OpenCV, ARKit and COLMAP give them.
  pose_type          "camera_to_world" or "world_to_camera" (required): what camera_poses map.
  camera_convention  the camera's axes (required):
                       "opencv": x right, y down, z forward (the record's convention);
                       "opengl": x right, y up, z backward (looks along -z; also ARKit);
                       "blender": the same axes as "opengl" (Blender cameras look along -z).
  camera_poses       [T][4][4] rigid transforms (rotation orthonormal with determinant +1 within
                     ROTATION_TOLERANCE, last row [0, 0, 0, 1]), in the world frame of the boxes.
  boxes              [T] lists, one per frame, of the boxes annotated in that frame:
      id             int >= 0, the same object keeps its id in every frame (required).
      center         [x, y, z] in the world frame (required).
      size           [sx, sy, sz] > 0: full extents along the box's own x, y, z axes (required).
      quaternion     [w, x, y, z] box-to-world rotation (Hamilton, scalar first), unit within
                     QUATERNION_TOLERANCE; or
      rotation       [3][3] box-to-world rotation (columns = the box's axes in world
                     coordinates), orthonormal within ROTATION_TOLERANCE. Exactly one of the two.
      category       optional int class index of your own vocabulary (-1 = unknown); the same in
                     every frame that gives it.
      box_2d         optional [x0, y0, x1, y1] in pixels (pixel edges: a box covering pixel
                     columns c0..c1 has x0 = c0, x1 = c1 + 1), x0 < x1, y0 < y1.
      visible        optional bool (e.g. occluded: false).

Rules of the conversion (the record: normalised intrinsics, OpenCV world_to_camera, canonical
corner order, see video_record):
  * Objects are the ids found in `boxes`, sorted: instance_ids [K] ascending. Corners:
    `geometry.box_corners(center, size, rotation)`. In a frame that does not annotate an object,
    its corners are those of the nearest annotated frame (the earlier one on a tie) and it is
    not visible.
  * With box_2d: boxes_2d = box_2d clipped to the image and normalised; visible = the given
    visible (default: the clipped box is not empty).
  * Without box_2d: the 3D box's 8 corners are projected; visible = the given visible (default
    true) and all 8 corners deeper than MIN_DEPTH in front of the camera and their projection
    overlapping the image (`geometry.box_validity`); boxes_2d = the projected corners' bounding
    box clipped to the image (`geometry.box2d_from_corners`). Zeros where not visible.
  * attributes record the source conventions (videos_camera_convention, videos_pose_type,
    videos_intrinsics_units) and where the 2D boxes came from (videos_boxes_2d: given /
    derived / mixed).

Refused, with a `VideoFormatError` naming the file and the field: a missing annotations.json or
frame file, no frames, a frame that is not PNG / JPEG or whose size differs from image_size
(mixed image sizes), a per-frame array whose length is not T (intrinsics, camera_poses, boxes,
frame_files), wrong shapes, non-finite numbers, unknown intrinsics_units / pose_type /
camera_convention, non-rigid poses, a zero / non-finite / non-unit quaternion, a non-rotation
matrix, non-positive sizes, duplicate ids in a frame, conflicting categories, a box that is
behind the camera (no corner deeper than MIN_DEPTH) in every frame that annotates it (the usual
sign of a wrong camera_convention or pose_type), and unknown keys (with the closest known key).
The CLI stops at the first refused video; on Beam a refused video is counted (`failed_videos`),
named in `conversion_failures-*.txt` and skipped.

`write_video_dir` writes any video record in this format (`python -m data_pipelines.synthetic
--export_videos DIR` uses it; tests/test_videos.py converts those folders back and compares
them with the generator's own records).

CLI (one process; `python -m data_pipelines.beam_convert videos --input DIR --out_dir OUT` runs
the same plan on Apache Beam):
  python -m data_pipelines.videos --input DIR --out_dir OUT [--split train]
writes `OUT/<split>.array_record-XXXXX-of-YYYYY`, the names configs/videos.py reads.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
from typing import Any, Sequence

import numpy as np

from data_pipelines import dataset_conversion
from data_pipelines import image_decoding
from data_pipelines import video_record
from neural_assets import geometry

ANNOTATIONS = "annotations.json"
FRAMES_DIR = "frames"
FORMAT_VERSION = 1
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
INTRINSICS_UNITS = ("pixels", "normalized")
POSE_TYPES = ("camera_to_world", "world_to_camera")
CAMERA_CONVENTIONS = ("opencv", "opengl", "blender")
# | |q| - 1 | allowed before a quaternion is refused (it is then normalised): quaternions printed
# from float32 with 4+ significant digits pass, while an unnormalised or garbled one (Euler
# angles, a wrong component order with a dropped sign) does not.
QUATERNION_TOLERANCE = 1e-3
# Largest |R^T R - I| entry and |det R - 1| of a rotation (box or camera pose), and |last row -
# [0, 0, 0, 1]| of a pose: the same reasoning as QUATERNION_TOLERANCE.
ROTATION_TOLERANCE = 1e-3
# Corners must be this far in front of the camera (camera z, world units) for a derived 2D box:
# the readers' and the frame-pair pipeline's default (`geometry.box_validity`).
MIN_DEPTH = 1e-2
# Videos per output shard: a shard is written by one Beam worker in one piece, and user videos
# can be long (like Waymo's segments, waymo.py writes 16 per shard).
VIDEOS_PER_SHARD = 16

# Keys of annotations.json: name -> required.
VIDEO_KEYS = {"format_version": True, "video_id": False, "image_size": True,
              "frame_files": False, "intrinsics_units": True, "intrinsics": True,
              "pose_type": True, "camera_convention": True, "camera_poses": True, "boxes": True}
BOX_KEYS = {"id": True, "center": True, "size": True, "quaternion": False, "rotation": False,
            "category": False, "box_2d": False, "visible": False}
_INT32_MAX = np.iinfo(np.int32).max  # ids and categories are stored as int32.
_PNG_MAGIC, _JPEG_MAGIC = b"\x89PNG", b"\xff\xd8"


class VideoFormatError(ValueError):
  """A video directory does not follow the format; the message names the file and the field."""

  def __init__(self, path: str, field: str, problem: str):
    super().__init__(f"{path}: {field}: {problem}")
    self.path, self.field = path, field


# ------------------------------------------------------------------------------------------------
# Field parsing (each raises VideoFormatError(path, field, ...)).


def _check_keys(obj: Any, keys: dict[str, bool], path: str, field: str) -> None:
  if not isinstance(obj, dict):
    raise VideoFormatError(path, field, f"want a JSON object, got {type(obj).__name__}")
  for key in obj:
    if key not in keys:
      close = difflib.get_close_matches(key, list(keys), n=1)
      hint = f"; did you mean {close[0]!r}?" if close else ""
      raise VideoFormatError(path, f"{field}.{key}" if field else key,
                             f"unknown key{hint} (known: {', '.join(keys)})")
  missing = [k for k, required in keys.items() if required and k not in obj]
  if missing:
    raise VideoFormatError(path, f"{field}.{missing[0]}" if field else missing[0],
                           "required key is missing")


def _numbers(value: Any, shape: tuple[int, ...], path: str, field: str) -> np.ndarray:
  """A float64 array of exactly `shape` with finite values."""
  try:
    array = np.asarray(value, np.float64)
  except (TypeError, ValueError):
    raise VideoFormatError(path, field, f"want a {'x'.join(map(str, shape))} array of "
                                        "numbers") from None
  if array.shape != shape:
    raise VideoFormatError(path, field, f"has shape {list(array.shape)}, want {list(shape)}")
  if not np.all(np.isfinite(array)):
    raise VideoFormatError(path, field, "holds non-finite values (NaN or Infinity)")
  return array


def _nesting(value: Any) -> int:
  """How deeply lists nest in `value`, following first elements ([[1, 0], [0, 1]] -> 2)."""
  depth = 0
  while isinstance(value, list) and value:
    depth, value = depth + 1, value[0]
  return depth


def _per_frame(value: Any, inner: tuple[int, ...], num_frames: int, path: str, field: str,
               shared: bool = False) -> np.ndarray:
  """[T, *inner] from a list of T entries (or one entry of `inner` for all frames if `shared`)."""
  if shared and _nesting(value) == len(inner):  # One matrix, not a list of them.
    return np.broadcast_to(_numbers(value, inner, path, field), (num_frames,) + inner)
  if not isinstance(value, list):
    raise VideoFormatError(path, field, "want a list with one entry per frame")
  if len(value) != num_frames:
    raise VideoFormatError(path, field, f"has {len(value)} entries, want one per frame: "
                                        f"{num_frames} frames")
  return np.stack([_numbers(v, inner, path, f"{field}[{t}]") for t, v in enumerate(value)]
                  ) if num_frames else np.zeros((0,) + inner)


def _choice(value: Any, choices: Sequence[str], path: str, field: str) -> str:
  if value not in choices:
    raise VideoFormatError(path, field, f"unknown value {value!r}; want one of "
                                        f"{', '.join(choices)}")
  return value


def _integer(value: Any, low: int, path: str, field: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _INT32_MAX:
    raise VideoFormatError(path, field, f"want an integer in [{low}, {_INT32_MAX}], got "
                                        f"{value!r}")
  return value


def _check_rotation(rotation: np.ndarray, path: str, field: str) -> None:
  """[..., 3, 3] must be rotations within ROTATION_TOLERANCE."""
  gram = np.swapaxes(rotation, -1, -2) @ rotation
  worst = max(float(np.abs(gram - np.eye(3)).max(initial=0.0)),
              float(np.abs(np.linalg.det(rotation) - 1).max(initial=0.0)))
  if worst > ROTATION_TOLERANCE:
    raise VideoFormatError(path, field, f"is not a rotation (orthonormal, determinant +1) within "
                                        f"{ROTATION_TOLERANCE}: deviation {worst:.3g}")


def _rotation(box: dict, path: str, field: str) -> np.ndarray:
  """The [3, 3] box-to-world rotation of a box from exactly one of quaternion / rotation."""
  if ("quaternion" in box) == ("rotation" in box):
    raise VideoFormatError(path, f"{field}.quaternion", "give exactly one of 'quaternion' "
                                                        "[w, x, y, z] and 'rotation' [3][3]")
  if "rotation" in box:
    rotation = _numbers(box["rotation"], (3, 3), path, f"{field}.rotation")
    _check_rotation(rotation, path, f"{field}.rotation")
    return rotation
  q = _numbers(box["quaternion"], (4,), path, f"{field}.quaternion")
  norm = float(np.linalg.norm(q))
  if abs(norm - 1) > QUATERNION_TOLERANCE:
    raise VideoFormatError(path, f"{field}.quaternion", f"norm {norm:.6g} is not 1 within "
                                                        f"{QUATERNION_TOLERANCE} ([w, x, y, z])")
  return geometry.quaternion_to_matrix(q / norm)


def _intrinsics(annotations: dict, num_frames: int, height: int, width: int, path: str
                ) -> np.ndarray:
  """[T, 3, 3] float64 normalised intrinsics."""
  units = _choice(annotations["intrinsics_units"], INTRINSICS_UNITS, path, "intrinsics_units")
  k = _per_frame(annotations["intrinsics"], (3, 3), num_frames, path, "intrinsics", shared=True)
  form = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]], bool)  # entries that may be free.
  expected = np.broadcast_to(np.eye(3) * [0, 0, 1], k.shape)
  for t in range(num_frames):
    if (not np.allclose(k[t][~form], expected[t][~form], rtol=0, atol=ROTATION_TOLERANCE)
        or k[t, 0, 0] <= 0 or k[t, 1, 1] <= 0):
      raise VideoFormatError(path, f"intrinsics[{t}]", "want [[fx, 0, cx], [0, fy, cy], "
                                                       "[0, 0, 1]] with fx, fy > 0")
  if units == "pixels":
    return np.asarray(geometry.normalize_intrinsics(k, height, width), np.float64)
  return np.asarray(geometry.intrinsics_matrix(k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]),
                    np.float64)


def _world_to_camera(annotations: dict, num_frames: int, path: str) -> np.ndarray:
  """[T, 4, 4] float64 OpenCV world_to_camera."""
  pose_type = _choice(annotations["pose_type"], POSE_TYPES, path, "pose_type")
  convention = _choice(annotations["camera_convention"], CAMERA_CONVENTIONS, path,
                       "camera_convention")
  poses = _per_frame(annotations["camera_poses"], (4, 4), num_frames, path, "camera_poses")
  for t in range(num_frames):
    if np.abs(poses[t, 3] - [0, 0, 0, 1]).max() > ROTATION_TOLERANCE:
      raise VideoFormatError(path, f"camera_poses[{t}]", "last row must be [0, 0, 0, 1]")
    _check_rotation(poses[t, :3, :3], path, f"camera_poses[{t}]")
  cam_to_world = poses if pose_type == "camera_to_world" else geometry.invert_pose(poses)
  if convention in ("opengl", "blender"):  # Both look along -z with +y up.
    cam_to_world = geometry.opengl_to_opencv(cam_to_world)
  return geometry.invert_pose(cam_to_world)


# ------------------------------------------------------------------------------------------------
# Frames.


def _frame_files(annotations: dict, video_dir: str, path: str) -> list[str]:
  """Absolute paths of the T frames, in order."""
  if "frame_files" in annotations:
    names = annotations["frame_files"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
      raise VideoFormatError(path, "frame_files", "want a list of file names")
    files = [os.path.join(video_dir, n) for n in names]
    for t, file in enumerate(files):
      if not os.path.isfile(file):
        raise VideoFormatError(path, f"frame_files[{t}]", f"frame file {file} does not exist")
  else:
    folder = os.path.join(video_dir, FRAMES_DIR)
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(FRAME_EXTENSIONS)) if os.path.isdir(folder) else []
    files = [os.path.join(folder, n) for n in names]
  if not files:
    raise VideoFormatError(path, "frame_files", f"no frames: give frame_files or put "
                                                f"{'/'.join(FRAME_EXTENSIONS)} files in "
                                                f"{os.path.join(video_dir, FRAMES_DIR)}")
  return files


def _read_frames(files: Sequence[str], height: int, width: int, path: str) -> list[bytes]:
  """The encoded frames as stored (no re-encoding), checked against image_size."""
  frames, first = [], None
  for t, file in enumerate(files):
    with open(file, "rb") as f:
      data = f.read()
    try:
      size = image_decoding.image_size(data)
    except video_record.CorruptRecordError as e:
      raise VideoFormatError(path, f"frame {t} ({file})", f"not a readable PNG or JPEG image "
                                                          f"({e})") from e
    if size != (height, width):
      mixed = (f", frame 0 is {first[1]}x{first[0]} (mixed image sizes)"
               if first is not None and first != size else "")
      raise VideoFormatError(path, "image_size", f"frame {t} ({file}) is {size[1]}x{size[0]} "
                                                 f"(WxH), image_size says {width}x{height}{mixed}")
    first = first or size
    frames.append(data)
  return frames


# ------------------------------------------------------------------------------------------------
# Boxes.


def _parse_boxes(value: Any, num_frames: int, width: int, height: int, path: str
                 ) -> dict[int, dict[str, Any]]:
  """{id: per-object dict of [T]-indexed arrays + `present` [T] bool + category}."""
  if not isinstance(value, list):
    raise VideoFormatError(path, "boxes", "want a list with one list of boxes per frame")
  if len(value) != num_frames:
    raise VideoFormatError(path, "boxes", f"has {len(value)} entries, want one per frame: "
                                          f"{num_frames} frames")
  objects: dict[int, dict[str, Any]] = {}
  for t, frame_boxes in enumerate(value):
    if not isinstance(frame_boxes, list):
      raise VideoFormatError(path, f"boxes[{t}]", "want a list of boxes")
    for j, box in enumerate(frame_boxes):
      field = f"boxes[{t}][{j}]"
      _check_keys(box, BOX_KEYS, path, field)
      object_id = _integer(box["id"], 0, path, f"{field}.id")
      obj = objects.setdefault(object_id, dict(
          present=np.zeros(num_frames, bool), center=np.zeros((num_frames, 3)),
          size=np.ones((num_frames, 3)), rotation=np.broadcast_to(np.eye(3), (num_frames, 3, 3)
                                                                  ).copy(),
          box_2d=np.zeros((num_frames, 4)), has_box_2d=np.zeros(num_frames, bool),
          visible=np.ones(num_frames, bool), category=None, category_field=None))
      if obj["present"][t]:
        raise VideoFormatError(path, f"{field}.id", f"id {object_id} appears twice in frame {t}")
      obj["present"][t] = True
      obj["center"][t] = _numbers(box["center"], (3,), path, f"{field}.center")
      size = _numbers(box["size"], (3,), path, f"{field}.size")
      if np.any(size <= 0):
        raise VideoFormatError(path, f"{field}.size", f"extents must be > 0, got {size.tolist()}")
      obj["size"][t] = size
      obj["rotation"][t] = _rotation(box, path, field)
      if "visible" in box:
        if not isinstance(box["visible"], bool):
          raise VideoFormatError(path, f"{field}.visible", "want true or false")
        obj["visible"][t] = box["visible"]
      if "box_2d" in box:
        x0, y0, x1, y1 = _numbers(box["box_2d"], (4,), path, f"{field}.box_2d")
        if not (x0 < x1 and y0 < y1):
          raise VideoFormatError(path, f"{field}.box_2d", "want [x0, y0, x1, y1] pixels with "
                                                          "x0 < x1 and y0 < y1")
        obj["box_2d"][t] = np.clip([y0 / height, x0 / width, y1 / height, x1 / width], 0, 1)
        obj["has_box_2d"][t] = True
        if "visible" not in box:
          clipped = obj["box_2d"][t]
          obj["visible"][t] = clipped[2] > clipped[0] and clipped[3] > clipped[1]
      if "category" in box:
        category = _integer(box["category"], -1, path, f"{field}.category")
        if obj["category"] is not None and obj["category"] != category:
          raise VideoFormatError(path, f"{field}.category",
                                 f"object {object_id} has category {category} here and "
                                 f"{obj['category']} at {obj['category_field']}")
        obj["category"], obj["category_field"] = category, field
  return objects


# ------------------------------------------------------------------------------------------------
# One video.


def read_annotations(video_dir: str) -> tuple[str, dict[str, Any]]:
  """(path of annotations.json, its parsed top-level object with the keys checked)."""
  path = os.path.join(video_dir, ANNOTATIONS)
  if not os.path.isfile(path):
    raise VideoFormatError(path, "(file)", f"not found: each video directory needs an "
                                           f"{ANNOTATIONS}")
  try:
    with open(path, encoding="utf-8") as f:
      annotations = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise VideoFormatError(path, "(JSON)", f"not valid JSON: {e}") from e
  _check_keys(annotations, VIDEO_KEYS, path, "")
  if annotations["format_version"] != FORMAT_VERSION:
    raise VideoFormatError(path, "format_version", f"got {annotations['format_version']!r}, "
                                                   f"this reader knows {FORMAT_VERSION}")
  return path, annotations


def read_video(video_dir: str) -> dict[str, Any]:
  """One video directory -> a video record (see the module docstring for the rules).

  Returns:
    A record that passes `video_record.validate`: frames (the files' bytes), intrinsics [T, 3, 3],
    world_to_camera [T, 4, 4], box_corners_world [T, K, 8, 3], boxes_2d [T, K, 4], visible
    [T, K], instance_ids [K], category [K], attributes.

  Raises:
    VideoFormatError: naming the file and the field of the first problem found.
  """
  path, annotations = read_annotations(video_dir)
  size = annotations["image_size"]
  if (not isinstance(size, list) or len(size) != 2
      or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
    raise VideoFormatError(path, "image_size", f"want [height, width] positive integers, got "
                                               f"{size!r}")
  height, width = size
  video_id = annotations.get("video_id", os.path.basename(os.path.normpath(video_dir)))
  if not isinstance(video_id, str) or not video_id:
    raise VideoFormatError(path, "video_id", "want a non-empty string")
  frames = _read_frames(_frame_files(annotations, video_dir, path), height, width, path)
  num_frames = len(frames)
  intrinsics = _intrinsics(annotations, num_frames, height, width, path)
  world_to_camera = _world_to_camera(annotations, num_frames, path)
  objects = _parse_boxes(annotations["boxes"], num_frames, width, height, path)

  ids = sorted(objects)
  corners = np.zeros((num_frames, len(ids), 8, 3))
  boxes_2d = np.zeros((num_frames, len(ids), 4))
  visible = np.zeros((num_frames, len(ids)), bool)
  sources = set()
  for k, object_id in enumerate(ids):
    obj = objects[object_id]
    present = obj["present"]
    own = geometry.box_corners(obj["center"], obj["size"], obj["rotation"])  # [T, 8, 3]
    corners[:, k] = video_record.fill_from_nearest_frame(own, present)
    uvd = geometry.project_box(corners[:, k], world_to_camera, intrinsics)  # [T, 8, 3]
    if not np.any(present & np.any(uvd[..., 2] > MIN_DEPTH, axis=-1)):
      raise VideoFormatError(path, f"boxes[*] with id {object_id}",
                             f"the box is behind the camera (no corner deeper than {MIN_DEPTH}) "
                             f"in every one of the {int(present.sum())} frames that annotate "
                             "it: check camera_convention and pose_type")
    valid, _ = geometry.box_validity(uvd, min_depth=MIN_DEPTH)
    derived = geometry.box2d_from_corners(uvd)
    given = obj["has_box_2d"]
    visible[:, k] = present & obj["visible"] & (given | valid)
    boxes_2d[:, k] = np.where(given[:, None], obj["box_2d"], derived)
    sources.update(np.where(given[present], "given", "derived").tolist())
  boxes_2d = np.where(visible[..., None], boxes_2d, 0.0)
  category = [objects[i]["category"] for i in ids]
  record = {
      "video_id": video_id.encode("utf-8"),
      "frames": frames,
      "intrinsics": intrinsics.astype(np.float32),
      "world_to_camera": world_to_camera.astype(np.float32),
      "box_corners_world": corners.astype(np.float32),
      "boxes_2d": boxes_2d.astype(np.float32),
      "visible": visible,
      "instance_ids": np.asarray(ids, np.int32).reshape(len(ids)),
      "category": np.asarray([-1 if c is None else c for c in category], np.int32
                             ).reshape(len(ids)),
      "attributes": {
          "videos_camera_convention": annotations["camera_convention"],
          "videos_pose_type": annotations["pose_type"],
          "videos_intrinsics_units": annotations["intrinsics_units"],
          "videos_boxes_2d": sources.pop() if len(sources) == 1 else
                             ("mixed" if sources else "none"),
      },
  }
  video_record.validate(record)
  return record


# ------------------------------------------------------------------------------------------------
# Writing a record in the format.


def write_video_dir(record: dict[str, Any], video_dir: str, pose_type: str = "world_to_camera",
                    camera_convention: str = "opencv", intrinsics_units: str = "normalized",
                    rotation_format: str = "quaternion", write_boxes_2d: bool = True) -> str:
  """Writes a video record as a video directory of this format; returns the annotations path.

  Every object is annotated in every frame (a record has corners in all frames); with
  `write_boxes_2d` each frame gives the record's box_2d where visible and `"visible": false`
  elsewhere, so `read_video` gives the record back; without it the 2D boxes are left to be
  derived. Frames are written as stored (PNG or JPEG bytes).

  Args:
    record: a video record (video_record schema).
    video_dir: the directory to write (created; existing files of the same names are replaced).
    pose_type, camera_convention, intrinsics_units: the conventions to write in (module docstring).
    rotation_format: "quaternion" or "matrix" (the boxes' rotation key).
    write_boxes_2d: write box_2d / visible (True) or only the 3D boxes (False).
  """
  _choice(pose_type, POSE_TYPES, "write_video_dir", "pose_type")
  _choice(camera_convention, CAMERA_CONVENTIONS, "write_video_dir", "camera_convention")
  _choice(intrinsics_units, INTRINSICS_UNITS, "write_video_dir", "intrinsics_units")
  _choice(rotation_format, ("quaternion", "matrix"), "write_video_dir", "rotation_format")
  num_frames, _ = video_record.validate(record)
  os.makedirs(os.path.join(video_dir, FRAMES_DIR), exist_ok=True)
  height, width = image_decoding.image_size(record["frames"][0])
  names = []
  for t, data in enumerate(record["frames"]):
    data = bytes(data)
    extension = ".png" if data.startswith(_PNG_MAGIC) else ".jpg"
    if not data.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
      raise ValueError(f"Frame {t} of {record['video_id']!r} is neither PNG nor JPEG.")
    names.append(os.path.join(FRAMES_DIR, f"{t:06d}{extension}"))
    with open(os.path.join(video_dir, names[-1]), "wb") as f:
      f.write(data)
  intrinsics = np.asarray(record["intrinsics"], np.float64)
  if intrinsics_units == "pixels":
    intrinsics = geometry.pixel_intrinsics(intrinsics, height, width)
  cam_to_world = geometry.invert_pose(np.asarray(record["world_to_camera"], np.float64))
  if camera_convention != "opencv":  # The axis flip is its own inverse.
    cam_to_world = geometry.opengl_to_opencv(cam_to_world)
  poses = cam_to_world if pose_type == "camera_to_world" else geometry.invert_pose(cam_to_world)
  centers, sizes, rotations = geometry.box_from_corners(record["box_corners_world"])
  boxes = []
  for t in range(num_frames):
    frame_boxes = []
    for k, object_id in enumerate(np.asarray(record["instance_ids"]).tolist()):
      box = {"id": object_id, "center": centers[t, k].tolist(), "size": sizes[t, k].tolist()}
      if rotation_format == "quaternion":
        box["quaternion"] = geometry.matrix_to_quaternion(rotations[t, k]).tolist()
      else:
        box["rotation"] = rotations[t, k].tolist()
      if int(record["category"][k]) >= 0:
        box["category"] = int(record["category"][k])
      if write_boxes_2d:
        if record["visible"][t, k]:
          y0, x0, y1, x1 = np.asarray(record["boxes_2d"][t, k], np.float64).tolist()
          box["box_2d"] = [x0 * width, y0 * height, x1 * width, y1 * height]
        else:
          box["visible"] = False
      frame_boxes.append(box)
    boxes.append(frame_boxes)
  annotations = {
      "format_version": FORMAT_VERSION,
      "video_id": bytes(record["video_id"]).decode("utf-8"),
      "image_size": [height, width],
      "frame_files": names,
      "intrinsics_units": intrinsics_units,
      "intrinsics": np.asarray(intrinsics, np.float64).tolist(),
      "pose_type": pose_type,
      "camera_convention": camera_convention,
      "camera_poses": poses.tolist(),
      "boxes": boxes,
  }
  path = os.path.join(video_dir, ANNOTATIONS)
  text = json.dumps(annotations, indent=1)
  # One line per innermost list of numbers (a matrix row, a centre), not one line per number.
  text = re.sub(r"\[\s*([-+0-9.eE,\s]+?)\s*\]",
                lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return path


# ------------------------------------------------------------------------------------------------
# Conversion plan and CLI.


def list_videos(input_dir: str) -> list[str]:
  """The video directories of `input_dir` (its non-hidden subdirectories), sorted by name."""
  if not os.path.isdir(input_dir):
    raise FileNotFoundError(f"--input {input_dir} is not a directory.")
  videos = sorted(os.path.join(input_dir, n) for n in os.listdir(input_dir)
                  if not n.startswith(".") and os.path.isdir(os.path.join(input_dir, n)))
  if not videos:
    raise FileNotFoundError(f"{input_dir} holds no video directories (one subdirectory per "
                            f"video, each with an {ANNOTATIONS}).")
  return videos


def _convert_video(video_dir: str):
  yield dataset_conversion.guarded(video_dir, lambda: read_video(video_dir))


def conversion_plan(input_dir: str, out_dir: str, split: str = "train",
                    videos_per_shard: int = VIDEOS_PER_SHARD,
                    options: str = video_record.DEFAULT_OPTIONS
                    ) -> dataset_conversion.ConversionPlan:
  """Shards `{out_dir}/{split}.array_record-XXXXX-of-YYYYY` of `videos_per_shard` videos; one
  input = one video directory of `input_dir`."""
  shards = dataset_conversion.chunked_shards(
      list_videos(input_dir), videos_per_shard,
      lambda n, count: os.path.join(out_dir, f"{split}.array_record-{n:05d}-of-{count:05d}"))
  return dataset_conversion.ConversionPlan(shards, _convert_video, options=options)


def convert(input_dir: str, out_dir: str, split: str = "train",
            videos_per_shard: int = VIDEOS_PER_SHARD,
            options: str = video_record.DEFAULT_OPTIONS) -> dict[str, int]:
  """Converts every video directory of `input_dir` in this process (the first refused video
  stops it, naming it); returns {shard path: videos written}."""
  return dataset_conversion.run_local(conversion_plan(input_dir, out_dir, split,
                                                      videos_per_shard, options))


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
  parser = argparse.ArgumentParser(prog="python -m data_pipelines.videos",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--input", required=True,
                      help="Directory with one subdirectory per video (annotations.json + "
                           "frames/).")
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--split", default="train",
                      help="Shard name prefix: configs/videos.py trains on train* and "
                           "evaluates on eval*.")
  parser.add_argument("--videos_per_shard", type=int, default=VIDEOS_PER_SHARD)
  parser.add_argument("--options", default=video_record.DEFAULT_OPTIONS,
                      help="ArrayRecord writer options (group_size must be 1).")
  args = parser.parse_args(argv)
  written = convert(args.input, args.out_dir, args.split, args.videos_per_shard, args.options)
  for path, count in written.items():
    print(f"{path}: {count} videos")
  return written


if __name__ == "__main__":
  main()
