"""3D geometry: quaternions, rigid poses, camera conventions, 3D boxes, projection, validity.

Every function is pure and works on numpy arrays and on JAX arrays (also inside `jax.jit`): the
array module is picked from the inputs (`jax.numpy` if any input is a JAX array or tracer, else
numpy). Leading dimensions broadcast like numpy.

Canonical conventions (DESIGN.md):
  * Camera frame: OpenCV (x right, y down, z forward). `world_to_camera` is [..., 4, 4].
  * Intrinsics: [..., 3, 3], *normalised*: u, v in [0, 1] of the image width / height,
    u = fx * x / z + cx, v = fy * y / z + cy.
  * Quaternions: (w, x, y, z), Hamilton convention, active rotation (as Kubric / Blender).
  * 3D box corners: [..., 8, 3]; corner i has index bits (x, y, z) = (4, 2, 1) in the object's own
    axes: corner i = (x_{i>>2&1}, y_{i>>1&1}, z_{i&1}), e.g. p0 = (x0, y0, z0), p1 = (x0, y0, z1),
    p2 = (x0, y1, z0), p4 = (x1, y0, z0), p7 = (x1, y1, z1).
  * Projected corners: [..., 8, 3] = (u, v, depth); depth is the camera z (> 0 in front).
  * 2D boxes: normalised [y0, x0, y1, x1].

Dataset conventions converted here:
  * Blender / Kubric and OpenGL / ARKit cameras look along local -Z with +Y up and +X right
    (`blender_to_opencv`, `opengl_to_opencv`).
  * Waymo cameras: x forward, y left, z up (`waymo_camera_to_opencv`); Waymo boxes have a heading
    about +z of the vehicle frame (`yaw_rotation`).

Validity: `box_validity` classifies every projected box with an explicit reason code instead of
letting behind-camera boxes turn into NaN / garbage coordinates; `count_reasons` tallies them for
logging.
"""
from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np

# Corner index bits (x, y, z) = (4, 2, 1): row i holds (i>>2&1, i>>1&1, i&1).
CORNER_BITS = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], dtype=np.float32)


