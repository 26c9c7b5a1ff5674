"""Tests for neural_assets.geometry: known projections, round trips, conventions, validity."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neural_assets import geometry as geo


def _random_quaternions(rng, n):
  q = rng.normal(size=(n, 4))
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  return q * np.sign(q[:, :1])


def test_quaternion_known_rotation():
  # 90 degrees about +z maps +x to +y (active, Hamilton, (w, x, y, z)).
  q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
  r = geo.quaternion_to_matrix(q)
  np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)
  np.testing.assert_allclose(r @ [0, 0, 1], [0, 0, 1], atol=1e-12)
  np.testing.assert_allclose(geo.yaw_rotation(np.pi / 2), r, atol=1e-12)


def test_quaternion_round_trip_including_half_turns():
  rng = np.random.default_rng(0)
  q = _random_quaternions(rng, 64)
  # 180-degree rotations (w = 0) are the ill-conditioned case of the naive formula.
  q = np.concatenate([q, [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0.6, 0.8, 0]]])
  r = geo.quaternion_to_matrix(q)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-10)
  np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                             atol=1e-10)
  q_back = geo.matrix_to_quaternion(r)
  # q and -q are the same rotation; compare up to sign.
  sign = np.sign(np.sum(q * q_back, axis=-1, keepdims=True))
  np.testing.assert_allclose(q_back * sign, q, atol=1e-9)


def test_quaternion_rejects_zero_norm():
  with pytest.raises(ValueError, match="zero-norm"):
    geo.quaternion_to_matrix(np.zeros(4))


def test_invert_pose_and_relative_pose():
  rng = np.random.default_rng(1)
  r = geo.quaternion_to_matrix(_random_quaternions(rng, 5))
  t = rng.normal(size=(5, 3))
  pose = geo.pose_matrix(r, t)
  np.testing.assert_allclose(geo.invert_pose(pose) @ pose, np.broadcast_to(np.eye(4), (5, 4, 4)),
                             atol=1e-12)
  np.testing.assert_allclose(geo.invert_pose(pose), np.linalg.inv(pose), atol=1e-10)
  point_world = rng.normal(size=3)
  src, tgt = pose[0], pose[1]
  rel = geo.relative_pose(src, tgt)
  in_src = geo.transform_points(src, point_world)
  np.testing.assert_allclose(geo.transform_points(rel, in_src),
                             geo.transform_points(tgt, point_world), atol=1e-12)


def test_box_corners_canonical_order_matches_kubric_product():
  center = np.array([1.0, 2.0, 3.0])
  size = np.array([2.0, 4.0, 6.0])
  corners = geo.box_corners(center, size, np.eye(3))
  np.testing.assert_allclose(corners[0], [0, 0, 0])  # (x0, y0, z0)
  np.testing.assert_allclose(corners[1], [0, 0, 6])  # (x0, y0, z1)
  np.testing.assert_allclose(corners[2], [0, 4, 0])  # (x0, y1, z0)
  np.testing.assert_allclose(corners[4], [2, 0, 0])  # (x1, y0, z0)
  np.testing.assert_allclose(corners[7], [2, 4, 6])
  # Kubric's bbox_3d: itertools.product over (x, y, z) bounds (kubric/core/objects.py).
  lo, hi = center - size / 2, center + size / 2
  kubric = np.array(list(itertools.product(*zip(lo, hi))))
  np.testing.assert_allclose(corners, kubric)
  # Rotation is applied about the centre.
  rot = geo.yaw_rotation(np.pi / 2)
  rotated = geo.box_corners(center, size, rot)
  np.testing.assert_allclose(rotated[4] - center, rot @ [1, -2, -3], atol=1e-12)


def test_project_box_known_place():
  # OpenCV camera at the origin, f = 1 (normalised), box of side 2 centred 5 m ahead.
  k = geo.intrinsics_matrix(1.0, 1.0, 0.5, 0.5)
  corners = geo.box_corners(np.array([0.0, 0.0, 5.0]), np.full(3, 2.0), np.eye(3))
  uvd = geo.project_box(corners, np.eye(4), k)
  np.testing.assert_allclose(uvd[0], [0.5 - 1 / 4, 0.5 - 1 / 4, 4.0], atol=1e-6)
  np.testing.assert_allclose(uvd[7], [0.5 + 1 / 6, 0.5 + 1 / 6, 6.0], atol=1e-6)
  np.testing.assert_allclose(geo.box2d_from_corners(uvd), [0.25, 0.25, 0.75, 0.75], atol=1e-6)
  valid, reason = geo.box_validity(uvd)
  assert valid and reason == geo.BoxStatus.OK


def test_blender_camera_matches_kubric_projection():
  """OpenCV conversion reproduces Kubric's own projection (kubric/core/cameras.py)."""
  rng = np.random.default_rng(2)
  focal, sensor_w, height, width = 35.0, 32.0, 96, 128
  for _ in range(5):
    cam_rot = geo.quaternion_to_matrix(_random_quaternions(rng, 1)[0])
    cam_pos = rng.normal(size=3) * 3
    cam_to_world = geo.pose_matrix(cam_rot, cam_pos)
    # Points in front of the Blender camera: negative local z.
    local = np.concatenate([rng.uniform(-1, 1, (10, 2)), -rng.uniform(2, 8, (10, 1))], -1)
    world = geo.transform_points(cam_to_world, local)
    # Kubric: K = [[fx, 0, -px], [0, -fy, -py], [0, 0, -1]] with width = height = 1.
    fx = focal / sensor_w
    fy = focal / (sensor_w / width * height)
    k_kubric = np.array([[fx, 0, -0.5], [0, -fy, -0.5], [0, 0, -1]])
    proj = (k_kubric @ geo.transform_points(np.linalg.inv(cam_to_world), world).T).T
    want_uv = proj[:, :2] / proj[:, 2:]
    w2c = geo.invert_pose(geo.blender_to_opencv(cam_to_world))
    k = geo.kubric_intrinsics(focal, sensor_w, height, width)
    uv, depth = geo.project(geo.transform_points(w2c, world), k)
    np.testing.assert_allclose(uv, want_uv, atol=1e-6)  # float32 intrinsics
    np.testing.assert_allclose(depth, -local[:, 2], atol=1e-9)


