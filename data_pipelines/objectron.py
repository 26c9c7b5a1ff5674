"""Objectron reader: `tf.train.SequenceExample` "sequences" shards -> video records (DESIGN.md).

Source format (google-research-datasets/Objectron; files we read the facts from):
  * `objectron/schema/features.py`: the feature names and the `SEQUENCE_FEATURE_MAP` /
    `SEQUENCE_CONTEXT_MAP`. Context: `sequence_id` (bytes, "class/batch-i/j") and `count` (int64,
    number of frames). Everything else is a feature list with one `Feature` per frame:
      image/encoded        bytes    the frame (JPEG in the released shards; PNG also accepted)
      image/width, height  int64[1] optional, cross-checked against the decoded image header
      instance_num         int64[1] number of annotated objects N_t in the frame
      point_num            int64[N_t] keypoints per object (9 for boxes), optional
      point_3d             float[N_t * 9 * 3] keypoints in the ARKit *camera* frame, metres
      point_2d             float[N_t * 9 * 3] (u, v, depth), u, v in [0, 1] of the stored image
      object/visibility    float[N_t] annotation visibility, optional
      object/name          bytes[N_t] category names, optional
      object/translation, object/orientation (row-major 3x3), object/scale: the box in the camera
                           frame; used only when point_3d is absent
      camera/intrinsics    float[9]  row-major 3x3, pixels of the *capture* (ARKit) image
      camera/extrinsics    float[16] row-major 4x4 camera pose w.r.t. the AR-session world
                           origin, i.e. camera-to-world
      camera/view, camera/projection: the OpenGL pair (world-to-camera, projection); not needed.
  * `objectron/schema/annotation_data.proto`: point_3d is "in the camera coordinate system",
    point_2d is normalised with (0, 0) the top-left and (1, 1) the bottom-right corner.
  * `objectron/schema/object.proto` + `objectron/dataset/box.py` (`scaled_axis_aligned_vertices`):
    keypoint 0 is the box centre, keypoints 1..8 are the corners
    (-,-,-), (-,-,+), (-,+,-), (-,+,+), (+,-,-), (+,-,+), (+,+,-), (+,+,+) in the object's own
    (x, y, z) axes. That is exactly our canonical order (index bits x=4, y=2, z=1, "-" = bit 0),
    so the permutation is the identity after dropping the centre (`OBJECTRON_CORNER_ORDER`,
    tested on a box with known axes in tests/test_objectron.py).
  * `objectron/schema/a_r_capture_metadata.proto` (ARCamera): intrinsics and view matrix refer to
    the sensor's landscape capture image; `notebooks/objectron-geometry-tutorial.ipynb`
    (`project_points`) maps NDC to the upright portrait frames with u = (1 + ndc_y) / 2,
    v = (1 + ndc_x) / 2, i.e. the frames are the capture image rotated 90 degrees clockwise.
    NVlabs/CenterPose (`src/tools/objectron_eval/eval_image_official.py`) confirms on the records:
    intrinsics are pixels of the 1440x1920 capture (landscape 1920x1440), cx/cy must be swapped
    for the portrait frames, objects in front of the camera have point_3d z < 0 (-Z look) and
    `object/translation`+`orientation` are object-to-camera.

Conversion to the canonical conventions:
  * ARKit camera (x right, y up, looks along -Z, in the landscape capture) -> OpenCV camera of the
    stored frame. Which of the three layouts ("landscape", "portrait_cw", "portrait_ccw") the
    frames have, whether a portrait frame's horizontal principal point is `H - cy` (rotating the
    capture image; the geometry tutorial) or `cy` (the official parsing notebook), and whether
    the intrinsics refer to the capture size or the stored size, is resolved per file from the
    file itself (`orientation="auto"`, `principal_point="auto"`): the candidate that reprojects
    point_3d onto the stored point_2d best is used and recorded in the video record's
    `attributes` (objectron_orientation, objectron_principal_point, ...), and an error naming
    the file and record is raised if none does within `reprojection_tolerance`. Fixed choices
    can be forced through the config. A file that is not an Objectron tfrecord of
    SequenceExamples fails with an error naming it.
  * world_to_camera = camera-axes change @ inverse(camera/extrinsics); the world frame is the
    AR-session world (y up) unchanged.
  * Box corners in world = camera/extrinsics applied to point_3d (objects are static, the camera
    moves, so these agree across frames up to annotation noise). An object absent from a frame's
    annotation gets its corners from the nearest frame that has it and is marked not visible.
  * visible = object/visibility > threshold (when present) and `geometry.box_validity` of the
    projection (all corners in front, overlapping the image); 2D boxes from the clipped projected
    corners, zeros where not visible.

TensorFlow is imported inside functions only (it is in the `data` extra; training never imports
it). CLI: `python -m data_pipelines.objectron --input 'shards/*' --out_dir out/` writes one
ArrayRecord file per input shard.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import glob
import io
import os
from typing import Any, Iterator, Sequence

import numpy as np

from data_pipelines import dataset_conversion
from data_pipelines import video_record
from neural_assets import geometry

CATEGORIES = ("bike", "book", "bottle", "camera", "cereal_box", "chair", "cup", "laptop", "shoe")
NUM_KEYPOINTS = 9
# Objectron keypoint index of canonical corner i (keypoint 0 is the centre).
OBJECTRON_CORNER_ORDER = np.arange(1, 9)

# ARKit camera axes -> OpenCV axes of the stored frame, per frame layout (rows: OpenCV x, y, z
# written in ARKit camera coordinates). All have determinant +1.
_CV_FROM_ARKIT = {
    # Frames are the capture image: x right, y down (= -y up), z forward (= -z).
    "landscape": np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], np.float64),
    # Capture rotated 90 deg clockwise: portrait right = capture up (+y), portrait down = capture
    # right (+x).
    "portrait_cw": np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], np.float64),
    # Capture rotated 90 deg counter-clockwise.
    "portrait_ccw": np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1]], np.float64),
}
ORIENTATIONS = tuple(_CV_FROM_ARKIT)
# Horizontal principal point of a portrait frame, in capture pixels: "H-cy" follows from rotating
# the capture image (this reader's derivation, and the geometry tutorial's projection matrix);
# "cy" is what the official parsing notebook uses. Only one can match a given file, so "auto"
# keeps the one whose projection of point_3d lands on point_2d.
PRINCIPAL_POINTS = ("H-cy", "cy")


@dataclasses.dataclass(frozen=True)
class ObjectronConfig:
  """Reader knobs.

  Attributes:
    orientation: "auto" or one of ORIENTATIONS: how the stored frames relate to the landscape
      capture image the ARKit intrinsics refer to.
    principal_point: "auto" or one of PRINCIPAL_POINTS: the portrait frames' horizontal principal
      point convention (ignored for landscape frames).
    capture_size: (width, height) in pixels of the landscape capture image that
      `camera/intrinsics` is expressed in (1920x1440 for the released data, per CenterPose). In
      "auto" mode the stored frame size is tried as well, in case intrinsics were rescaled.
    reprojection_tolerance: median |point_2d - our projection| (normalised units) above which a
      camera candidate is rejected.
    verify_projection: check the chosen camera against point_2d even for a forced orientation.
    visibility_threshold: `object/visibility` must exceed this (CenterPose / Objectron eval: 0.1).
    min_depth: corners closer than this (metres, camera z) make a box not visible.
    min_box_size: minimum clipped 2D box side (normalised) for a visible box.
  """
  orientation: str = "auto"
  principal_point: str = "auto"
  capture_size: tuple[int, int] = (1920, 1440)
  reprojection_tolerance: float = 0.005
  verify_projection: bool = True
  visibility_threshold: float = 0.1
  min_depth: float = 1e-2
  min_box_size: float = 0.0


class ObjectronFormatError(ValueError):
  """A sequence example does not follow the Objectron sequence schema."""


# ------------------------------------------------------------------------------------------------
# Camera conversion.


def camera_from_arkit(intrinsics_pixels, camera_to_world, orientation, reference_size,
                      principal_point="H-cy"):
  """ARKit camera -> canonical (normalised intrinsics, OpenCV world_to_camera).

  Args:
    intrinsics_pixels: [T, 3, 3] ARKit intrinsics in pixels of the landscape reference image.
    camera_to_world: [T, 4, 4] ARKit camera poses (camera/extrinsics).
    orientation: one of ORIENTATIONS (layout of the stored frames).
    reference_size: (width, height) of the landscape image the intrinsics refer to.
    principal_point: one of PRINCIPAL_POINTS, for the portrait layouts.

  Returns:
    intrinsics [T, 3, 3] normalised for the stored frames; world_to_camera [T, 4, 4] OpenCV.
  """
  if orientation not in _CV_FROM_ARKIT:
    raise ValueError(f"Unknown Objectron orientation {orientation!r}; want one of "
                     f"{ORIENTATIONS} or 'auto'.")
  if principal_point not in PRINCIPAL_POINTS:
    raise ValueError(f"Unknown Objectron principal_point {principal_point!r}; want one of "
                     f"{PRINCIPAL_POINTS} or 'auto'.")
  width, height = (float(s) for s in reference_size)
  k = np.asarray(intrinsics_pixels, np.float64)
  fx, fy, cx, cy = k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]
  # Capture pixel coordinates: u_l = fx * x / -z + cx, v_l = cy - fy * y / -z (y up, v down).
  if orientation == "landscape":
    norm = (fx / width, fy / height, cx / width, cy / height)
  else:
    # portrait_cw: u_p = (H - v_l) / H, v_p = u_l / W; portrait_ccw: u_p = v_l / H,
    # v_p = (W - u_l) / W; the horizontal principal point as `principal_point` says.
    cu = (height - cy) if principal_point == "H-cy" else cy
    cv = cx if orientation == "portrait_cw" else width - cx
    norm = (fy / height, fx / width, cu / height, cv / width)
  intrinsics = geometry.intrinsics_matrix(*norm)
  axes = geometry.pose_matrix(_CV_FROM_ARKIT[orientation], np.zeros(3))
  world_to_camera = axes @ geometry.invert_pose(np.asarray(camera_to_world, np.float64))
  return intrinsics.astype(np.float32), world_to_camera.astype(np.float32)


def _median_error(keypoints_world, intrinsics, world_to_camera, min_depth):
  errs = []
  for world, p2d, t in keypoints_world:
    cam = geometry.transform_points(world_to_camera[t].astype(np.float64), world)
    uv, depth = geometry.project(cam, intrinsics[t].astype(np.float64))
    front = depth > min_depth
    errs.append(np.abs(uv[front] - p2d[front, :2]).max(axis=-1))
  errs = np.concatenate(errs) if errs else np.zeros(0)
  return float(np.median(errs)) if errs.size else np.inf


# ------------------------------------------------------------------------------------------------
# SequenceExample parsing.


def _feature_list(seq, key, kind, name, required=True):
  """Per-frame values of a feature list as a list of numpy arrays (None if absent, optional)."""
  lists = seq.feature_lists.feature_list
  if key not in lists:
    if required:
      raise ObjectronFormatError(f"Objectron record {name!r} has no feature list {key!r}.")
    return None
  out = []
  for t, feature in enumerate(lists[key].feature):
    if feature.WhichOneof("kind") not in (kind, None):
      raise ObjectronFormatError(f"Objectron record {name!r}: feature {key!r} frame {t} holds "
                                 f"{feature.WhichOneof('kind')}, want {kind}.")
    values = getattr(feature, kind).value
    if kind == "bytes_list":
      out.append(list(values))
    else:
      out.append(np.asarray(values, np.float64 if kind == "float_list" else np.int64))
  return out


def _scalar_per_frame(values, key, name):
  out = []
  for t, v in enumerate(values):
    if v.size != 1:
      raise ObjectronFormatError(f"Objectron record {name!r}: {key!r} frame {t} has {v.size} "
                                 f"values, want 1.")
    out.append(int(v[0]))
  return out


def _fixed_matrix(values, key, name, shape):
  out = []
  for t, v in enumerate(values):
    if v.size != int(np.prod(shape)):
      raise ObjectronFormatError(f"Objectron record {name!r}: {key!r} frame {t} has {v.size} "
                                 f"values, want {int(np.prod(shape))} (row-major {shape}).")
    out.append(v.reshape(shape))
  return np.stack(out)


def _image_size(data: bytes, name: str, t: int) -> tuple[int, int]:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as im:
      return im.size  # (width, height), header only.
  except Exception as e:  # noqa: BLE001 - any failure means an undecodable frame.
    raise ObjectronFormatError(f"Objectron record {name!r}: image/encoded frame {t} is not a "
                               f"readable image ({e}).") from e


def _category_index(names: Sequence[bytes], sequence_id: str) -> int:
  for raw in names:
    name = raw.decode("utf-8", "replace").strip().lower()
    if name in CATEGORIES:
      return CATEGORIES.index(name)
  prefix = sequence_id.split("/")[0].strip().lower()
  return CATEGORIES.index(prefix) if prefix in CATEGORIES else -1


def _points_from_object_features(translation, orientation, scale, count, t, name):
  """[N, 9, 3] camera-frame keypoints from object/translation, orientation, scale."""
  if translation.size != count * 3 or orientation.size != count * 9 or scale.size != count * 3:
    raise ObjectronFormatError(
        f"Objectron record {name!r} frame {t}: object/translation, object/orientation, "
        f"object/scale have {translation.size}, {orientation.size}, {scale.size} values, want "
        f"{count * 3}, {count * 9}, {count * 3} for instance_num={count}.")
  rot = orientation.reshape(count, 3, 3)
  center = translation.reshape(count, 3)
  corners = geometry.box_corners(center, scale.reshape(count, 3), rot)
  return np.concatenate([center[:, None], corners], axis=1)


def parse_sequence_example(serialized: bytes, config: ObjectronConfig = ObjectronConfig(),
                           record_name: str = "") -> dict[str, Any]:
  """Parses one serialized Objectron SequenceExample into a video record.

  Args:
    serialized: bytes of a `tf.train.SequenceExample` in the Objectron sequences schema.
    config: reader knobs.
    record_name: used in error messages when the record has no `sequence_id`.

  Returns:
    A video record (see `data_pipelines.video_record`).

  Raises:
    ObjectronFormatError: missing features, wrong lengths, or cameras that do not reproduce the
      stored 2D keypoints.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  try:
    seq = tf.train.SequenceExample.FromString(serialized)
  except message.DecodeError as e:
    raise ObjectronFormatError(
        f"{record_name or 'Record'} is not an Objectron record (not a tf.train.SequenceExample: "
        f"{e}); pass the 'sequences' tfrecord shards of Objectron.") from e
  ctx = seq.context.feature
  sequence_id = (ctx["sequence_id"].bytes_list.value[0].decode("utf-8", "replace")
                 if "sequence_id" in ctx and ctx["sequence_id"].bytes_list.value else "")
  name = (f"{record_name} ({sequence_id})" if record_name and sequence_id else
          sequence_id or record_name or "<unnamed>")

  images = _feature_list(seq, "image/encoded", "bytes_list", name)
  num_frames = len(images)
  if num_frames == 0:
    raise ObjectronFormatError(f"Objectron record {name!r} has no frames.")
  if "count" in ctx and ctx["count"].int64_list.value:
    count = int(ctx["count"].int64_list.value[0])
    if count != num_frames:
      raise ObjectronFormatError(f"Objectron record {name!r}: context count={count} but "
                                 f"image/encoded has {num_frames} frames.")

  def per_frame(key, kind, required=True):
    values = _feature_list(seq, key, kind, name, required)
    if values is not None and len(values) != num_frames:
      raise ObjectronFormatError(f"Objectron record {name!r}: feature list {key!r} has "
                                 f"{len(values)} frames, image/encoded has {num_frames}.")
    return values

  frames = []
  for t, value in enumerate(images):
    if len(value) != 1:
      raise ObjectronFormatError(f"Objectron record {name!r}: image/encoded frame {t} has "
                                 f"{len(value)} values, want 1.")
    frames.append(bytes(value[0]))
  sizes = [_image_size(f, name, t) for t, f in enumerate(frames)]
  if len(set(sizes)) != 1:
    raise ObjectronFormatError(f"Objectron record {name!r}: frames differ in size {set(sizes)}.")
  image_w, image_h = sizes[0]
  for key, want in (("image/width", image_w), ("image/height", image_h)):
    stored = per_frame(key, "int64_list", required=False)
    if stored is not None and any(v.size and int(v[0]) != want for v in stored):
      raise ObjectronFormatError(f"Objectron record {name!r}: {key} disagrees with the decoded "
                                 f"frame size {image_w}x{image_h}.")

  instance_num = _scalar_per_frame(per_frame("instance_num", "int64_list"), "instance_num", name)
  k_max = max(instance_num)
  intr_px = _fixed_matrix(per_frame("camera/intrinsics", "float_list"), "camera/intrinsics",
                          name, (3, 3))
  cam_to_world = _fixed_matrix(per_frame("camera/extrinsics", "float_list"),
                               "camera/extrinsics", name, (4, 4))
  points_2d = per_frame("point_2d", "float_list", required=k_max > 0)
  points_3d = per_frame("point_3d", "float_list", required=False)
  point_num = per_frame("point_num", "int64_list", required=False)
  visibility = per_frame("object/visibility", "float_list", required=False)
  names = per_frame("object/name", "bytes_list", required=False)
  if points_3d is None and k_max > 0:
    obj = [per_frame(f"object/{f}", "float_list", required=False)
           for f in ("translation", "orientation", "scale")]
    if any(o is None for o in obj):
      raise ObjectronFormatError(f"Objectron record {name!r} has neither 'point_3d' nor all of "
                                 f"object/translation, object/orientation, object/scale.")

  # Per-frame keypoints [T, K, 9, 3] with a presence mask [T, K].
  kp3d = np.zeros((num_frames, k_max, NUM_KEYPOINTS, 3))
  kp2d = np.zeros((num_frames, k_max, NUM_KEYPOINTS, 3))
  present = np.zeros((num_frames, k_max), bool)
  vis = np.ones((num_frames, k_max))
  for t, n in enumerate(instance_num):
    if n < 0:
      raise ObjectronFormatError(f"Objectron record {name!r}: instance_num={n} at frame {t}.")
    if n == 0:
      continue
    if point_num is not None and point_num[t].size and np.any(point_num[t] != NUM_KEYPOINTS):
      raise ObjectronFormatError(f"Objectron record {name!r} frame {t}: point_num "
                                 f"{point_num[t].tolist()}, want {NUM_KEYPOINTS} per box.")
    want = n * NUM_KEYPOINTS * 3
    if points_2d[t].size != want:
      raise ObjectronFormatError(f"Objectron record {name!r} frame {t}: point_2d has "
                                 f"{points_2d[t].size} values, want {want} (instance_num={n}).")
    kp2d[t, :n] = points_2d[t].reshape(n, NUM_KEYPOINTS, 3)
    if points_3d is not None:
      if points_3d[t].size != want:
        raise ObjectronFormatError(f"Objectron record {name!r} frame {t}: point_3d has "
                                   f"{points_3d[t].size} values, want {want} (instance_num={n}).")
      kp3d[t, :n] = points_3d[t].reshape(n, NUM_KEYPOINTS, 3)
    else:
      kp3d[t, :n] = _points_from_object_features(obj[0][t], obj[1][t], obj[2][t], n, t, name)
    if visibility is not None:
      if visibility[t].size != n:
        raise ObjectronFormatError(f"Objectron record {name!r} frame {t}: object/visibility has "
                                   f"{visibility[t].size} values, want {n}.")
      vis[t, :n] = visibility[t]
    present[t, :n] = True

  # Static objects: world corners from each frame's camera pose; absent frames borrow the
  # nearest frame that annotates the object.
  corners_cam = kp3d[:, :, OBJECTRON_CORNER_ORDER]  # [T, K, 8, 3] ARKit camera frame.
  corners_world = geometry.transform_points(cam_to_world[:, None, None], corners_cam)
  for k in range(k_max):
    corners_world[:, k] = video_record.fill_from_nearest_frame(corners_world[:, k],
                                                               present[:, k])

  intrinsics, world_to_camera, attributes = _resolve_camera(
      intr_px, cam_to_world, kp3d, kp2d, present, (image_w, image_h), config, name)

  uvd = geometry.project_box(corners_world, world_to_camera[:, None].astype(np.float64),
                             intrinsics[:, None].astype(np.float64))
  valid, _ = geometry.box_validity(uvd, min_depth=config.min_depth, min_size=config.min_box_size)
  visible = present & valid & (vis > config.visibility_threshold)
  boxes_2d = np.where(visible[..., None], geometry.box2d_from_corners(uvd), 0.0)

  category = np.full((k_max,), -1, np.int32)
  for k in range(k_max):
    frame_names = [names[t][k] for t in np.flatnonzero(present[:, k])
                   if names is not None and len(names[t]) > k]
    category[k] = _category_index(frame_names, sequence_id)

  record = {
      "video_id": (sequence_id or record_name).encode("utf-8"),
      "frames": frames,
      "intrinsics": intrinsics.astype(np.float32),
      "world_to_camera": world_to_camera.astype(np.float32),
      "box_corners_world": corners_world.astype(np.float32),
      "boxes_2d": boxes_2d.astype(np.float32),
      "visible": visible.astype(bool),
      "instance_ids": np.arange(k_max, dtype=np.int32),
      "category": category,
      "attributes": attributes,
  }
  video_record.validate(record)
  return record


