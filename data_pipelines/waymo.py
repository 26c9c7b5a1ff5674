"""Waymo Open Dataset (perception v2, Parquet) reader -> video records (DESIGN.md).

One video = one segment x one camera (FRONT by default), frames ordered by timestamp.

Source format (waymo-research/waymo-open-dataset, `src/waymo_open_dataset/v2/`; files read):
  * `component.py`: a component is stored as flat Parquet columns named `key.<key field>` for the
    keys and `[<ComponentClass>].<field>.<subfield>` for the data; one file per segment and
    component at `<dataset_dir>/<component tag>/<segment_context_name>.parquet`.
  * `perception/base.py`: keys `key.segment_context_name` (string),
    `key.frame_timestamp_micros` (int64), `key.camera_name` (int8), `key.laser_object_id` (string).
    Some of the repository's own test Parquet files store `key.camera_name` as the enum name
    ("FRONT", ...): both are accepted, and when no row matches the error lists the values found.
  * `perception/camera_image.py`: `[CameraImageComponent].image` (JPEG bytes),
    `[CameraImageComponent].pose.transform` (SDC pose at capture); `CameraName` FRONT=1,
    FRONT_LEFT=2, FRONT_RIGHT=3, SIDE_LEFT=4, SIDE_RIGHT=5.
  * `perception/context.py`: `[CameraCalibrationComponent].intrinsic.{f_u,f_v,c_u,c_v,k1,k2,p1,
    p2,k3}` (float64, pixels of the stored image), `.extrinsic.transform` (camera frame ->
    vehicle frame), `.width`, `.height` (int32).
  * `perception/box.py` + `column_types.py` (`Box3d`): `[LiDARBoxComponent].box.center.{x,y,z}`,
    `.box.size.{x,y,z}` (length along the box x, width y, height z), `.box.heading` (yaw that
    rotates +x onto the box front, about +z), `.type` (BoxType: 0 unknown, 1 vehicle,
    2 pedestrian, 3 sign, 4 cyclist), `.num_lidar_points_in_box`; boxes are "defined w.r.t. the
    frame vehicle pose coordinate system".
  * `perception/pose.py`: `[VehiclePoseComponent].world_from_vehicle.transform`.
  * `column_types.py` (`Transform`): a flattened 4x4 matrix, row-major (as the v1 `Transform`
    proto it is converted from); the code schema says `list<float64>[16]`, the released files
    store vehicle poses as `list<float32>[16]`: both are accepted (cast to float64).

Conversion to the canonical conventions:
  * Boxes: `geometry.box_corners(center, size, yaw_rotation(heading))` in the vehicle frame of
    their frame, then to the world with that frame's `world_from_vehicle`.
  * Camera: world_to_camera = inverse(world_from_vehicle @ extrinsic), with the Waymo camera axes
    (x forward, y left, z up) changed to OpenCV (`geometry.waymo_camera_to_opencv`). The frame's
    vehicle pose is used for both boxes and camera, so a box lands in the camera exactly as
    `inverse(extrinsic) @ box_vehicle`, which is how Waymo projects its own labels; the rolling
    shutter and the small pose difference to the camera's capture time are ignored.
  * Intrinsics normalised by the calibration width / height (`geometry.normalize_intrinsics`,
    OpenCV pixel-centre convention); the record's intrinsics are the pinhole part (the schema has
    no distortion). The lens distortion (k1, k2, p1, p2, k3; radial-tangential, as OpenCV and
    Waymo's `camera_model.cc`) is applied to the projected corners (`distort`) for the 2D boxes
    and the visibility test: ignoring it moved boxes at the image border of real files by up to
    33 px.
  * Identity across frames: `key.laser_object_id` -> a stable instance index (sorted ids); in
    frames where an object is not labelled its corners are zero and it is not visible.
  * visible = labelled in the frame, `geometry.box_validity` (all corners in front of the camera by
    `min_depth` metres, projection overlapping the image, at least `min_box_size`) and at least
    `min_lidar_points` lidar points. Objects never visible in this camera are dropped.
  * category = BoxType value, -1 for TYPE_UNKNOWN.
  * `camera_box` / `camera_to_lidar_box_association` and the v1 `Frame` tfrecords are not read.

CLI: `python -m data_pipelines.waymo --input_dir <v2 dir> --out_dir out/ --camera FRONT`.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import io
import os
from typing import Any, Iterator, Sequence

import numpy as np

from data_pipelines import dataset_conversion
from data_pipelines import video_record
from neural_assets import geometry

CAMERA_NAMES = {"FRONT": 1, "FRONT_LEFT": 2, "FRONT_RIGHT": 3, "SIDE_LEFT": 4, "SIDE_RIGHT": 5}
BOX_TYPES = ("unknown", "vehicle", "pedestrian", "sign", "cyclist")

# Component folder names (tags) and column names, as written by the v2 converter.
CAMERA_IMAGE, CAMERA_CALIBRATION = "camera_image", "camera_calibration"
LIDAR_BOX, VEHICLE_POSE = "lidar_box", "vehicle_pose"
KEY_SEGMENT = "key.segment_context_name"
KEY_TIMESTAMP = "key.frame_timestamp_micros"
KEY_CAMERA = "key.camera_name"
KEY_OBJECT = "key.laser_object_id"
IMAGE = "[CameraImageComponent].image"
IMAGE_POSE = "[CameraImageComponent].pose.transform"
_CALIB = "[CameraCalibrationComponent]"
CALIB_INTRINSIC = {k: f"{_CALIB}.intrinsic.{k}" for k in ("f_u", "f_v", "c_u", "c_v")}
DISTORTION = ("k1", "k2", "p1", "p2", "k3")
CALIB_DISTORTION = {k: f"{_CALIB}.intrinsic.{k}" for k in DISTORTION}
CALIB_EXTRINSIC = f"{_CALIB}.extrinsic.transform"
CALIB_WIDTH, CALIB_HEIGHT = f"{_CALIB}.width", f"{_CALIB}.height"
_BOX = "[LiDARBoxComponent]"
BOX_CENTER = tuple(f"{_BOX}.box.center.{a}" for a in "xyz")
BOX_SIZE = tuple(f"{_BOX}.box.size.{a}" for a in "xyz")
BOX_HEADING = f"{_BOX}.box.heading"
BOX_TYPE = f"{_BOX}.type"
BOX_NUM_POINTS = f"{_BOX}.num_lidar_points_in_box"
POSE = "[VehiclePoseComponent].world_from_vehicle.transform"


@dataclasses.dataclass(frozen=True)
class WaymoConfig:
  """Reader knobs.

  Attributes:
    camera: camera name (CAMERA_NAMES) whose frames make the video.
    min_depth: corners closer than this (metres along the optical axis) make a box not visible.
    min_box_size: minimum clipped 2D box side (normalised) for a visible box.
    min_lidar_points: minimum `num_lidar_points_in_box` for a visible box (0: no filter).
    keep_never_visible: keep objects that are never visible in this camera (default: drop).
    pose_source: "vehicle_pose" (the frame's `world_from_vehicle`, falling back to the image's
      pose when the component is absent) or "camera_image" (`[CameraImageComponent].pose`).
  """
  camera: str = "FRONT"
  min_depth: float = 0.1
  min_box_size: float = 0.0
  min_lidar_points: int = 0
  keep_never_visible: bool = False
  pose_source: str = "vehicle_pose"


class WaymoFormatError(ValueError):
  """A component file does not follow the Waymo v2 schema."""


def _read(input_dir: str, tag: str, segment: str, columns: Sequence[str], required=True):
  """Reads `columns` of one component file as {column: python list} (None if optional+absent)."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  path = os.path.join(input_dir, tag, f"{segment}.parquet")
  if not os.path.exists(path):
    if required:
      raise WaymoFormatError(f"Waymo segment {segment!r}: component file {path} is missing.")
    return None
  names = set(pq.read_schema(path).names)
  missing = [c for c in columns if c not in names]
  if missing:
    raise WaymoFormatError(f"Waymo segment {segment!r}: {path} lacks columns {missing}.")
  table = pq.read_table(path, columns=list(columns))
  data = {c: table.column(c).to_pylist() for c in columns}
  keep = [i for i, s in enumerate(data[KEY_SEGMENT]) if s == segment]
  return {c: [v[i] for i in keep] for c, v in data.items()}