def test_kubric_intrinsics_non_square_has_square_pixels():
  k = geo.kubric_intrinsics(35.0, 32.0, height=128, width=256)
  assert k[0, 0] == pytest.approx(35 / 32)
  # Square pixels: the focal length in pixels is the same along both axes.
  assert k[0, 0] * 256 == pytest.approx(k[1, 1] * 128)
  np.testing.assert_allclose(k[:2, 2], [0.5, 0.5])
  with pytest.raises(ValueError):
    geo.kubric_intrinsics(35.0, 32.0, height=0, width=256)


def test_blender_camera_looking_at_origin():
  # Blender camera at +5 z with identity rotation looks down at the origin (-Z look, +Y up).
  w2c = geo.invert_pose(geo.blender_to_opencv(geo.pose_matrix(np.eye(3), [0, 0, 5.0])))
  k = geo.kubric_intrinsics(1.0, 1.0, 64, 64)
  uv, depth = geo.project(geo.transform_points(w2c, np.array([[0, 0, 0], [1, 1, 0.0]])), k)
  np.testing.assert_allclose(uv[0], [0.5, 0.5])
  assert depth[0] == pytest.approx(5.0)
  # World +x is image right, world +y is image up (v smaller).
  assert uv[1, 0] > 0.5 and uv[1, 1] < 0.5
  np.testing.assert_allclose(geo.opengl_to_opencv(np.eye(4)), geo.blender_to_opencv(np.eye(4)))


def test_waymo_camera_frame():
  # Waymo camera axes: x forward, y left, z up. Identity extrinsic (camera == vehicle axes).
  w2c = geo.invert_pose(geo.waymo_camera_to_opencv(np.eye(4)))
  k = geo.intrinsics_matrix(1.0, 1.0, 0.5, 0.5)
  pts = np.array([[10.0, 0, 0], [10.0, 1, 0], [10.0, 0, 1]])  # ahead, left, up
  uv, depth = geo.project(geo.transform_points(w2c, pts), k)
  np.testing.assert_allclose(depth, 10.0)
  np.testing.assert_allclose(uv[0], [0.5, 0.5])
  assert uv[1, 0] < 0.5 and uv[1, 1] == pytest.approx(0.5)  # left -> smaller u
  assert uv[2, 1] < 0.5 and uv[2, 0] == pytest.approx(0.5)  # up -> smaller v