def _candidates(config, image_size):
  """(orientation, principal point, capture size) triples to try, the geometric default first."""
  image_w, image_h = image_size
  stored_landscape = (max(image_w, image_h), min(image_w, image_h))
  sizes = [tuple(config.capture_size)]
  if config.orientation == "auto" and stored_landscape != sizes[0]:
    sizes.append(stored_landscape)
  orientations = ORIENTATIONS if config.orientation == "auto" else (config.orientation,)
  default_pp = {"portrait_cw": "H-cy", "portrait_ccw": "cy", "landscape": "H-cy"}
  out = []
  for size in sizes:
    for orientation in orientations:
      points = ([default_pp[orientation]] if orientation == "landscape" else
                [default_pp[orientation]] + [p for p in PRINCIPAL_POINTS
                                             if p != default_pp[orientation]])
      if config.principal_point != "auto" and orientation != "landscape":
        points = [config.principal_point]
      out.extend((orientation, p, size) for p in points)
  return out


def _resolve_camera(intr_px, cam_to_world, kp3d, kp2d, present, image_size, config, name):
  """Picks (or checks) the frame layout, principal point and intrinsics reference size against
  point_2d; returns (intrinsics, world_to_camera, attributes saying which was used)."""
  if config.principal_point not in ("auto",) + PRINCIPAL_POINTS:
    raise ValueError(f"Unknown Objectron principal_point {config.principal_point!r}; want one "
                     f"of {PRINCIPAL_POINTS} or 'auto'.")
  keypoints_world = []
  for t in range(kp3d.shape[0]):
    if np.any(present[t]):
      pts = kp3d[t][present[t]].reshape(-1, 3)
      p2d = kp2d[t][present[t]].reshape(-1, 3)
      keypoints_world.append((geometry.transform_points(cam_to_world[t], pts), p2d, t))

  def attributes(orientation, principal_point, size, err):
    return {"objectron_orientation": orientation,
            "objectron_principal_point": principal_point if orientation != "landscape" else "cy",
            "objectron_capture_size": f"{size[0]}x{size[1]}",
            "objectron_reprojection_error": "unchecked" if err is None else f"{err:.3g}"}

  image_w, image_h = image_size
  auto = config.orientation == "auto" or config.principal_point == "auto"
  if not keypoints_world and config.orientation == "auto":
    # Nothing to check against: fall back to the released layout (portrait frames when the
    # stored frames are portrait).
    default = "portrait_cw" if image_h > image_w else "landscape"
    pp = "H-cy" if config.principal_point == "auto" else config.principal_point
    intrinsics, w2c = camera_from_arkit(intr_px, cam_to_world, default, config.capture_size, pp)
    return intrinsics, w2c, attributes(default, pp, config.capture_size, None)
  results = []
  for orientation, principal_point, size in _candidates(config, image_size):
    intrinsics, w2c = camera_from_arkit(intr_px, cam_to_world, orientation, size,
                                        principal_point)
    err = _median_error(keypoints_world, intrinsics, w2c, config.min_depth)
    results.append((err, orientation, principal_point, size, intrinsics, w2c))
  if not keypoints_world:
    _, orientation, principal_point, size, intrinsics, w2c = results[0]
    return intrinsics, w2c, attributes(orientation, principal_point, size, None)
  best = min(results, key=lambda r: r[0])  # The first of equals: the geometric default.
  if (auto or config.verify_projection) and not best[0] <= config.reprojection_tolerance:
    tried = ", ".join(f"{o}/{p} @ {s[0]}x{s[1]}: {e:.4g}" for e, o, p, s, _, _ in results)
    raise ObjectronFormatError(
        f"Objectron record {name!r}: no camera layout / principal point convention reprojects "
        f"point_3d onto the stored point_2d within {config.reprojection_tolerance} (median error "
        f"per candidate: {tried}). Set ObjectronConfig.orientation / principal_point / "
        f"capture_size to match the data.")
  err, orientation, principal_point, size, intrinsics, w2c = best
  return intrinsics, w2c, attributes(orientation, principal_point, size, err)