def _camera_rows(values, camera: str) -> list[int]:
  """Rows whose `key.camera_name` is `camera`, stored as the enum value (int8) or its name."""
  camera_id = CAMERA_NAMES[camera]
  rows = []
  for i, value in enumerate(values):
    if isinstance(value, bytes):
      value = value.decode("utf-8", "replace")
    if isinstance(value, str):
      value = value.strip().upper()
      if value == camera or (value.isdigit() and int(value) == camera_id):
        rows.append(i)
    elif value is not None and int(value) == camera_id:
      rows.append(i)
  return rows


def _found_cameras(values) -> str:
  found = sorted({repr(v) for v in values})
  return ", ".join(found[:10]) + (" ..." if len(found) > 10 else "") if found else "none"


def distort(xy: np.ndarray, coefficients) -> np.ndarray:
  """Radial-tangential lens distortion of normalised image-plane points.

  x_d = x (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x y + p2 (r^2 + 2 x^2),
  y_d = y (1 + k1 r^2 + k2 r^4 + k3 r^6) + p1 (r^2 + 2 y^2) + 2 p2 x y, r^2 = x^2 + y^2
  (OpenCV's model; Waymo's intrinsic vector [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3]).
  Points beyond the radius where the radial map stops increasing (far outside the field of
  view, where the polynomial folds back into the image) are first pulled in to that radius, so
  an object behind the image border can never be distorted onto it.

  Args:
    xy: [..., 2] pinhole image-plane points (X / Z, Y / Z in the OpenCV camera frame).
    coefficients: (k1, k2, p1, p2, k3).

  Returns:
    [..., 2] distorted image-plane points (apply the pinhole intrinsics to get pixels).
  """
  k1, k2, p1, p2, k3 = (float(c) for c in coefficients)
  xy = np.asarray(xy, np.float64)
  if not any((k1, k2, p1, p2, k3)):
    return xy
  # Largest radius (up to 10, i.e. 84 degrees off axis) over which r * radial(r) increases.
  r = np.linspace(0.0, 10.0, 20001)
  r2 = r * r
  mapped = r * (1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3)
  falling = np.flatnonzero(np.diff(mapped) <= 0)
  r_max = r[falling[0]] if falling.size else r[-1]
  radius = np.linalg.norm(xy, axis=-1, keepdims=True)
  xy = xy * np.minimum(1.0, r_max / np.maximum(radius, 1e-12))
  x, y = xy[..., 0], xy[..., 1]
  r2 = x * x + y * y
  radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
  return np.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                   y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], axis=-1)


