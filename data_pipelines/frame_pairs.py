"""Frame-pair sampler: one decoded video record -> one frame-pair training example.

Pure per-example logic (numpy + Pillow, no grain, no JAX arrays); `data_pipelines.pipeline` wraps
it in a grain pipeline. Given a video record (schema in `data_pipelines.video_record`) it

1. picks a (source, target) frame pair: gap uniform in [min_gap, min(max_gap, T - 1)] (0 allowed:
   source == target), start uniform among the frames that fit the gap, then the order is swapped
   with probability `swap_prob` (0.5 in the paper's release), see `sample_frame_pair`;
2. decodes only those two frames (PNG or JPEG), centre-crops them to the training aspect ratio and
   resizes them to the training resolution; the same crop is applied to the 2D boxes and to the
   normalised intrinsics (`crop_intrinsics`), and the target boxes are projected with the
   *cropped* intrinsics, so corners, boxes and pixels stay consistent;
3. filters objects (each dropped object is counted under the first rule it fails, in the order of
   `OBJECT_COUNT_NAMES`): visible in the source / target frame, 2D box not cropped away and at
   least `min_box_size` (normalised, after the crop) in both frames, a valid 3D box in the target
   camera (`geometry.box_validity`: finite, non-degenerate, in front of the camera, on screen);
   an invalid box is masked, never NaN;
4. keeps at most `max_objects` objects, the largest 2D boxes first (ties: lower object index
   first), placed in slots in object-index order, zero-padded, with `slot_mask`;
5. computes the relative camera pose source -> target (`w2c_tgt @ inv(w2c_src)`).

Output (the FRAME-PAIR EXAMPLE of DESIGN.md, N = max_objects, H x W = resolution):
  source_image, target_image  [H, W, 3] uint8
  source_boxes, target_boxes  [N, 4] float32  normalised [y0, x0, y1, x1]; zeros in empty slots
  target_corners              [N, 8, 3] float32  (u, v, depth) in the target camera; zeros padded
  slot_mask                   [N] bool
  relative_pose               [4, 4] float32
  video_index, source_frame, target_frame  int32 scalars
plus a separate `object_counts` [len(OBJECT_COUNT_NAMES)] int32 vector (kept / dropped per
reason) that the pipeline aggregates for logging.

Errors: anything wrong with the *record* (undecodable frame, frames of different sizes, a video
too short for `min_gap`) raises `CorruptRecordError` so that the pipeline can skip and count it;
a bad *configuration* raises ValueError.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Any, Mapping

import numpy as np
from PIL import Image

from data_pipelines.video_record import CorruptRecordError
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
    *(f"invalid_3d_{s.name.lower()}" for s in geometry.BoxStatus if s != geometry.BoxStatus.OK),
    "over_max_objects",
)
_COUNT_INDEX = {name: i for i, name in enumerate(OBJECT_COUNT_NAMES)}

_RESAMPLING = {
    "area": Image.Resampling.BOX,  # Exact area averaging when downsampling (the release's).
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}

EXAMPLE_KEYS = ("source_image", "target_image", "source_boxes", "target_boxes", "target_corners",
                "slot_mask", "relative_pose", "video_index", "source_frame", "target_frame")


class RecordTooShortError(CorruptRecordError):
  """The video has fewer frames than the configured minimum frame gap needs."""


@dataclasses.dataclass(frozen=True)
class FramePairConfig:
  """Every knob of the per-example logic (see the module docstring).

  Attributes:
    resolution: (H, W) of the output images.
    max_objects: N, the number of object slots.
    min_gap, max_gap: frame gap range, inclusive; max_gap None = T - 1 (the whole video).
    swap_prob: probability of swapping source and target.
    min_box_size: minimum normalised height and width of an object's 2D box (after the crop) in
      each frame it must be visible in.
    visible_in_both: True: an object must be visible in source and target. False: visible in the
      target suffices (its source box is zeros: an object inserted into the scene).
    min_depth: corners at depth <= min_depth (camera z) make the target 3D box invalid.
    min_projected_size: minimum normalised width/height of the clipped projected 3D box.
    resize_method: one of "area", "bilinear", "bicubic", "lanczos", "nearest".
    jpeg_draft: let the JPEG decoder downscale by 1/2, 1/4 or 1/8 in the DCT domain when the crop
      is at least that much larger than the output (much faster; the result is then resized to
      the exact size as usual).
  """
  resolution: tuple[int, int] = (256, 256)
  max_objects: int = 23
  min_gap: int = 0
  max_gap: int | None = None
  swap_prob: float = 0.5
  min_box_size: float = 0.0
  visible_in_both: bool = True
  min_depth: float = 1e-2
  min_projected_size: float = 0.0
  resize_method: str = "area"
  jpeg_draft: bool = True

  def __post_init__(self):
    height, width = self.resolution
    if height <= 0 or width <= 0:
      raise ValueError(f"resolution must be positive, got {self.resolution}.")
    if self.max_objects <= 0:
      raise ValueError(f"max_objects must be positive, got {self.max_objects}.")
    if self.min_gap < 0 or (self.max_gap is not None and self.max_gap < self.min_gap):
      raise ValueError(f"Bad frame gap range [{self.min_gap}, {self.max_gap}]: need "
                       "0 <= min_gap <= max_gap.")
    if not 0.0 <= self.swap_prob <= 1.0:
      raise ValueError(f"swap_prob must be in [0, 1], got {self.swap_prob}.")
    if self.min_box_size < 0 or self.min_projected_size < 0:
      raise ValueError("min_box_size and min_projected_size must be >= 0.")
    if self.resize_method not in _RESAMPLING:
      raise ValueError(f"Unknown resize_method {self.resize_method!r}: expected one of "
                       f"{sorted(_RESAMPLING)}.")

  @classmethod
  def from_config(cls, data_config: Mapping[str, Any], max_objects: int) -> "FramePairConfig":
    """Builds it from the `config.data` section (keys named like the attributes)."""
    kwargs = {f.name: data_config[f.name] for f in dataclasses.fields(cls)
              if f.name in data_config and f.name != "max_objects"}
    if "resolution" in kwargs:
      kwargs["resolution"] = tuple(int(x) for x in kwargs["resolution"])
    return cls(max_objects=max_objects, **kwargs)


# ------------------------------------------------------------------------------------------------
# Frame pair choice.


def sample_frame_pair(num_frames: int, min_gap: int, max_gap: int | None, swap_prob: float,
                      rng: np.random.Generator) -> tuple[int, int]:
  """Random (source, target) frame indices.

  Args:
    num_frames: T.
    min_gap, max_gap: inclusive gap range; max_gap None or >= T means T - 1.
    swap_prob: probability that the later frame is the source.
    rng: numpy Generator (consumed: gap, start, swap).

  Returns:
    (source_frame, target_frame) with |target - source| in [min_gap, min(max_gap, T - 1)].

  Raises:
    RecordTooShortError: T - 1 < min_gap.
  """
  top = num_frames - 1 if max_gap is None else min(max_gap, num_frames - 1)
  if num_frames < 1 or top < min_gap:
    raise RecordTooShortError(f"Video has {num_frames} frames; a frame gap of at least {min_gap} "
                              "needs more.")
  gap = int(rng.integers(min_gap, top + 1))
  start = int(rng.integers(0, num_frames - gap))
  first, second = start, start + gap
  if rng.random() < swap_prob:
    first, second = second, first
  return first, second


# ------------------------------------------------------------------------------------------------
# Crop / resize geometry.


def center_crop_box(height: int, width: int, out_height: int,
                    out_width: int) -> tuple[float, float, float, float]:
  """Largest centred crop of an H x W image with the output's aspect ratio.

  Returns:
    (y0, x0, crop_height, crop_width) in pixels (floats: the resize samples sub-pixel boxes, so
    no rounding error enters the intrinsics).
  """
  if height <= 0 or width <= 0:
    raise ValueError(f"Image size must be positive, got {height}x{width}.")
  target_aspect = out_width / out_height
  if width / height > target_aspect:
    crop_h, crop_w = float(height), height * target_aspect
  else:
    crop_h, crop_w = width / target_aspect, float(width)
  return (height - crop_h) / 2.0, (width - crop_w) / 2.0, crop_h, crop_w


def _crop_affine(crop, height, width) -> np.ndarray:
  """[3, 3] map of normalised (u, v, 1) in the full image to normalised coords in the crop."""
  y0, x0, crop_h, crop_w = crop
  return np.array([[width / crop_w, 0.0, -x0 / crop_w],
                   [0.0, height / crop_h, -y0 / crop_h],
                   [0.0, 0.0, 1.0]], dtype=np.float64)


def crop_intrinsics(intrinsics: np.ndarray, crop, height: int, width: int) -> np.ndarray:
  """Normalised intrinsics of the cropped image ([..., 3, 3] -> [..., 3, 3] float32).

  Resizing does not change normalised intrinsics (u, v are fractions of the image extent), a crop
  does: u' = (u * W - x0) / crop_w, i.e. K' = A @ K.
  """
  return np.matmul(_crop_affine(crop, height, width), intrinsics).astype(np.float32)


def crop_boxes(boxes: np.ndarray, crop, height: int, width: int) -> np.ndarray:
  """Normalised [..., 4] [y0, x0, y1, x1] boxes of the full image -> of the crop, clipped."""
  y0, x0, crop_h, crop_w = crop
  scale = np.array([height / crop_h, width / crop_w] * 2)
  offset = np.array([y0 / crop_h, x0 / crop_w] * 2)
  return np.clip(boxes * scale - offset, 0.0, 1.0).astype(np.float32)


def decode_frame(data: bytes, crop, out_size: tuple[int, int], resize_method: str = "area",
                 jpeg_draft: bool = True, expect_size: tuple[int, int] | None = None) -> np.ndarray:
  """Decodes a PNG/JPEG frame, crops `crop` (pixels of the full frame) and resizes.

  Args:
    data: encoded image bytes.
    crop: (y0, x0, crop_h, crop_w) in pixels of the full-size frame, or None for the full frame.
    out_size: (H, W) of the result.
    resize_method: key of the resampling filters (see FramePairConfig).
    jpeg_draft: allow DCT-domain downscaling for JPEGs much larger than the output.
    expect_size: (height, width) the frame must have; None accepts any.

  Returns:
    [H, W, 3] uint8.

  Raises:
    CorruptRecordError: the bytes are not a decodable image or have the wrong size.
  """
  out_h, out_w = out_size
  try:
    image = Image.open(io.BytesIO(data))
    full_w, full_h = image.size
    if expect_size is not None and (full_h, full_w) != tuple(expect_size):
      raise CorruptRecordError(f"Frame is {full_h}x{full_w}, other frames are "
                               f"{expect_size[0]}x{expect_size[1]}.")
    y0, x0, crop_h, crop_w = crop if crop is not None else (0.0, 0.0, full_h, full_w)
    if jpeg_draft and image.format == "JPEG":
      # Draft keeps every side >= the requested size, so the decoded crop still covers out_size.
      image.draft("RGB", (int(np.ceil(out_w * full_w / crop_w)),
                          int(np.ceil(out_h * full_h / crop_h))))
    if image.mode != "RGB":
      image = image.convert("RGB")
    sx, sy = image.size[0] / full_w, image.size[1] / full_h
    box = (x0 * sx, y0 * sy, (x0 + crop_w) * sx, (y0 + crop_h) * sy)
    if image.size != (out_w, out_h) or box != (0.0, 0.0, float(out_w), float(out_h)):
      image = image.resize((out_w, out_h), _RESAMPLING[resize_method], box=box)
    pixels = np.asarray(image)
  except CorruptRecordError:
    raise
  except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad bytes.
    raise CorruptRecordError(f"Frame cannot be decoded as an image: {e!r}") from e
  if pixels.shape != (out_h, out_w, 3):
    raise CorruptRecordError(f"Decoded frame has shape {pixels.shape}, want {(out_h, out_w, 3)}.")
  return pixels


def image_size(data: bytes) -> tuple[int, int]:
  """(height, width) of an encoded image from its header only."""
  try:
    width, height = Image.open(io.BytesIO(data)).size
  except Exception as e:  # noqa: BLE001
    raise CorruptRecordError(f"Frame header cannot be read: {e!r}") from e
  return height, width


# ------------------------------------------------------------------------------------------------
# Object selection.


def _box_sides(boxes):
  return boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]


def select_objects(visible_src, visible_tgt, boxes_src, boxes_tgt, valid_3d, reason_3d,
                   cfg: FramePairConfig):
  """Chooses the objects that get a slot.

  Args:
    visible_src, visible_tgt: [K] bool.
    boxes_src, boxes_tgt: [K, 4] cropped normalised boxes.
    valid_3d: [K] bool validity of the target 3D box; reason_3d: [K] int32 `BoxStatus`.
    cfg: thresholds.

  Returns:
    keep: [M] int object indices (ascending), M <= max_objects.
    counts: [len(OBJECT_COUNT_NAMES)] int32, one outcome per object.
  """
  num = visible_src.shape[0]
  h_src, w_src = _box_sides(boxes_src)
  h_tgt, w_tgt = _box_sides(boxes_tgt)
  need_src = visible_src  # Only a visible source box can be too small.
  rules = [
      ("not_visible_source", cfg.visible_in_both & ~visible_src),
      ("not_visible_target", ~visible_tgt),
      ("cropped_out_source", visible_src & ((h_src <= 0) | (w_src <= 0))),
      ("cropped_out_target", (h_tgt <= 0) | (w_tgt <= 0)),
      ("small_box_source", need_src & ((h_src < cfg.min_box_size) | (w_src < cfg.min_box_size))),
      ("small_box_target", (h_tgt < cfg.min_box_size) | (w_tgt < cfg.min_box_size)),
  ]
  for status in geometry.BoxStatus:
    if status != geometry.BoxStatus.OK:
      rules.append((f"invalid_3d_{status.name.lower()}", ~valid_3d & (reason_3d == int(status))))
  outcome = np.full(num, -1, dtype=np.int64)
  for name, failed in rules:
    outcome = np.where((outcome < 0) & failed, _COUNT_INDEX[name], outcome)
  candidates = np.flatnonzero(outcome < 0)
  # Largest first (max of the two frames' areas); a stable sort keeps lower indices first on ties.
  area = np.maximum(h_src * w_src * visible_src, h_tgt * w_tgt)
  order = candidates[np.argsort(-area[candidates], kind="stable")]
  keep = np.sort(order[:cfg.max_objects])
  outcome[order[cfg.max_objects:]] = _COUNT_INDEX["over_max_objects"]
  outcome[keep] = _COUNT_INDEX["kept"]
  counts = np.bincount(outcome, minlength=len(OBJECT_COUNT_NAMES)).astype(np.int32)
  return keep, counts


# ------------------------------------------------------------------------------------------------
# The example.


def make_frame_pair(record: Mapping[str, Any], source_frame: int, target_frame: int,
                    video_index: int, cfg: FramePairConfig):
  """Builds the frame-pair example for a given pair of frames of a decoded video record.

  Args:
    record: decoded, validated video record (`video_record.decode`).
    source_frame, target_frame: frame indices (may be equal).
    video_index: index of the record in the data source (for tracing).
    cfg: FramePairConfig.

  Returns:
    (example, object_counts): the example dict (module docstring) and the
    [len(OBJECT_COUNT_NAMES)] int32 per-object outcome counts.

  Raises:
    CorruptRecordError: a frame cannot be decoded, or frames differ in size.
  """
  num_frames = len(record["frames"])
  for f in (source_frame, target_frame):
    if not 0 <= f < num_frames:
      raise ValueError(f"Frame index {f} out of range for a video of {num_frames} frames.")
  out_h, out_w = cfg.resolution
  n = cfg.max_objects
  height, width = image_size(record["frames"][source_frame])
  crop = center_crop_box(height, width, out_h, out_w)
  decode = dict(out_size=cfg.resolution, resize_method=cfg.resize_method,
                jpeg_draft=cfg.jpeg_draft, expect_size=(height, width))
  source_image = decode_frame(record["frames"][source_frame], crop, **decode)
  target_image = (source_image if target_frame == source_frame
                  else decode_frame(record["frames"][target_frame], crop, **decode))

  w2c = np.asarray(record["world_to_camera"], np.float32)
  visible = np.asarray(record["visible"], bool)
  boxes_src = crop_boxes(np.asarray(record["boxes_2d"][source_frame]), crop, height, width)
  boxes_tgt = crop_boxes(np.asarray(record["boxes_2d"][target_frame]), crop, height, width)
  boxes_src = boxes_src * visible[source_frame, :, None]
  boxes_tgt = boxes_tgt * visible[target_frame, :, None]

  intrinsics_tgt = crop_intrinsics(np.asarray(record["intrinsics"][target_frame]), crop,
                                   height, width)
  corners_world = np.asarray(record["box_corners_world"][target_frame], np.float32)  # [K, 8, 3]
  uvd = geometry.project_box(corners_world, w2c[target_frame], intrinsics_tgt).astype(np.float32)
  # Box extents along its own axes (corner bits x=4, y=2, z=1) to reject degenerate boxes.
  sizes = np.linalg.norm(corners_world[:, [4, 2, 1]] - corners_world[:, :1], axis=-1)
  valid_3d, reason_3d = geometry.box_validity(uvd, min_depth=cfg.min_depth,
                                              min_size=cfg.min_projected_size, sizes=sizes)
  keep, counts = select_objects(visible[source_frame], visible[target_frame], boxes_src,
                                boxes_tgt, np.asarray(valid_3d), np.asarray(reason_3d), cfg)
  m = keep.shape[0]

  source_boxes = np.zeros((n, 4), np.float32)
  target_boxes = np.zeros((n, 4), np.float32)
  target_corners = np.zeros((n, 8, 3), np.float32)
  slot_mask = np.zeros((n,), bool)
  source_boxes[:m] = boxes_src[keep]
  target_boxes[:m] = boxes_tgt[keep]
  target_corners[:m] = uvd[keep]
  slot_mask[:m] = True
  example = {
      "source_image": source_image,
      "target_image": target_image,
      "source_boxes": source_boxes,
      "target_boxes": target_boxes,
      "target_corners": target_corners,
      "slot_mask": slot_mask,
      "relative_pose": np.asarray(geometry.relative_pose(w2c[source_frame], w2c[target_frame]),
                                  np.float32),
      "video_index": np.int32(video_index),
      "source_frame": np.int32(source_frame),
      "target_frame": np.int32(target_frame),
  }
  return example, counts


def sample_example(record: Mapping[str, Any], video_index: int, rng: np.random.Generator,
                   cfg: FramePairConfig):
  """Random frame pair (`sample_frame_pair`) + `make_frame_pair`; same returns."""
  source_frame, target_frame = sample_frame_pair(len(record["frames"]), cfg.min_gap, cfg.max_gap,
                                                 cfg.swap_prob, rng)
  return make_frame_pair(record, source_frame, target_frame, video_index, cfg)