def _xp(*arrays):
  """The array module for the inputs: jax.numpy if any is a JAX array / tracer, else numpy."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _is_numpy(xp) -> bool:
  return xp is np


# ------------------------------------------------------------------------------------------------
# Rotations.


def quaternion_to_matrix(q):
  """Unit quaternion (w, x, y, z) -> rotation matrix.

  Args:
    q: [..., 4] quaternions (w, x, y, z); normalised here (need not be exactly unit).

  Returns:
    [..., 3, 3] rotation matrices R such that a rotated vector is R @ v.

  Raises:
    ValueError (numpy inputs only): a quaternion with (near) zero norm or non-finite values.
  """
  xp = _xp(q)
  q = xp.asarray(q)
  if q.shape[-1] != 4:
    raise ValueError(f"quaternion_to_matrix wants [..., 4] (w, x, y, z), got shape {q.shape}.")
  norm = xp.linalg.norm(q, axis=-1, keepdims=True)
  if _is_numpy(xp) and (not np.all(np.isfinite(q)) or np.any(norm < 1e-8)):
    raise ValueError("quaternion_to_matrix got a zero-norm or non-finite quaternion.")
  q = q / norm
  w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
  rows = [
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ]
  return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_quaternion(rotation):
  """Rotation matrix -> unit quaternion (w, x, y, z) with w >= 0.

  Numerically stable for all rotations (Shepperd's method: of the four algebraically equivalent
  formulas, the one with the largest denominator is used per matrix).

  Args:
    rotation: [..., 3, 3] rotation matrices.

  Returns:
    [..., 4] quaternions (w, x, y, z), w >= 0.
  """
  xp = _xp(rotation)
  m = xp.asarray(rotation)
  if m.shape[-2:] != (3, 3):
    raise ValueError(f"matrix_to_quaternion wants [..., 3, 3], got shape {m.shape}.")
  m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  # 4 * (component)^2 for w, x, y, z; the largest picks the well-conditioned formula.
  sq = xp.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                 1 - m00 - m11 + m22], axis=-1)
  # Candidate quaternions (unnormalised), each scaled by 4 * its pivot component.
  cand_w = xp.stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], axis=-1)
  cand_x = xp.stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], axis=-1)
  cand_y = xp.stack([m02 - m20, m10 + m01, sq[..., 2], m21 + m12], axis=-1)
  cand_z = xp.stack([m10 - m01, m02 + m20, m21 + m12, sq[..., 3]], axis=-1)
  cands = xp.stack([cand_w, cand_x, cand_y, cand_z], axis=-2)  # [..., 4, 4]
  best = xp.argmax(sq, axis=-1)
  onehot = (xp.arange(4) == best[..., None]).astype(m.dtype)
  q = xp.sum(cands * onehot[..., :, None], axis=-2)
  q = q / xp.linalg.norm(q, axis=-1, keepdims=True)
  return xp.where(q[..., :1] < 0, -q, q)


def yaw_rotation(heading):
  """Rotation about +z by `heading` radians (Waymo box heading, counter-clockwise seen from +z).

  Args:
    heading: [...] angles in radians.

  Returns:
    [..., 3, 3] rotation matrices.
  """
  xp = _xp(heading)
  heading = xp.asarray(heading)
  c, s = xp.cos(heading), xp.sin(heading)
  zero, one = xp.zeros_like(c), xp.ones_like(c)
  return xp.stack([xp.stack([c, -s, zero], -1), xp.stack([s, c, zero], -1),
                   xp.stack([zero, zero, one], -1)], axis=-2)


# ------------------------------------------------------------------------------------------------
# Rigid poses.


def pose_matrix(rotation, translation):
  """Rotation + translation -> homogeneous 4x4 transform.

  Args:
    rotation: [..., 3, 3].
    translation: [..., 3].

  Returns:
    [..., 4, 4] with the rotation top-left, translation in the last column, last row (0, 0, 0, 1).
  """
  xp = _xp(rotation, translation)
  rotation, translation = xp.asarray(rotation), xp.asarray(translation)
  batch = np.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
  dtype = xp.result_type(rotation.dtype, translation.dtype)
  rotation = xp.broadcast_to(rotation, batch + (3, 3)).astype(dtype)
  translation = xp.broadcast_to(translation, batch + (3,)).astype(dtype)
  top = xp.concatenate([rotation, translation[..., :, None]], axis=-1)
  bottom = xp.broadcast_to(xp.asarray([0, 0, 0, 1], dtype=dtype), batch + (1, 4))
  return xp.concatenate([top, bottom], axis=-2)


def invert_pose(transform):
  """Inverse of a rigid transform (rotation + translation, no scale): [R t] -> [R^T, -R^T t].

  Args:
    transform: [..., 4, 4] rigid transforms.

  Returns:
    [..., 4, 4] inverses.
  """
  xp = _xp(transform)
  transform = xp.asarray(transform)
  if transform.shape[-2:] != (4, 4):
    raise ValueError(f"invert_pose wants [..., 4, 4], got shape {transform.shape}.")
  rot_t = xp.swapaxes(transform[..., :3, :3], -1, -2)
  trans = -xp.einsum("...ij,...j->...i", rot_t, transform[..., :3, 3])
  return pose_matrix(rot_t, trans)


def transform_points(transform, points):
  """Applies 4x4 transforms to 3D points: R p + t.

  Args:
    transform: [..., 4, 4]; leading dims broadcast against those of `points` (add singleton axes
      yourself, e.g. `w2c[:, None, None]` for corners [T, K, 8, 3] and cameras [T, 4, 4]).
    points: [..., 3].

  Returns:
    [..., 3] transformed points.
  """
  xp = _xp(transform, points)
  transform, points = xp.asarray(transform), xp.asarray(points)
  return (xp.einsum("...ij,...j->...i", transform[..., :3, :3], points)
          + transform[..., :3, 3])


def relative_pose(world_to_camera_src, world_to_camera_tgt):
  """Source-camera -> target-camera transform: `w2c_tgt @ inv(w2c_src)`.

  Args:
    world_to_camera_src: [..., 4, 4].
    world_to_camera_tgt: [..., 4, 4].

  Returns:
    [..., 4, 4] mapping points in the source camera frame to the target camera frame.
  """
  xp = _xp(world_to_camera_src, world_to_camera_tgt)
  return xp.matmul(xp.asarray(world_to_camera_tgt), invert_pose(world_to_camera_src))


# ------------------------------------------------------------------------------------------------
# Camera conventions.

# Columns = OpenCV camera axes written in a -Z-look, +Y-up camera frame (Blender / OpenGL / ARKit):
# x stays, y (down) = -y (up), z (forward) = -z (backward-looking axis).
_OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0]).astype(np.float32)
# Columns = OpenCV camera axes written in the Waymo camera frame (x forward, y left, z up):
# x_cv (right) = -y_w, y_cv (down) = -z_w, z_cv (forward) = +x_w.
_WAYMO_FROM_OPENCV = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]],
                              dtype=np.float32)


def _change_camera_axes(cam_to_world, cam_from_opencv):
  xp = _xp(cam_to_world)
  cam_to_world = xp.asarray(cam_to_world)
  if cam_to_world.shape[-2:] != (4, 4):
    raise ValueError(f"Camera pose must be [..., 4, 4], got shape {cam_to_world.shape}.")
  return xp.matmul(cam_to_world, xp.asarray(cam_from_opencv, dtype=cam_to_world.dtype))


def blender_to_opencv(cam_to_world):
  """Blender / Kubric camera-to-world (looks along -Z, +Y up) -> OpenCV camera-to-world.

  Args:
    cam_to_world: [..., 4, 4] Blender camera-to-world poses.

  Returns:
    [..., 4, 4] camera-to-world poses of the same camera with OpenCV axes (x right, y down,
    z forward); `invert_pose` of it is the canonical `world_to_camera`.
  """
  return _change_camera_axes(cam_to_world, _OPENGL_FROM_OPENCV)


def opengl_to_opencv(cam_to_world):
  """OpenGL / ARKit camera-to-world (-Z look, +Y up, same axes as Blender) -> OpenCV.

  Args:
    cam_to_world: [..., 4, 4].

  Returns:
    [..., 4, 4] OpenCV camera-to-world.
  """
  return _change_camera_axes(cam_to_world, _OPENGL_FROM_OPENCV)


def waymo_camera_to_opencv(cam_to_vehicle):
  """Waymo camera-to-vehicle extrinsic (camera x forward, y left, z up) -> OpenCV camera axes.

  Args:
    cam_to_vehicle: [..., 4, 4] (Waymo `extrinsic.transform`, camera frame -> vehicle frame).

  Returns:
    [..., 4, 4] camera-to-vehicle with OpenCV camera axes (x right, y down, z forward).
  """
  return _change_camera_axes(cam_to_vehicle, _WAYMO_FROM_OPENCV)


def intrinsics_matrix(fx, fy, cx, cy):
  """Builds [..., 3, 3] intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] from [...] arrays."""
  xp = _xp(fx, fy, cx, cy)
  fx, fy, cx, cy = xp.broadcast_arrays(*(xp.asarray(a, dtype=xp.float32) for a in (fx, fy, cx, cy)))
  zero, one = xp.zeros_like(fx), xp.ones_like(fx)
  return xp.stack([xp.stack([fx, zero, cx], -1), xp.stack([zero, fy, cy], -1),
                   xp.stack([zero, zero, one], -1)], axis=-2)


def normalize_intrinsics(intrinsics_pixels, height, width, pixel_centers_at_integers=True):
  """Pixel intrinsics -> normalised intrinsics (u, v in [0, 1] of width / height).

  Args:
    intrinsics_pixels: [..., 3, 3] pinhole intrinsics in pixels.
    height, width: image size in pixels.
    pixel_centers_at_integers: True for the OpenCV convention (pixel (0, 0)'s centre is at 0, so
      the image spans [-0.5, W - 0.5]); False if the image spans [0, W].

  Returns:
    [..., 3, 3] normalised intrinsics.
  """
  xp = _xp(intrinsics_pixels)
  k = xp.asarray(intrinsics_pixels, dtype=xp.float32)
  shift = 0.5 if pixel_centers_at_integers else 0.0
  return intrinsics_matrix(k[..., 0, 0] / width, k[..., 1, 1] / height,
                           (k[..., 0, 2] + shift) / width, (k[..., 1, 2] + shift) / height)


def pixel_intrinsics(intrinsics, height, width, pixel_centers_at_integers=True):
  """Normalised intrinsics -> pixel intrinsics: the inverse of `normalize_intrinsics`.

  Args:
    intrinsics: [..., 3, 3] normalised pinhole intrinsics.
    height, width: image size in pixels.
    pixel_centers_at_integers: as in `normalize_intrinsics`.

  Returns:
    [..., 3, 3] pinhole intrinsics in pixels.
  """
  xp = _xp(intrinsics)
  k = xp.asarray(intrinsics)
  shift = 0.5 if pixel_centers_at_integers else 0.0
  return intrinsics_matrix(k[..., 0, 0] * width, k[..., 1, 1] * height,
                           k[..., 0, 2] * width - shift, k[..., 1, 2] * height - shift)


def kubric_intrinsics(focal_length, sensor_width, height, width):
  """Normalised OpenCV intrinsics of a Kubric / Blender perspective camera.

  Kubric (`kubric/core/cameras.py`, `PerspectiveCamera`) fits the sensor width to the image width
  and derives `sensor_height = sensor_width * height / width` (square pixels), so
  fx = focal_length / sensor_width, fy = focal_length / sensor_height, principal point at the
  image centre (0.5, 0.5).

  Args:
    focal_length: [...] focal length (mm).
    sensor_width: [...] sensor width (mm).
    height, width: image size in pixels (only the aspect ratio matters).

  Returns:
    [..., 3, 3] normalised intrinsics for the OpenCV camera frame.
  """
  if height <= 0 or width <= 0:
    raise ValueError(f"kubric_intrinsics needs a positive image size, got {height}x{width}.")
  xp = _xp(focal_length, sensor_width)
  focal_length = xp.asarray(focal_length, dtype=xp.float32)
  sensor_width = xp.asarray(sensor_width, dtype=xp.float32)
  sensor_height = sensor_width * height / width
  fx = focal_length / sensor_width
  fy = focal_length / sensor_height
  half = xp.full_like(fx, 0.5)
  return intrinsics_matrix(fx, fy, half, half)


# ------------------------------------------------------------------------------------------------
# Boxes and projection.


def box_corners(center, size, rotation):
  """Corners of oriented 3D boxes in the canonical order (index bits x=4, y=2, z=1).

  Args:
    center: [..., 3] box centres.
    size: [..., 3] full extents along the box's own x, y, z axes.
    rotation: [..., 3, 3] box-to-world rotation (columns = box axes in world coordinates).

  Returns:
    [..., 8, 3] corners: corner i = center + R @ ((bits_i - 0.5) * size).
  """
  xp = _xp(center, size, rotation)
  center, size, rotation = xp.asarray(center), xp.asarray(size), xp.asarray(rotation)
  local = (xp.asarray(CORNER_BITS) - 0.5) * size[..., None, :]  # [..., 8, 3]
  return xp.einsum("...ij,...kj->...ki", rotation, local) + center[..., None, :]


def box_from_corners(corners, rtol: float = 1e-3):
  """Inverse of `box_corners`: [..., 8, 3] corners -> (center, size, rotation).

  The box axes are the edges p4 - p0 (x), p2 - p0 (y), p1 - p0 (z); their directions are
  orthonormalised (nearest rotation, SVD) so that small float noise in stored corners is absorbed.

  numpy only (an SVD and a check that raises), unlike the functions above.

  Args:
    corners: [..., 8, 3] box corners in the canonical order.
    rtol: largest rebuild error of a corner, relative to the box's largest extent.

  Returns:
    center [..., 3], size [..., 3] (full extents), rotation [..., 3, 3] (box-to-world), float64.

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
  rebuilt = box_corners(center, size, rotation)
  scale = np.maximum(size.max(axis=-1), 1e-6)[..., None, None]
  err = np.abs(rebuilt - corners) / scale
  if np.linalg.det(rotation).min(initial=1.0) < 0 or err.max(initial=0.0) > rtol:
    raise ValueError(
        "box_from_corners: the corners are not a right-handed box in the canonical order "
        f"(index bits x=4, y=2, z=1); max relative rebuild error {err.max(initial=0.0):.3g}.")
  return center, size, rotation


