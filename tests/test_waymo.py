"""Waymo v2 reader: tiny Parquet components (real column names and Arrow types) for a 2-frame
segment with boxes at known places; the expected pixels come from Waymo's own camera convention
(x forward, y left, z up: u = c_u - f_u * y / x, v = c_v - f_v * z / x), not from our converters.
"""
import io
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_pipelines import video_record
from data_pipelines import waymo
from neural_assets import geometry

SEGMENT = "1234567890_100_000_120_000"
WIDTH, HEIGHT = 96, 64
F_U, F_V, C_U, C_V = 80.0, 84.0, 47.0, 33.0
TIMESTAMPS = (1_000_000, 1_100_000)
TRANSFORM = pa.list_(pa.float64(), 16)  # column_types.Transform


def _rz(a):
  c, s = np.cos(a), np.sin(a)
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _ry(a):
  c, s = np.cos(a), np.sin(a)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _pose(rot, trans):
  m = np.eye(4)
  m[:3, :3], m[:3, 3] = rot, trans
  return m


# Camera -> vehicle (Waymo camera axes): FRONT slightly yawed and pitched, FRONT_LEFT at 45 deg.
EXTRINSIC = {1: _pose(_rz(np.deg2rad(4)) @ _ry(np.deg2rad(3)), [1.5, 0.1, 2.0]),
             2: _pose(_rz(np.deg2rad(45)), [1.4, 0.8, 2.0])}
WORLD_FROM_VEHICLE = [_pose(_rz(np.deg2rad(10)), [100.0, 50.0, 0.3]),
                      _pose(_rz(np.deg2rad(12)), [101.5, 50.3, 0.3])]

# A parked car: one world box, written in each frame's vehicle frame.
CAR_WORLD = (WORLD_FROM_VEHICLE[0] @ np.array([15.0, 1.0, 0.8, 1.0]))[:3]
CAR_SIZE, CAR_HEADING_WORLD = np.array([4.5, 2.0, 1.6]), 0.3 + np.deg2rad(10)


def _boxes():
  """Rows (frame, id, center[3], size[3], heading, type, points)."""
  rows = []
  for t, wfv in enumerate(WORLD_FROM_VEHICLE):
    vfw = np.linalg.inv(wfv)
    center = (vfw @ np.append(CAR_WORLD, 1.0))[:3]
    yaw = CAR_HEADING_WORLD - np.arctan2(wfv[1, 0], wfv[0, 0])
    rows.append((t, "c_car", center, CAR_SIZE, yaw, 1, 500))
    rows.append((t, "a_ped", np.array([-10.0, 0.5, 1.0]), np.array([0.8, 0.8, 1.8]), 0.0, 2, 40))
    rows.append((t, "b_sign", np.array([3.0, 20.0, 2.0]), np.array([0.1, 0.8, 0.8]), 0.0, 3, 9))
  rows.append((1, "d_truck", np.array([25.0, -3.0, 1.5]), np.array([8.0, 2.5, 3.0]), -0.2, 1, 80))
  return rows


def _jpeg(seed):
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed).integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
                  ).save(buf, "JPEG")
  return buf.getvalue()


def _write(root, tag, columns):
  os.makedirs(os.path.join(root, tag), exist_ok=True)
  pq.write_table(pa.table(columns), os.path.join(root, tag, f"{SEGMENT}.parquet"))


DISTORTION = (0.01, 0.0, 0.0, 0.0, 0.0)
CAMERA_ENUM = {1: "FRONT", 2: "FRONT_LEFT"}


