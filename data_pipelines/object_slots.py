"""Which objects of a frame-pair batch get a slot, compiled (numba): crop, project, check, select.

`frame_pairs.finish_examples` gathers the objects of a batch's examples into flat arrays and
calls `batch_objects` once. One compiled loop replaces ~100 small numpy calls per batch, whose
fixed cost (and the interpreter's, run cold between two batches' image decodes) was the largest
share of the pipeline's time that is not decoding. The rules are those of the `frame_pairs`
module docstring (steps 2-5) and of `geometry.box_validity`; `tests/test_frame_pairs.py` checks
the result against a reference built from `geometry` and the per-array helpers.

Everything is computed in float64 and cast to float32 on output. Compiled functions are cached
on disk next to this file (numba's `cache=True`, keyed on this file's contents): the outcome
and status codes the loops use are constants of this file, checked against `geometry.BoxStatus`
at import so that a cache can never hold other codes than the library's.
"""
from __future__ import annotations

import numba
import numpy as np

from neural_assets import geometry

# Per-object outcome counters, in the order the rules are applied. "kept" counts objects that got
# a slot; every other entry counts objects dropped by that rule (first failing rule only).
OBJECT_COUNT_NAMES = (
    "kept",
    "not_visible_source",
    "not_visible_target",
    "cropped_out_source",
    "cropped_out_target",
    "small_box_source",
    "small_box_target",
    "invalid_3d_degenerate",
    "invalid_3d_behind_camera",
    "invalid_3d_off_screen",
    "invalid_3d_too_small",
    "over_max_objects",
)
_KEPT = 0
_FIRST_2D_RULE = 1  # The six 2D rules are count indices 1-6, in the order above.
_INVALID_3D = 6  # + a BoxStatus code (1-4): the count index of that invalid 3D box.
_OVER_MAX = 11
_CANDIDATE = -1  # No rule failed (yet): competes for a slot.

# `geometry.BoxStatus` codes, first failing rule wins in this order.
_OK, _DEGENERATE, _BEHIND_CAMERA, _OFF_SCREEN, _TOO_SMALL = 0, 1, 2, 3, 4
if ([(s.name, int(s)) for s in geometry.BoxStatus]
    != [("OK", _OK), ("DEGENERATE", _DEGENERATE), ("BEHIND_CAMERA", _BEHIND_CAMERA),
        ("OFF_SCREEN", _OFF_SCREEN), ("TOO_SMALL", _TOO_SMALL)]
    or OBJECT_COUNT_NAMES[_INVALID_3D + 1:_OVER_MAX]
    != tuple(f"invalid_3d_{s.name.lower()}" for s in geometry.BoxStatus if s)):
  raise ImportError("object_slots's codes disagree with geometry.BoxStatus: update both.")

@numba.njit(cache=True)
def box_status(uvd, corners, min_depth, min_projected_size):
  """`geometry.box_validity` of one box: its `BoxStatus` code.

  Args:
    uvd: [8, 3] projected corners (u, v, depth).
    corners: [8, 3] world corners; the box's extents are its edges from corner 0 to corners 4, 2
      and 1 (corner bits x=4, y=2, z=1).
    min_depth, min_projected_size: as `geometry.box_validity`'s min_depth and min_size.
  """
  for axis_corner in (4, 2, 1):
    squared = 0.0
    for c in range(3):
      edge = corners[axis_corner, c] - corners[0, c]
      squared += edge * edge
    if not 0.0 < squared < np.inf:  # NaN fails too.
      return _DEGENERATE
  if not np.isfinite(uvd).all():
    return _DEGENERATE
  behind = False
  low_u = low_v = np.inf
  high_u = high_v = -np.inf
  for j in range(8):
    behind |= uvd[j, 2] <= min_depth
    low_u, high_u = min(low_u, uvd[j, 0]), max(high_u, uvd[j, 0])
    low_v, high_v = min(low_v, uvd[j, 1]), max(high_v, uvd[j, 1])
  if behind:
    return _BEHIND_CAMERA
  if high_u <= 0.0 or low_u >= 1.0 or high_v <= 0.0 or low_v >= 1.0:
    return _OFF_SCREEN
  extent = min(min(high_u, 1.0) - max(low_u, 0.0), min(high_v, 1.0) - max(low_v, 0.0))
  if extent < min_projected_size or extent <= 0.0:
    return _TOO_SMALL
  return _OK


@numba.njit(cache=True)
def keep_all_drops(status, drop_invalid_3d):
  """Whether `keep_all_objects` gives an object with target 3D box `status` no slot.

  A degenerate box has no pose to give. With `drop_invalid_3d` (`FramePairConfig.
  invalid_3d_boxes` "drop") a box behind the camera (its division by a depth clamped to
  `project_eps` gives |u|, |v| up to ~1e6) or off screen (nothing of it in the target image)
  drops too, so that the pose encoder's inputs are bounded. A box too small on screen keeps its
  slot: in front of the camera and on screen, its projection is as bounded as any other's, and
  keep_all ignores the size rules (the release's).
  """
  if status == _DEGENERATE:
    return True
  return drop_invalid_3d and (status == _BEHIND_CAMERA or status == _OFF_SCREEN)