PROJECT_EPS = 1e-6  # `project`'s default smallest |depth| in the division.


def project(points_cam, intrinsics, eps=PROJECT_EPS):
  """Pinhole projection of camera-frame points (OpenCV frame).

  Points at (or behind) the camera plane get a finite but meaningless (u, v) (the depth is
  clamped to `eps` in magnitude for the division); use `box_validity` on the returned depth to
  reject them rather than relying on the coordinates.

  Args:
    points_cam: [..., 3] points in the OpenCV camera frame.
    intrinsics: [..., 3, 3] normalised intrinsics (broadcast against the points' leading dims).
    eps: smallest |depth| used in the division.

  Returns:
    uv: [..., 2] normalised image coordinates (u right, v down).
    depth: [...] camera z.
  """
  xp = _xp(points_cam, intrinsics)
  points_cam, intrinsics = xp.asarray(points_cam), xp.asarray(intrinsics)
  depth = points_cam[..., 2]
  safe = xp.where(xp.abs(depth) < eps, xp.where(depth < 0, -eps, eps), depth)
  homog = xp.einsum("...ij,...j->...i", intrinsics, points_cam)
  uv = homog[..., :2] / safe[..., None]
  return uv, depth


def project_box(corners_world, world_to_camera, intrinsics):
  """Projects world-space box corners into a camera.

  Args:
    corners_world: [..., 8, 3] world-space corners.
    world_to_camera: [..., 4, 4] OpenCV world-to-camera (leading dims broadcast with the box
      dims, e.g. [T, 1, 4, 4] for corners [T, K, 8, 3]).
    intrinsics: [..., 3, 3] normalised intrinsics (same broadcasting).

  Returns:
    [..., 8, 3] (u, v, depth) per corner.
  """
  xp = _xp(corners_world, world_to_camera, intrinsics)
  world_to_camera, intrinsics = xp.asarray(world_to_camera), xp.asarray(intrinsics)
  cam = transform_points(world_to_camera[..., None, :, :], corners_world)
  uv, depth = project(cam, intrinsics[..., None, :, :])
  return xp.concatenate([uv, depth[..., None]], axis=-1)