# ------------------------------------------------------------------------------------------------
# Files and CLI.


def read_serialized(path: str) -> Iterator[bytes]:
  """The serialized records of a tfrecord shard; a file that is not one raises
  ObjectronFormatError naming it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  iterator = iter(tf.data.TFRecordDataset(path).as_numpy_iterator())
  index = 0
  while True:
    try:
      raw = next(iterator)
    except StopIteration:
      return
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
      raise ObjectronFormatError(
          f"{path}: not a readable tfrecord file after {index} records ({e.message.strip()}); "
          f"pass the 'sequences' tfrecord shards of Objectron.") from e
    yield raw
    index += 1


def read_tfrecord(path: str, config: ObjectronConfig = ObjectronConfig()) -> Iterator[dict]:
  """Yields one video record per SequenceExample in a tfrecord shard."""
  for index, raw in enumerate(read_serialized(path)):
    yield parse_sequence_example(raw, config, record_name=f"{path}#{index}")


def _convert_shard(path: str, config: ObjectronConfig):
  for index, raw in enumerate(read_serialized(path)):
    name = f"{path}#{index}"
    yield dataset_conversion.guarded(
        name, lambda: parse_sequence_example(raw, config, record_name=name))


def conversion_plan(inputs: Sequence[str], out_dir: str,
                    config: ObjectronConfig = ObjectronConfig(),
                    options: str = video_record.DEFAULT_OPTIONS
                    ) -> dataset_conversion.ConversionPlan:
  """One ArrayRecord file per input tfrecord shard (`<basename>.array_record`)."""
  shards = tuple(dataset_conversion.Shard(
      os.path.join(out_dir, os.path.basename(p) + ".array_record"), (p,)) for p in inputs)
  return dataset_conversion.ConversionPlan(
      shards, functools.partial(_convert_shard, config=config), options=options)


def convert(inputs: Sequence[str], out_dir: str, config: ObjectronConfig = ObjectronConfig(),
            options: str = video_record.DEFAULT_OPTIONS) -> dict[str, int]:
  """Converts tfrecord shards to ArrayRecord files (one per shard) in this process
  (`data_pipelines.beam_convert` runs the same plan on Apache Beam); returns {output: count}."""
  return dataset_conversion.run_local(conversion_plan(inputs, out_dir, config, options))


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--input", nargs="+", required=True,
                      help="Objectron sequences tfrecord shards (globs allowed).")
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--orientation", default="auto", choices=("auto",) + ORIENTATIONS)
  parser.add_argument("--principal_point", default="auto", choices=("auto",) + PRINCIPAL_POINTS)
  parser.add_argument("--capture_width", type=int, default=ObjectronConfig.capture_size[0])
  parser.add_argument("--capture_height", type=int, default=ObjectronConfig.capture_size[1])
  parser.add_argument("--reprojection_tolerance", type=float,
                      default=ObjectronConfig.reprojection_tolerance)
  parser.add_argument("--visibility_threshold", type=float,
                      default=ObjectronConfig.visibility_threshold)
  args = parser.parse_args(argv)
  paths = sorted(p for pattern in args.input for p in (glob.glob(pattern) or [pattern]))
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"Objectron input shards not found: {missing}")
  config = ObjectronConfig(orientation=args.orientation, principal_point=args.principal_point,
                           capture_size=(args.capture_width, args.capture_height),
                           reprojection_tolerance=args.reprojection_tolerance,
                           visibility_threshold=args.visibility_threshold)
  for out, count in convert(paths, args.out_dir, config).items():
    print(f"{out}: {count} videos")


if __name__ == "__main__":
  main()