@numba.njit(cache=True)
def select(visible, boxes, status, starts, max_objects, keep_all_objects, drop_invalid_3d,
           visible_in_both, min_box_size):
  """The objects that get a slot, for the objects of several examples (flattened).

  Args:
    visible: [2, M] bool (source, target) visibility.
    boxes: [2, M, 4] cropped normalised boxes (zeros where not visible).
    status: [M] `BoxStatus` code of each target 3D box.
    starts: [B + 1] the objects of example b are starts[b]:starts[b + 1].
    max_objects: N; keep_all_objects, visible_in_both, min_box_size: `FramePairConfig`'s.
    drop_invalid_3d: `FramePairConfig.invalid_3d_boxes == "drop"` (see `keep_all_drops`).

  Returns:
    outcome: [M] count index of each object (`OBJECT_COUNT_NAMES`);
    slot: [M] slot of a kept object, -1 for the others.
  """
  num = status.shape[0]
  outcome = np.empty(num, np.int64)
  area = np.empty(num)
  for m in range(num):
    vs, vt = visible[0, m], visible[1, m]
    short_s = min(boxes[0, m, 2] - boxes[0, m, 0], boxes[0, m, 3] - boxes[0, m, 1])
    short_t = min(boxes[1, m, 2] - boxes[1, m, 0], boxes[1, m, 3] - boxes[1, m, 1])
    # Largest first: max of the two frames' areas (a source box only counts where visible).
    area[m] = max((boxes[0, m, 2] - boxes[0, m, 0]) * (boxes[0, m, 3] - boxes[0, m, 1]) * vs,
                  (boxes[1, m, 2] - boxes[1, m, 0]) * (boxes[1, m, 3] - boxes[1, m, 1]))
    if keep_all_objects:  # Every object competes for a slot unless its pose is unusable.
      outcome[m] = (_INVALID_3D + status[m] if keep_all_drops(status[m], drop_invalid_3d)
                    else _CANDIDATE)
    elif visible_in_both and not vs:
      outcome[m] = _FIRST_2D_RULE
    elif not vt:
      outcome[m] = _FIRST_2D_RULE + 1
    elif vs and short_s <= 0.0:
      outcome[m] = _FIRST_2D_RULE + 2
    elif short_t <= 0.0:
      outcome[m] = _FIRST_2D_RULE + 3
    elif vs and short_s < min_box_size:
      outcome[m] = _FIRST_2D_RULE + 4
    elif short_t < min_box_size:
      outcome[m] = _FIRST_2D_RULE + 5
    elif status[m] != _OK:
      outcome[m] = _INVALID_3D + status[m]
    else:
      outcome[m] = _CANDIDATE
  slot = np.full(num, -1, np.int64)
  for b in range(starts.shape[0] - 1):
    next_slot = 0
    for m in range(starts[b], starts[b + 1]):
      if outcome[m] != _CANDIDATE:
        continue
      # Rank among the example's candidates: larger areas first, ties to lower indices.
      rank = 0
      for other in range(starts[b], starts[b + 1]):
        if outcome[other] == _CANDIDATE and (
            area[other] > area[m] or (area[other] == area[m] and other < m)):
          rank += 1
      if rank < max_objects:
        slot[m] = next_slot  # Kept objects fill slots in object-index order.
        next_slot += 1
    for m in range(starts[b], starts[b + 1]):
      if outcome[m] == _CANDIDATE:
        outcome[m] = _KEPT if slot[m] >= 0 else _OVER_MAX
  return outcome, slot