def test_normalize_intrinsics():
  k_px = np.array([[100.0, 0, 63.5], [0, 50.0, 31.5], [0, 0, 1]])
  k = geo.normalize_intrinsics(k_px, height=64, width=128)
  np.testing.assert_allclose(k, [[100 / 128, 0, 0.5], [0, 50 / 64, 0.5], [0, 0, 1]], atol=1e-7)


def test_box_validity_reasons_and_no_nan():
  k = geo.intrinsics_matrix(1.0, 1.0, 0.5, 0.5)
  eye = np.eye(3)
  boxes = np.stack([
      geo.box_corners(np.array([0, 0, 5.0]), np.ones(3), eye),  # ok
      geo.box_corners(np.array([0, 0, -5.0]), np.ones(3), eye),  # fully behind
      geo.box_corners(np.array([0, 0, 0.2]), np.ones(3), eye),  # straddles the camera plane
      geo.box_corners(np.array([0, 0, 0.0]), np.ones(3), eye),  # centred at the camera
      geo.box_corners(np.array([40, 0, 5.0]), np.ones(3), eye),  # off screen (right)
      geo.box_corners(np.array([0, 0, 500.0]), np.ones(3), eye),  # tiny
      geo.box_corners(np.array([0, 0, 5.0]), np.zeros(3), eye),  # zero size
  ])
  sizes = np.array([[1.0] * 3] * 6 + [[0.0] * 3])
  uvd = geo.project_box(boxes, np.eye(4), k)
  assert np.all(np.isfinite(uvd))
  valid, reason = geo.box_validity(uvd, min_depth=0.1, min_size=0.01, sizes=sizes)
  s = geo.BoxStatus
  np.testing.assert_array_equal(reason, [s.OK, s.BEHIND_CAMERA, s.BEHIND_CAMERA, s.BEHIND_CAMERA,
                                         s.OFF_SCREEN, s.TOO_SMALL, s.DEGENERATE])
  np.testing.assert_array_equal(valid, [True] + [False] * 6)
  nan_box = uvd[:1].copy()
  nan_box[0, 3, 1] = np.nan
  _, reason = geo.box_validity(nan_box)
  assert reason[0] == s.DEGENERATE
  counts = geo.count_reasons(np.array([0, 2, 2, 3]), mask=np.array([True, True, False, True]))
  assert counts == {"ok": 1, "degenerate": 0, "behind_camera": 1, "off_screen": 1,
                    "too_small": 0}


def test_jax_matches_numpy_under_jit():
  rng = np.random.default_rng(3)
  q = _random_quaternions(rng, 4).astype(np.float32)
  centers = np.concatenate([rng.normal(size=(4, 2)), rng.uniform(4, 8, (4, 1))], -1)
  sizes = rng.uniform(0.5, 1.5, (4, 3))
  k = geo.kubric_intrinsics(35.0, 32.0, 64, 64)

  def pipeline(q, centers, sizes, k):
    corners = geo.box_corners(centers, sizes, geo.quaternion_to_matrix(q))
    uvd = geo.project_box(corners, jnp.eye(4) if isinstance(q, jax.Array) else np.eye(4), k)
    valid, reason = geo.box_validity(uvd)
    return uvd, geo.box2d_from_corners(uvd), valid, reason, geo.matrix_to_quaternion(
        geo.quaternion_to_matrix(q))

  want = pipeline(q, centers.astype(np.float32), sizes.astype(np.float32), k)
  got = jax.jit(pipeline)(jnp.asarray(q), jnp.asarray(centers, jnp.float32),
                          jnp.asarray(sizes, jnp.float32), jnp.asarray(k))
  for w, g in zip(want, got):
    assert isinstance(g, jax.Array)
    np.testing.assert_allclose(np.asarray(g), w, atol=1e-5)