def box2d_from_corners(uvd):
  """Axis-aligned 2D box enclosing projected corners, clipped to the image.

  Args:
    uvd: [..., 8, 3] (u, v, depth) corners (only u, v are used).

  Returns:
    [..., 4] normalised [y0, x0, y1, x1] clipped to [0, 1].
  """
  xp = _xp(uvd)
  uvd = xp.asarray(uvd)
  u, v = uvd[..., 0], uvd[..., 1]
  box = xp.stack([v.min(axis=-1), u.min(axis=-1), v.max(axis=-1), u.max(axis=-1)], axis=-1)
  return xp.clip(box, 0.0, 1.0)


def boxes_union_mask(boxes, valid, height: int, width: int):
  """Pixels whose centre lies inside any valid box: the one pixel rule of the box masks (the
  tokenizer's object / background images, the diffusion loss's object weight, the pipeline's
  `background_mask`).

  Pixel (i, j) is inside [y0, x0, y1, x1] when y0 <= (i + 0.5) / H <= y1 and
  x0 <= (j + 0.5) / W <= x1 (both ends included). Pixel centres are computed in the boxes'
  precision (at least float32). The union is a [H, N] @ [N, W] product of 0 / 1 rows, exact
  (a sum of non-negative terms is positive iff one is) and, unlike an [N, H, W] mask reduced
  over N, cheap for the pipeline's numpy batches.

  Args:
    boxes: [..., N, 4] normalised [y0, x0, y1, x1].
    valid: [..., N] bool.
    height, width: H, W.

  Returns:
    [..., H, W] bool.
  """
  xp = _xp(boxes, valid)
  boxes, valid = xp.asarray(boxes), xp.asarray(valid)
  dtype = xp.promote_types(boxes.dtype, xp.float32)
  ys = (xp.arange(height, dtype=dtype) + 0.5) / height
  xs = (xp.arange(width, dtype=dtype) + 0.5) / width
  in_y = (ys >= boxes[..., 0:1]) & (ys <= boxes[..., 2:3]) & valid[..., None]  # [..., N, H]
  in_x = (xs >= boxes[..., 1:2]) & (xs <= boxes[..., 3:4])  # [..., N, W]
  return xp.matmul(xp.swapaxes(in_y.astype(xp.float32), -1, -2), in_x.astype(xp.float32)) > 0