def project_distorted(corners_world, world_to_camera, intrinsics, coefficients):
  """Like `geometry.project_box`, with lens distortion between the pinhole and the intrinsics.

  Args:
    corners_world: [..., 8, 3]; world_to_camera: [..., 4, 4]; intrinsics: [..., 3, 3]
      normalised (broadcast as in `geometry.project_box`); coefficients: (k1, k2, p1, p2, k3).

  Returns:
    [..., 8, 3] (u, v, depth) per corner.
  """
  cam = geometry.transform_points(np.asarray(world_to_camera, np.float64)[..., None, :, :],
                                  np.asarray(corners_world, np.float64))
  depth = cam[..., 2]
  safe = np.where(np.abs(depth) < 1e-6, np.copysign(1e-6, depth), depth)
  xy = distort(cam[..., :2] / safe[..., None], coefficients)
  k = np.asarray(intrinsics, np.float64)[..., None, :, :]
  u = k[..., 0, 0] * xy[..., 0] + k[..., 0, 1] * xy[..., 1] + k[..., 0, 2]
  v = k[..., 1, 1] * xy[..., 1] + k[..., 1, 2]
  return np.stack([u, v, depth], axis=-1)


def _transform(value, what: str) -> np.ndarray:
  if value is None or len(value) != 16:
    raise WaymoFormatError(f"{what}: want a 16-value row-major 4x4 transform, got "
                           f"{None if value is None else len(value)} values.")
  return np.asarray(value, np.float64).reshape(4, 4)


def _image_size(data: bytes, what: str) -> tuple[int, int]:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as im:
      return im.size
  except Exception as e:  # noqa: BLE001 - any failure means an undecodable frame.
    raise WaymoFormatError(f"{what}: not a readable image ({e}).") from e