def write_segment(root, drop_columns=(), image_size=(WIDTH, HEIGHT), distortion=DISTORTION,
                  string_cameras=False, pose_type=pa.float64()):
  """Writes camera_image, camera_calibration, lidar_box, vehicle_pose as the v2 converter does.

  string_cameras: `key.camera_name` as the enum names ("FRONT"), as some of Waymo's own test
  files store it; pose_type: the vehicle pose element type (the released files: float32).
  """
  seg = lambda n: pa.array([SEGMENT] * n, pa.string())
  camera_key = ((lambda cams: pa.array([CAMERA_ENUM[c] for c in cams], pa.string()))
                if string_cameras else (lambda cams: pa.array(cams, pa.int8())))
  # Rows out of timestamp order and with two cameras, as a real file may hold them.
  image_rows = [(t, cam) for t in (1, 0) for cam in (2, 1)]
  images = {
      "key.segment_context_name": seg(len(image_rows)),
      "key.frame_timestamp_micros": pa.array([TIMESTAMPS[t] for t, _ in image_rows], pa.int64()),
      "key.camera_name": camera_key([c for _, c in image_rows]),
      "[CameraImageComponent].image": pa.array(
          [_jpeg(10 * t + c) if image_size == (WIDTH, HEIGHT) else _bad_jpeg(image_size)
           for t, c in image_rows], pa.binary()),
      "[CameraImageComponent].pose.transform": pa.array(
          [WORLD_FROM_VEHICLE[t].ravel().tolist() for t, _ in image_rows], TRANSFORM),
      "[CameraImageComponent].pose_timestamp": pa.array(
          [TIMESTAMPS[t] * 1e-6 for t, _ in image_rows], pa.float64()),
  }
  cams = [1, 2]
  calib = {
      "key.segment_context_name": seg(2),
      "key.camera_name": camera_key(cams),
      **{f"[CameraCalibrationComponent].intrinsic.{k}": pa.array([v, v], pa.float64())
         for k, v in (("f_u", F_U), ("f_v", F_V), ("c_u", C_U), ("c_v", C_V),
                      *zip(("k1", "k2", "p1", "p2", "k3"), distortion))},
      "[CameraCalibrationComponent].extrinsic.transform": pa.array(
          [EXTRINSIC[c].ravel().tolist() for c in cams], TRANSFORM),
      "[CameraCalibrationComponent].width": pa.array([WIDTH] * 2, pa.int32()),
      "[CameraCalibrationComponent].height": pa.array([HEIGHT] * 2, pa.int32()),
      "[CameraCalibrationComponent].rolling_shutter_direction": pa.array([2, 2], pa.int8()),
  }
  rows = _boxes()
  boxes = {
      "key.segment_context_name": seg(len(rows)),
      "key.frame_timestamp_micros": pa.array([TIMESTAMPS[r[0]] for r in rows], pa.int64()),
      "key.laser_object_id": pa.array([r[1] for r in rows], pa.string()),
      **{f"[LiDARBoxComponent].box.center.{a}": pa.array([r[2][i] for r in rows], pa.float64())
         for i, a in enumerate("xyz")},
      **{f"[LiDARBoxComponent].box.size.{a}": pa.array([r[3][i] for r in rows], pa.float64())
         for i, a in enumerate("xyz")},
      "[LiDARBoxComponent].box.heading": pa.array([r[4] for r in rows], pa.float64()),
      "[LiDARBoxComponent].type": pa.array([r[5] for r in rows], pa.int8()),
      "[LiDARBoxComponent].num_lidar_points_in_box": pa.array([r[6] for r in rows], pa.int64()),
      "[LiDARBoxComponent].num_top_lidar_points_in_box": pa.array([r[6] for r in rows],
                                                                  pa.int64()),
  }
  poses = {
      "key.segment_context_name": seg(2),
      "key.frame_timestamp_micros": pa.array(list(TIMESTAMPS), pa.int64()),
      "[VehiclePoseComponent].world_from_vehicle.transform": pa.array(
          [p.ravel().tolist() for p in WORLD_FROM_VEHICLE], pa.list_(pose_type, 16)),
  }
  for tag, cols in (("camera_image", images), ("camera_calibration", calib),
                    ("lidar_box", boxes), ("vehicle_pose", poses)):
    _write(root, tag, {k: v for k, v in cols.items() if k not in drop_columns})
  return root