@numba.njit(cache=True)
def batch_objects(sizes, frames, boxes_2d, visible, corners, world_to_camera, intrinsics,
                  max_objects, keep_all_objects, drop_invalid_3d, visible_in_both, min_box_size,
                  min_depth, min_projected_size, project_eps):
  """Crops the boxes, projects the target 3D boxes, validates and selects the objects of a batch
  and computes the relative camera poses.

  Args:
    sizes: [B] int64 objects per example; example b's objects follow example b - 1's (M in all).
    frames: [B, 6] float64 per example: frame height, width and its centre crop (y0, x0, crop
      height, crop width) in pixels (`frame_pairs.center_crop_box`).
    boxes_2d: [2, M, 4] float64 (source, target) normalised boxes of the full frame.
    visible: [2, M] bool.
    corners: [M, 8, 3] float64 target world corners.
    world_to_camera: [B, 2, 4, 4] float64 (source, target) cameras.
    intrinsics: [B, 3, 3] float64 normalised target intrinsics of the full frame.
    max_objects .. min_projected_size: `FramePairConfig`'s; drop_invalid_3d: its
      `invalid_3d_boxes == "drop"` (see `keep_all_drops`).
    project_eps: smallest |depth| in the projection's division (`geometry.PROJECT_EPS`; an
      argument, not a global, so that numba's cache of this file never holds a stale value).

  Returns:
    boxes: [2, M, 4] float64 cropped boxes (zeros where not visible);
    source_boxes, target_boxes: [B, N, 4] float32; target_corners: [B, N, 8, 3] float32;
    slot_mask, appearance_mask: [B, N] bool; relative_pose: [B, 4, 4] float32;
    counts: [B, len(OBJECT_COUNT_NAMES)] int32.
  """
  num_examples, num = sizes.shape[0], corners.shape[0]
  starts = np.zeros(num_examples + 1, np.int64)
  starts[1:] = np.cumsum(sizes)
  boxes = np.empty((2, num, 4))
  status = np.empty(num, np.int64)
  uvd = np.empty((num, 8, 3))
  for b in range(num_examples):
    height, width, y0, x0, crop_h, crop_w = frames[b]
    scale = (height / crop_h, width / crop_w)
    offset = (y0 / crop_h, x0 / crop_w)
    # The crop's intrinsics K' = A @ K, A = [[W / cw, 0, -x0 / cw], [0, H / ch, -y0 / ch], 0 0 1].
    k = intrinsics[b]
    cropped = np.empty((2, 3))
    for c in range(3):
      cropped[0, c] = width / crop_w * k[0, c] - x0 / crop_w * k[2, c]
      cropped[1, c] = height / crop_h * k[1, c] - y0 / crop_h * k[2, c]
    # (u, v) = (K'[:2] @ (R p + t)) / depth, depth = R[2] @ p + t[2]: one [3, 4] map per example.
    rigid = world_to_camera[b, 1, :3]
    project = np.empty((3, 4))
    for c in range(4):
      project[0, c] = cropped[0, 0] * rigid[0, c] + cropped[0, 1] * rigid[1, c] + (
          cropped[0, 2] * rigid[2, c])
      project[1, c] = cropped[1, 0] * rigid[0, c] + cropped[1, 1] * rigid[1, c] + (
          cropped[1, 2] * rigid[2, c])
      project[2, c] = rigid[2, c]
    for m in range(starts[b], starts[b + 1]):
      for f in range(2):
        for j in range(4):
          value = boxes_2d[f, m, j] * scale[j % 2] - offset[j % 2]
          boxes[f, m, j] = min(max(value, 0.0), 1.0) if visible[f, m] else 0.0
      for j in range(8):
        for r in range(3):
          uvd[m, j, r] = (project[r, 0] * corners[m, j, 0] + project[r, 1] * corners[m, j, 1]
                          + project[r, 2] * corners[m, j, 2]) + project[r, 3]
        depth = uvd[m, j, 2]
        divisor = np.copysign(max(abs(depth), project_eps), depth)
        uvd[m, j, 0] /= divisor
        uvd[m, j, 1] /= divisor
      status[m] = box_status(uvd[m], corners[m], min_depth, min_projected_size)
  outcome, slot = select(visible, boxes, status, starts, max_objects, keep_all_objects,
                         drop_invalid_3d, visible_in_both, min_box_size)

  source_boxes = np.zeros((num_examples, max_objects, 4), np.float32)
  target_boxes = np.zeros((num_examples, max_objects, 4), np.float32)
  target_corners = np.zeros((num_examples, max_objects, 8, 3), np.float32)
  slot_mask = np.zeros((num_examples, max_objects), np.bool_)
  appearance_mask = np.zeros((num_examples, max_objects), np.bool_)
  counts = np.zeros((num_examples, len(OBJECT_COUNT_NAMES)), np.int32)
  relative_pose = np.empty((num_examples, 4, 4), np.float32)
  for b in range(num_examples):
    for m in range(starts[b], starts[b + 1]):
      counts[b, outcome[m]] += 1
      s = slot[m]
      if s < 0:
        continue
      source_boxes[b, s] = boxes[0, m]
      target_boxes[b, s] = boxes[1, m]
      target_corners[b, s] = uvd[m]
      slot_mask[b, s] = True
      # Appearance is read only from a visible source box of at least min_box_size (> 0): an
      # empty box would otherwise pool the feature map's border (RoIAlign clamps), not nothing.
      short_s = min(boxes[0, m, 2] - boxes[0, m, 0], boxes[0, m, 3] - boxes[0, m, 1])
      appearance_mask[b, s] = visible[0, m] and short_s > 0.0 and short_s >= min_box_size
    # Source camera -> target camera: w2c_tgt @ inv(w2c_src), the inverse of a rigid transform.
    source = world_to_camera[b, 0]
    source_to_world = np.zeros((4, 4))
    for r in range(3):
      for c in range(3):
        source_to_world[r, c] = source[c, r]
      source_to_world[r, 3] = -(source[0, r] * source[0, 3] + source[1, r] * source[1, 3]
                                + source[2, r] * source[2, 3])
    source_to_world[3, 3] = 1.0
    target = world_to_camera[b, 1]
    for r in range(4):
      for c in range(4):
        total = 0.0
        for i in range(4):
          total += target[r, i] * source_to_world[i, c]
        relative_pose[b, r, c] = total
  return (boxes, source_boxes, target_boxes, target_corners, slot_mask, appearance_mask,
          relative_pose, counts)