def list_segments(input_dir: str) -> list[str]:
  """Segment context names that have a camera_image file, sorted."""
  folder = os.path.join(input_dir, CAMERA_IMAGE)
  if not os.path.isdir(folder):
    raise WaymoFormatError(f"No {CAMERA_IMAGE}/ folder under {input_dir}.")
  return sorted(f[:-len(".parquet")] for f in os.listdir(folder) if f.endswith(".parquet"))


def read_segment(input_dir: str, segment: str, config: WaymoConfig = WaymoConfig()
                 ) -> dict[str, Any]:
  """Builds the video record of one segment and camera.

  Args:
    input_dir: v2 dataset folder holding `camera_image/`, `camera_calibration/`, `lidar_box/`
      and (optionally) `vehicle_pose/`.
    segment: the segment context name (file stem).
    config: reader knobs.

  Returns:
    A video record (see `data_pipelines.video_record`).
  """
  if config.camera not in CAMERA_NAMES:
    raise ValueError(f"Unknown Waymo camera {config.camera!r}; want one of {list(CAMERA_NAMES)}.")
  if config.pose_source not in ("vehicle_pose", "camera_image"):
    raise ValueError(f"Unknown pose_source {config.pose_source!r}.")
  where = f"Waymo segment {segment!r} camera {config.camera}"

  # Frames of this camera, ordered by timestamp.
  images = _read(input_dir, CAMERA_IMAGE, segment,
                 [KEY_SEGMENT, KEY_TIMESTAMP, KEY_CAMERA, IMAGE, IMAGE_POSE])
  rows = _camera_rows(images[KEY_CAMERA], config.camera)
  if not rows:
    raise WaymoFormatError(
        f"{where}: no rows in {CAMERA_IMAGE} with {KEY_CAMERA} = {CAMERA_NAMES[config.camera]} "
        f"or {config.camera!r}; the file holds {KEY_CAMERA} values: "
        f"{_found_cameras(images[KEY_CAMERA])}.")
  rows.sort(key=lambda i: images[KEY_TIMESTAMP][i])
  timestamps = [int(images[KEY_TIMESTAMP][i]) for i in rows]
  if len(set(timestamps)) != len(timestamps):
    raise WaymoFormatError(f"{where}: duplicate {KEY_TIMESTAMP} in {CAMERA_IMAGE}.")
  frames = []
  for i, ts in zip(rows, timestamps):
    if not images[IMAGE][i]:
      raise WaymoFormatError(f"{where} frame {ts}: empty {IMAGE}.")
    frames.append(bytes(images[IMAGE][i]))

  # Calibration: one row per segment and camera.
  calib = _read(input_dir, CAMERA_CALIBRATION, segment,
                [KEY_SEGMENT, KEY_CAMERA, CALIB_EXTRINSIC, CALIB_WIDTH, CALIB_HEIGHT,
                 *CALIB_INTRINSIC.values(), *CALIB_DISTORTION.values()])
  crow = _camera_rows(calib[KEY_CAMERA], config.camera)
  if len(crow) != 1:
    raise WaymoFormatError(f"{where}: want 1 {CAMERA_CALIBRATION} row, found {len(crow)} "
                           f"({KEY_CAMERA} values in the file: "
                           f"{_found_cameras(calib[KEY_CAMERA])}).")
  crow = crow[0]
  width, height = int(calib[CALIB_WIDTH][crow]), int(calib[CALIB_HEIGHT][crow])
  for ts, frame in zip(timestamps, frames):
    size = _image_size(frame, f"{where} frame {ts}")
    if size != (width, height):
      raise WaymoFormatError(f"{where} frame {ts}: image is {size[0]}x{size[1]}, calibration "
                             f"says {width}x{height}.")
  f_u, f_v, c_u, c_v = (float(calib[CALIB_INTRINSIC[k]][crow]) for k in ("f_u", "f_v", "c_u",
                                                                         "c_v"))
  if not (f_u > 0 and f_v > 0 and width > 0 and height > 0):
    raise WaymoFormatError(f"{where}: bad calibration f_u={f_u}, f_v={f_v}, {width}x{height}.")
  coefficients = tuple(float(calib[CALIB_DISTORTION[k]][crow] or 0.0) for k in DISTORTION)
  if not all(np.isfinite(coefficients)):
    raise WaymoFormatError(f"{where}: non-finite distortion coefficients {coefficients}.")
  k_pixels = geometry.intrinsics_matrix(f_u, f_v, c_u, c_v)
  intrinsics = np.broadcast_to(geometry.normalize_intrinsics(k_pixels, height, width),
                               (len(frames), 3, 3)).astype(np.float32)
  cam_to_vehicle = geometry.waymo_camera_to_opencv(
      _transform(calib[CALIB_EXTRINSIC][crow], f"{where} {CALIB_EXTRINSIC}"))

  # Vehicle poses per frame.
  poses = None
  if config.pose_source == "vehicle_pose":
    poses = _read(input_dir, VEHICLE_POSE, segment, [KEY_SEGMENT, KEY_TIMESTAMP, POSE],
                  required=False)
  if poses is not None:
    by_ts = dict(zip((int(t) for t in poses[KEY_TIMESTAMP]), poses[POSE]))
    missing = [ts for ts in timestamps if ts not in by_ts]
    if missing:
      raise WaymoFormatError(f"{where}: {VEHICLE_POSE} has no row for frames {missing[:5]}.")
    world_from_vehicle = np.stack([_transform(by_ts[ts], f"{where} frame {ts} {POSE}")
                                   for ts in timestamps])
  else:
    world_from_vehicle = np.stack([_transform(images[IMAGE_POSE][i], f"{where} frame {ts} "
                                              f"{IMAGE_POSE}") for i, ts in zip(rows, timestamps)])
  world_to_camera = geometry.invert_pose(world_from_vehicle @ cam_to_vehicle)

  # Boxes: per frame and object.
  boxes = _read(input_dir, LIDAR_BOX, segment,
                [KEY_SEGMENT, KEY_TIMESTAMP, KEY_OBJECT, *BOX_CENTER, *BOX_SIZE, BOX_HEADING,
                 BOX_TYPE, BOX_NUM_POINTS])
  frame_index = {ts: t for t, ts in enumerate(timestamps)}
  rows_in_video = [i for i, ts in enumerate(boxes[KEY_TIMESTAMP]) if int(ts) in frame_index]
  object_ids = sorted({boxes[KEY_OBJECT][i] for i in rows_in_video})
  obj_index = {o: k for k, o in enumerate(object_ids)}
  num_t, num_k = len(frames), len(object_ids)
  center = np.zeros((num_t, num_k, 3))
  size = np.ones((num_t, num_k, 3))
  heading = np.zeros((num_t, num_k))
  points = np.zeros((num_t, num_k), np.int64)
  present = np.zeros((num_t, num_k), bool)
  types = collections.defaultdict(collections.Counter)
  for i in rows_in_video:
    t, k = frame_index[int(boxes[KEY_TIMESTAMP][i])], obj_index[boxes[KEY_OBJECT][i]]
    if present[t, k]:
      raise WaymoFormatError(f"{where}: object {boxes[KEY_OBJECT][i]!r} labelled twice at frame "
                             f"{timestamps[t]}.")
    values = [boxes[c][i] for c in (*BOX_CENTER, *BOX_SIZE, BOX_HEADING)]
    if any(v is None or not np.isfinite(v) for v in values):
      raise WaymoFormatError(f"{where}: object {boxes[KEY_OBJECT][i]!r} at frame "
                             f"{timestamps[t]} has a missing / non-finite box field.")
    center[t, k], size[t, k], heading[t, k] = values[:3], values[3:6], values[6]
    points[t, k] = boxes[BOX_NUM_POINTS][i] or 0
    types[k][int(boxes[BOX_TYPE][i] or 0)] += 1
    present[t, k] = True

  corners_vehicle = geometry.box_corners(center, size, geometry.yaw_rotation(heading))
  corners_world = geometry.transform_points(world_from_vehicle[:, None, None], corners_vehicle)
  corners_world = np.where(present[..., None, None], corners_world, 0.0)
  uvd = project_distorted(corners_world, world_to_camera[:, None],
                          intrinsics[:, None].astype(np.float64), coefficients)
  valid, _ = geometry.box_validity(uvd, min_depth=config.min_depth, min_size=config.min_box_size,
                                   sizes=size)
  visible = present & valid & (points >= config.min_lidar_points)
  boxes_2d = np.where(visible[..., None], geometry.box2d_from_corners(uvd), 0.0)
  category = np.array([types[k].most_common(1)[0][0] for k in range(num_k)], np.int32)
  category = np.where(category == 0, -1, category).astype(np.int32)

  keep = np.arange(num_k) if config.keep_never_visible else np.flatnonzero(visible.any(axis=0))
  record = {
      "video_id": f"{segment}/{config.camera}".encode("utf-8"),
      "frames": frames,
      "intrinsics": intrinsics,
      "world_to_camera": world_to_camera.astype(np.float32),
      "box_corners_world": corners_world[:, keep].astype(np.float32),
      "boxes_2d": boxes_2d[:, keep].astype(np.float32),
      "visible": visible[:, keep],
      # Stable per-segment instance index: position of the laser_object_id among the sorted ids.
      "instance_ids": keep.astype(np.int32),
      "category": category[keep],
  }
  video_record.validate(record)
  return record