def _bad_jpeg(size):
  buf = io.BytesIO()
  Image.new("RGB", size).save(buf, "JPEG")
  return buf.getvalue()


def _waymo_pixels(center, size, heading, camera=1, distortion=(0.0,) * 5):
  """Reference: corners in the vehicle frame -> Waymo camera frame -> Waymo pixels (pinhole,
  then the radial-tangential distortion written out on Waymo's u_n = -y/x, v_n = -z/x)."""
  rot = _rz(heading)
  corners = np.array([center + rot @ ((np.array([bx, by, bz]) - 0.5) * size)
                      for bx in (0, 1) for by in (0, 1) for bz in (0, 1)])
  cam = (np.linalg.inv(EXTRINSIC[camera]) @ np.c_[corners, np.ones(8)].T).T[:, :3]
  k1, k2, p1, p2, k3 = distortion
  un, vn = -cam[:, 1] / cam[:, 0], -cam[:, 2] / cam[:, 0]
  r2 = un ** 2 + vn ** 2
  radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
  ud = un * radial + 2 * p1 * un * vn + p2 * (r2 + 2 * un ** 2)
  vd = vn * radial + p1 * (r2 + 2 * vn ** 2) + 2 * p2 * un * vn
  u = C_U + F_U * ud
  v = C_V + F_V * vd
  # OpenCV pixel centres (as geometry.normalize_intrinsics): normalised = (pixel + 0.5) / size.
  return np.stack([(u + 0.5) / WIDTH, (v + 0.5) / HEIGHT], -1), cam[:, 0]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return write_segment(str(tmp_path_factory.mktemp("waymo")))


@pytest.fixture(scope="module")
def record(root):
  return waymo.read_segment(root, SEGMENT)


def test_objects_frames_and_identity(record):
  assert record["video_id"] == f"{SEGMENT}/FRONT".encode()
  # Sorted ids a_ped, b_sign, c_car, d_truck; the pedestrian (behind) and the sign (off to the
  # side) are never visible in FRONT and are dropped; car and truck keep their index.
  np.testing.assert_array_equal(record["instance_ids"], [2, 3])
  np.testing.assert_array_equal(record["category"], [1, 1])
  np.testing.assert_array_equal(record["visible"], [[True, False], [True, True]])
  np.testing.assert_array_equal(record["box_corners_world"][0, 1], 0.0)  # truck not labelled
  np.testing.assert_array_equal(record["boxes_2d"][0, 1], 0.0)
  # Frames are the FRONT images in timestamp order.
  assert record["frames"] == [_jpeg(10 * t + 1) for t in (0, 1)]


def test_projection_matches_waymo_camera_model(record):
  uvd = geometry.project_box(record["box_corners_world"], record["world_to_camera"][:, None],
                             record["intrinsics"][:, None])
  by_key = {(r[0], r[1]): r for r in _boxes()}
  for t, k, obj in ((0, 0, "c_car"), (1, 0, "c_car"), (1, 1, "d_truck")):
    _, _, center, size, heading, _, _ = by_key[(t, obj)]
    want_uv, want_depth = _waymo_pixels(center, size, heading)
    # The record's cameras are the pinhole part; its 2D boxes include the lens distortion.
    np.testing.assert_allclose(uvd[t, k, :, :2], want_uv, atol=1e-5)
    np.testing.assert_allclose(uvd[t, k, :, 2], want_depth, rtol=1e-5)
    want_uv, _ = _waymo_pixels(center, size, heading, distortion=DISTORTION)
    np.testing.assert_allclose(
        record["boxes_2d"][t, k],
        np.clip([want_uv[:, 1].min(), want_uv[:, 0].min(), want_uv[:, 1].max(),
                 want_uv[:, 0].max()], 0, 1), atol=1e-5)
  # The parked car is one world box in both frames although the vehicle moved.
  np.testing.assert_allclose(record["box_corners_world"][0, 0], record["box_corners_world"][1, 0],
                             atol=1e-4)
  # Its centre is ~13 m ahead, near the image centre, below the horizon (camera 2 m up).
  center_uv = uvd[0, 0, :, :2].mean(0)
  assert 0.3 < center_uv[0] < 0.7 and 0.5 < center_uv[1] < 1.0