class BoxStatus(enum.IntEnum):
  """Reason codes of `box_validity` (first failing rule wins, in this order)."""
  OK = 0
  DEGENERATE = 1  # non-finite coordinates or a zero / negative / non-finite 3D size.
  BEHIND_CAMERA = 2  # some corner has depth <= min_depth.
  OFF_SCREEN = 3  # the projected box does not overlap the image.
  TOO_SMALL = 4  # the clipped 2D box is thinner than min_size (normalised) in u or v.


def box_validity(uvd, min_depth=1e-2, min_size=0.0, sizes=None):
  """Explicit validity rule for projected 3D boxes.

  A box is valid only when all 8 corners are in front of the camera (a box straddling the camera
  plane has no meaningful pinhole projection), its coordinates are finite, its 3D size (if given)
  is positive, its projection overlaps the image and the clipped 2D box is at least `min_size`
  wide and high.

  Args:
    uvd: [..., 8, 3] projected corners (u, v, depth).
    min_depth: corners with depth <= this are behind (or too close to) the camera.
    min_size: minimum clipped 2D box width and height (normalised units); 0 accepts any box with
      positive overlap.
    sizes: optional [..., 3] 3D box extents; non-positive or non-finite -> DEGENERATE.

  Returns:
    valid: [...] bool.
    reason: [...] int32 `BoxStatus` codes.
  """
  xp = _xp(uvd, sizes)
  uvd = xp.asarray(uvd)
  if uvd.shape[-2:] != (8, 3):
    raise ValueError(f"box_validity wants [..., 8, 3] (u, v, depth), got shape {uvd.shape}.")
  degenerate = ~xp.all(xp.isfinite(uvd), axis=(-2, -1))
  if sizes is not None:
    sizes = xp.asarray(sizes)
    degenerate = degenerate | ~xp.all(xp.isfinite(sizes) & (sizes > 0), axis=-1)
  clean = xp.where(xp.isfinite(uvd), uvd, 0.0)
  behind = xp.any(clean[..., 2] <= min_depth, axis=-1)
  u, v = clean[..., 0], clean[..., 1]
  u0, u1 = u.min(axis=-1), u.max(axis=-1)
  v0, v1 = v.min(axis=-1), v.max(axis=-1)
  off_screen = (u1 <= 0) | (u0 >= 1) | (v1 <= 0) | (v0 >= 1)
  width = xp.clip(u1, 0, 1) - xp.clip(u0, 0, 1)
  height = xp.clip(v1, 0, 1) - xp.clip(v0, 0, 1)
  too_small = (width < min_size) | (height < min_size) | (width <= 0) | (height <= 0)
  reason = xp.full(uvd.shape[:-2], int(BoxStatus.OK), dtype=xp.int32)
  # Later assignments have lower priority, so apply rules from last to first.
  for status, flag in ((BoxStatus.TOO_SMALL, too_small), (BoxStatus.OFF_SCREEN, off_screen),
                       (BoxStatus.BEHIND_CAMERA, behind), (BoxStatus.DEGENERATE, degenerate)):
    reason = xp.where(flag, int(status), reason).astype(xp.int32)
  return reason == int(BoxStatus.OK), reason


def count_reasons(reason, mask=None) -> dict[str, int]:
  """Tallies `box_validity` reason codes, e.g. for logging how many boxes a reader dropped.

  Args:
    reason: [...] int reason codes.
    mask: optional [...] bool; only entries where it is True are counted (e.g. object present).

  Returns:
    {status name lower-case: count} for every status.
  """
  reason = np.asarray(reason)
  if mask is not None:
    reason = reason[np.asarray(mask, dtype=bool)]
  return {s.name.lower(): int(np.sum(reason == int(s))) for s in BoxStatus}