def read_dataset(input_dir: str, config: WaymoConfig = WaymoConfig(),
                 segments: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
  """Yields the video record of every segment (or of the given segments)."""
  for segment in (segments or list_segments(input_dir)):
    yield read_segment(input_dir, segment, config)


def _convert_segment(segment: str, input_dir: str, config: WaymoConfig):
  yield dataset_conversion.guarded(f"{segment}/{config.camera}",
                                   lambda: read_segment(input_dir, segment, config))


def conversion_plan(input_dir: str, out_dir: str, config: WaymoConfig = WaymoConfig(),
                    segments: Sequence[str] | None = None, videos_per_shard: int = 16,
                    split: str = "train", options: str = video_record.DEFAULT_OPTIONS
                    ) -> dataset_conversion.ConversionPlan:
  """Shards `{split}.array_record-waymo_<camera>-XXXXX-of-YYYYY` of `videos_per_shard`
  segments each (the experiment configs select splits by the `{split}.array_record*` prefix);
  one input = one segment."""
  if videos_per_shard < 1:
    raise ValueError(f"videos_per_shard must be >= 1, got {videos_per_shard}.")
  segments = list(segments or list_segments(input_dir))
  shards = dataset_conversion.chunked_shards(
      segments, videos_per_shard,
      lambda n, count: os.path.join(out_dir, f"{split}.array_record-waymo_"
                                             f"{config.camera.lower()}-{n:05d}-of-{count:05d}"))
  return dataset_conversion.ConversionPlan(
      shards, functools.partial(_convert_segment, input_dir=input_dir, config=config),
      options=options)


def convert(input_dir: str, out_dir: str, config: WaymoConfig = WaymoConfig(),
            segments: Sequence[str] | None = None, videos_per_shard: int = 16,
            split: str = "train", options: str = video_record.DEFAULT_OPTIONS
            ) -> dict[str, int]:
  """Runs `conversion_plan` in this process (for small data; `data_pipelines.beam_convert`
  runs the same plan on Apache Beam); returns {path: count}."""
  return dataset_conversion.run_local(conversion_plan(input_dir, out_dir, config, segments,
                                                      videos_per_shard, split, options))


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--input_dir", required=True, help="Waymo v2 folder (one split).")
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--split", default="train",
                      help="Name prefix of the shards: train | validation | test.")
  parser.add_argument("--camera", default="FRONT", choices=list(CAMERA_NAMES))
  parser.add_argument("--segments", nargs="*", default=None, help="Default: all segments.")
  parser.add_argument("--videos_per_shard", type=int, default=16)
  parser.add_argument("--min_depth", type=float, default=WaymoConfig.min_depth)
  parser.add_argument("--min_box_size", type=float, default=WaymoConfig.min_box_size)
  parser.add_argument("--min_lidar_points", type=int, default=WaymoConfig.min_lidar_points)
  parser.add_argument("--pose_source", default=WaymoConfig.pose_source,
                      choices=("vehicle_pose", "camera_image"))
  args = parser.parse_args(argv)
  config = WaymoConfig(camera=args.camera, min_depth=args.min_depth,
                       min_box_size=args.min_box_size, min_lidar_points=args.min_lidar_points,
                       pose_source=args.pose_source)
  for path, count in convert(args.input_dir, args.out_dir, config, args.segments,
                             args.videos_per_shard, args.split).items():
    print(f"{path}: {count} videos")


if __name__ == "__main__":
  main()