def test_corner_order_follows_heading(record):
  corners = record["box_corners_world"][0, 0]
  rot_world = WORLD_FROM_VEHICLE[0][:3, :3]
  heading = CAR_HEADING_WORLD - np.deg2rad(10)
  axes = rot_world.T @ np.stack([corners[4] - corners[0], corners[2] - corners[0],
                                 corners[1] - corners[0]], axis=1)
  np.testing.assert_allclose(axes, _rz(heading) * CAR_SIZE, atol=1e-4)


def test_keep_never_visible_and_other_camera(root):
  rec = waymo.read_segment(root, SEGMENT, waymo.WaymoConfig(keep_never_visible=True))
  np.testing.assert_array_equal(rec["instance_ids"], [0, 1, 2, 3])
  np.testing.assert_array_equal(rec["category"], [2, 3, 1, 1])
  assert not rec["visible"][:, :2].any()
  left = waymo.read_segment(root, SEGMENT, waymo.WaymoConfig(camera="FRONT_LEFT",
                                                             keep_never_visible=True))
  assert left["frames"] == [_jpeg(10 * t + 2) for t in (0, 1)]
  uvd = geometry.project_box(left["box_corners_world"], left["world_to_camera"][:, None],
                             left["intrinsics"][:, None])
  k = list(left["instance_ids"]).index(2)
  by_key = {(r[0], r[1]): r for r in _boxes()}
  _, _, center, size, heading, _, _ = by_key[(0, "c_car")]
  want_uv, _ = _waymo_pixels(center, size, heading, camera=2)
  np.testing.assert_allclose(uvd[0, k, :, :2], want_uv, atol=1e-5)


def test_pose_fallback_to_camera_image(root, record, tmp_path):
  other = str(tmp_path / "copy")
  shutil.copytree(root, other)
  shutil.rmtree(os.path.join(other, "vehicle_pose"))
  rec = waymo.read_segment(other, SEGMENT)
  np.testing.assert_allclose(rec["world_to_camera"], record["world_to_camera"], atol=1e-5)


def test_malformed_inputs_raise_clear_errors(tmp_path):
  root = write_segment(str(tmp_path / "a"), drop_columns=("[LiDARBoxComponent].box.heading",))
  with pytest.raises(waymo.WaymoFormatError, match=r"box\.heading"):
    waymo.read_segment(root, SEGMENT)
  root = write_segment(str(tmp_path / "b"), image_size=(WIDTH + 2, HEIGHT))
  with pytest.raises(waymo.WaymoFormatError, match="calibration says 96x64"):
    waymo.read_segment(root, SEGMENT)
  root = write_segment(str(tmp_path / "c"))
  with pytest.raises(waymo.WaymoFormatError, match=r"no rows.*values: 1, 2"):
    waymo.read_segment(root, SEGMENT, waymo.WaymoConfig(camera="SIDE_LEFT"))
  os.remove(os.path.join(root, "lidar_box", f"{SEGMENT}.parquet"))
  with pytest.raises(waymo.WaymoFormatError, match="lidar_box"):
    waymo.read_segment(root, SEGMENT)


def test_cli_writes_array_record(root, record, tmp_path):
  out = str(tmp_path / "out")
  waymo.main(["--input_dir", root, "--out_dir", out, "--camera", "FRONT"])
  (name,) = os.listdir(out)
  assert name == "train.array_record-waymo_front-00000-of-00001"  # configs/waymo.py's glob
  (got,) = video_record.read_array_record(os.path.join(out, name))
  for key in ("box_corners_world", "boxes_2d", "visible", "intrinsics", "world_to_camera",
              "instance_ids", "category"):
    np.testing.assert_array_equal(got[key], record[key])
  assert got["frames"] == record["frames"]


def test_camera_names_stored_as_strings_are_accepted(record, tmp_path):
  root = write_segment(str(tmp_path / "s"), string_cameras=True)
  got = waymo.read_segment(root, SEGMENT)
  for key in video_record.ARRAY_FIELDS:
    np.testing.assert_array_equal(got[key], record[key], err_msg=key)
  assert got["frames"] == record["frames"]
  with pytest.raises(waymo.WaymoFormatError, match=r"SIDE_LEFT.*values: 'FRONT', 'FRONT_LEFT'"):
    waymo.read_segment(root, SEGMENT, waymo.WaymoConfig(camera="SIDE_LEFT"))


def test_float32_vehicle_poses_are_accepted(record, tmp_path):
  root = write_segment(str(tmp_path / "f"), pose_type=pa.float32())
  assert pq.read_schema(os.path.join(root, "vehicle_pose", f"{SEGMENT}.parquet")).field(
      "[VehiclePoseComponent].world_from_vehicle.transform").type.value_type == pa.float32()
  got = waymo.read_segment(root, SEGMENT)
  np.testing.assert_allclose(got["world_to_camera"], record["world_to_camera"], atol=1e-4)
  np.testing.assert_allclose(got["box_corners_world"], record["box_corners_world"], atol=1e-4)


def test_distortion_zero_is_the_pinhole_and_a_known_point():
  rng = np.random.default_rng(0)
  corners = rng.uniform([-3, -2, 4], [3, 2, 9], (2, 5, 8, 3))
  w2c = np.broadcast_to(np.eye(4), (2, 1, 4, 4))
  k = np.broadcast_to(geometry.normalize_intrinsics(
      geometry.intrinsics_matrix(F_U, F_V, C_U, C_V), HEIGHT, WIDTH), (2, 1, 3, 3))
  np.testing.assert_allclose(waymo.project_distorted(corners, w2c, k, (0.0,) * 5),
                             geometry.project_box(corners, w2c, k), atol=1e-12)
  # r^2 = 0.25: radial = 1 + 0.2 * 0.25 + 0.1 * 0.0625 + 0.4 * 0.015625 = 1.0625;
  # x = 0.5 * 1.0625 + 0.02 * (0.25 + 0.5) = 0.54625, y = 0.01 * 0.25 = 0.0025.
  np.testing.assert_allclose(waymo.distort([0.5, 0.0], (0.2, 0.1, 0.01, 0.02, 0.4)),
                             [0.54625, 0.0025], atol=1e-12)
  # Far outside the field of view a barrel polynomial folds back; the radius is clamped first.
  far = waymo.distort([[3.0, 0.0], [6.0, 0.0]], (-0.3, 0.05, 0.0, 0.0, 0.0))
  assert far[1, 0] >= far[0, 0] > 0


def test_distortion_moves_border_boxes(tmp_path):
  """A strong barrel distortion pulls the boxes towards the centre, as Waymo's projection."""
  coefficients = (-0.3, 0.08, 0.001, -0.002, 0.0)
  root = write_segment(str(tmp_path / "d"), distortion=coefficients)
  got = waymo.read_segment(root, SEGMENT)
  by_key = {(r[0], r[1]): r for r in _boxes()}
  _, _, center, size, heading, _, _ = by_key[(1, "d_truck")]
  want_uv, _ = _waymo_pixels(center, size, heading, distortion=coefficients)
  want = np.clip([want_uv[:, 1].min(), want_uv[:, 0].min(), want_uv[:, 1].max(),
                  want_uv[:, 0].max()], 0, 1)
  np.testing.assert_allclose(got["boxes_2d"][1, 1], want, atol=1e-5)
  pinhole_uv, _ = _waymo_pixels(center, size, heading)
  assert np.abs(pinhole_uv - want_uv).max() * WIDTH > 0.3  # The distortion matters here.
