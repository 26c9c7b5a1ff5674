"""Frame-pair sampler: one decoded video record -> one frame-pair training example.

Pure logic (numpy + numba, frames decoded by `data_pipelines.image_decoding`; no grain, no JAX
arrays); `data_pipelines.pipeline` wraps it in a grain pipeline. An example is `prepare_example`
(per example: the two frames decoded, the objects' arrays gathered; itself `open_example` +
`decode_example`, which the pipeline calls in separate phases) + `finish_examples` (the object
logic over a whole batch, one compiled loop in `data_pipelines.object_slots`: the pipeline calls
it once per batch); `tests/frame_pairs_reference.py` composes them for one pair
(`make_frame_pair`). Given a video record (schema in `data_pipelines.video_record`) it

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
   an invalid box is masked, never NaN. With `keep_all_objects` (the release's slot selection)
   the 2D rules are ignored: every object of the video gets a slot, an object invisible in the
   source with a zero source box and `appearance_mask` False (a zero appearance token, but its
   pose), an object invisible in the target with its pose; except a degenerate target 3D box
   and, with `invalid_3d_boxes` "drop" (default, the paper configs), one behind the target
   camera or off screen (its projection is unbounded or shows nothing), so that the pose
   encoder's inputs are bounded (`invalid_3d_boxes` "keep": the MOVi-E release, raw
   projections of every non-degenerate box);
4. keeps at most `max_objects` objects, the largest 2D boxes first (ties: lower object index
   first), placed in slots in object-index order, zero-padded, with `slot_mask`;
5. computes the relative camera pose source -> target (`w2c_tgt @ inv(w2c_src)`);
6. with `paint_all_source_objects` (release), the `background_mask`: pixels inside the source box
   of *any* object visible in the source, slotted or not, which the background token's image
   paints out (else the tokenizer paints the slotted boxes only, so an unslotted object leaked
   into the background token).

Output (the FRAME-PAIR EXAMPLE of DESIGN.md, N = max_objects, H x W = resolution):
  source_image, target_image  [H, W, 3] uint8
  source_boxes, target_boxes  [N, 4] float32  normalised [y0, x0, y1, x1]; zeros in empty slots
  target_corners              [N, 8, 3] float32  (u, v, depth) in the target camera; zeros padded
  slot_mask                   [N] bool
  appearance_mask             [N] bool  slot whose source box is visible and non-empty (its
                                        appearance token is read; else exactly zero)
  relative_pose               [4, 4] float32
  background_mask             [H, W] bool  only with `paint_all_source_objects` (step 6)
  video_index, source_frame, target_frame  int32 scalars
plus a separate `object_counts` [len(OBJECT_COUNT_NAMES)] int32 vector (kept / dropped per
reason) that the pipeline aggregates for logging.

Errors: anything wrong with the *record* (undecodable frame, frames of different sizes, a video
too short for `min_gap`) raises `CorruptRecordError` so that the pipeline can skip and count it;
a bad *configuration* raises ValueError.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from data_pipelines import image_decoding
from data_pipelines import object_slots
from data_pipelines.video_record import CorruptRecordError
from neural_assets import geometry

# Per-object outcome counters ("kept" and each drop rule, in the order the rules are applied).
OBJECT_COUNT_NAMES = object_slots.OBJECT_COUNT_NAMES

# `FramePairConfig.invalid_3d_boxes`: what `keep_all_objects` does with an object whose target 3D
# box is behind the camera or off screen ("drop": no slot; "keep": its raw projection, release).
INVALID_3D_BOXES = ("drop", "keep")

EXAMPLE_KEYS = ("source_image", "target_image", "source_boxes", "target_boxes", "target_corners",
                "slot_mask", "appearance_mask", "relative_pose", "video_index", "source_frame",
                "target_frame")


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
    keep_all_objects: the release's slot selection (step 3): every object is a slot candidate
      unless its 3D box is degenerate (or, with `invalid_3d_boxes` "drop", behind the camera or
      off screen); `visible_in_both`, the 2D rules and the other 3D rules are ignored; step 4
      (at most `max_objects`, the largest) still applies.
    invalid_3d_boxes: with `keep_all_objects`, an object whose target 3D box is behind the camera
      or off screen: "drop" (no slot, counted under `invalid_3d_behind_camera` /
      `invalid_3d_off_screen`; bounded pose inputs) or "keep" (the MOVi-E release: a slot with
      the raw projection, whose corners at depth ~0 reach |u|, |v| ~ 1 / geometry.PROJECT_EPS).
      A box too small on screen keeps its slot either way. Without keep_all_objects every
      invalid box drops.
    paint_all_source_objects: emit `background_mask` (step 6).
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
  keep_all_objects: bool = False
  invalid_3d_boxes: str = "drop"
  paint_all_source_objects: bool = False
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
    if self.invalid_3d_boxes not in INVALID_3D_BOXES:
      raise ValueError(f"Unknown invalid_3d_boxes {self.invalid_3d_boxes!r}: expected one of "
                       f"{INVALID_3D_BOXES}.")
    if self.resize_method not in image_decoding.RESAMPLING:
      raise ValueError(f"Unknown resize_method {self.resize_method!r}: expected one of "
                       f"{sorted(image_decoding.RESAMPLING)}.")

  @property
  def drop_invalid_3d(self) -> bool:
    """`invalid_3d_boxes` as the compiled `object_slots` takes it (a bool, not a string)."""
    return self.invalid_3d_boxes == "drop"

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
    rng: numpy Generator (consumed: 3 uniform doubles, for gap, start and swap).

  Returns:
    (source_frame, target_frame) with |target - source| in [min_gap, min(max_gap, T - 1)].

  Raises:
    RecordTooShortError: T - 1 < min_gap.
  """
  top = num_frames - 1 if max_gap is None else min(max_gap, num_frames - 1)
  if num_frames < 1 or top < min_gap:
    raise RecordTooShortError(f"Video has {num_frames} frames; a frame gap of at least {min_gap} "
                              "needs more.")
  # One draw of 3 doubles (a Generator call costs microseconds; this runs once per example).
  # floor(u * n) is uniform on [0, n) up to the 2^-53 resolution of u.
  u_gap, u_start, u_swap = rng.random(3).tolist()
  gap = min_gap + min(int(u_gap * (top + 1 - min_gap)), top - min_gap)
  start = min(int(u_start * (num_frames - gap)), num_frames - gap - 1)
  first, second = start, start + gap
  if u_swap < swap_prob:
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


# ------------------------------------------------------------------------------------------------
# The example.

# Per-example fields `prepare_example` adds for `finish_examples` (objects of one video).
PREPARED_KEYS = ("_frame_size", "_boxes_2d", "_visible", "_corners_world", "_world_to_camera",
                 "_intrinsics")


def decode_frames(frames, cfg: FramePairConfig) -> np.ndarray:
  """Every frame of a video as `prepare_example` decodes a pair's: [F, H, W, 3] uint8, centre
  crop + resize to `cfg.resolution`; raises CorruptRecordError (frames of different sizes too)."""
  out_h, out_w = cfg.resolution
  out = np.empty((len(frames), out_h, out_w, 3), np.uint8)
  decode = None
  for t in range(len(frames)):
    data = frames[t]
    image = image_decoding.open_image(data)
    if decode is None:
      width, height = image.size
      decode = (center_crop_box(height, width, out_h, out_w), cfg.resolution, cfg.resize_method,
                cfg.jpeg_draft, (height, width))
    image_decoding.decode_opened(image, data, *decode, out=out[t])
  return out


def read_pair_frames(record: Mapping[str, Any], source_frame: int, target_frame: int):
  """(source, target) encoded frames of a pair (one object twice when source == target; each
  frame record is read, and checksummed, once)."""
  frames = record["frames"]
  num_frames = len(frames)
  for f in (source_frame, target_frame):
    if not 0 <= f < num_frames:
      raise ValueError(f"Frame index {f} out of range for a video of {num_frames} frames.")
  source = frames[source_frame]
  return source, (source if target_frame == source_frame else frames[target_frame])


def open_example(record: Mapping[str, Any], source_frame: int, target_frame: int,
                 video_index: int, cfg: FramePairConfig,
                 encoded: tuple[Any, Any] | None = None) -> dict[str, Any]:
  """The first half of `prepare_example`: everything but the pixels (frames opened, headers
  parsed; `decode_example` decodes them).

  Args:
    record: decoded, validated video record (`video_record.decode`).
    source_frame, target_frame: frame indices (may be equal).
    video_index: index of the record in the data source (for tracing).
    cfg: FramePairConfig.
    encoded: the pair's encoded frames if already read (`read_pair_frames`); else read here.

  Returns:
    The example's int32 `video_index`, `source_frame`, `target_frame`; `PREPARED_KEYS`: frame
    (height, width), the source and target [2, K, 4] boxes and [2, K] visibility, the target
    [K, 8, 3] world corners, the [2, 4, 4] cameras and the target [3, 3] intrinsics; and
    `_frames`, what `decode_example` needs.

  Raises:
    CorruptRecordError: a frame is not a PNG / JPEG image.
  """
  source_data, target_data = (encoded if encoded is not None
                              else read_pair_frames(record, source_frame, target_frame))
  # A PNG at the training size is sized from its IHDR chunk and decoded by libpng first (Pillow
  # only if libpng refuses it); other frames are opened by Pillow (they need a crop / resize).
  size = image_decoding.png_size(source_data)
  if size is not None and size == tuple(cfg.resolution):
    source, (height, width) = None, size
  else:
    source = image_decoding.open_image(source_data)
    width, height = source.size
  decode = (center_crop_box(height, width, *cfg.resolution), cfg.resolution, cfg.resize_method,
            cfg.jpeg_draft, (height, width))
  # Same frame, or opened at decode time (libpng first: see `image_decoding.decode_opened`).
  target = None
  if (target_frame != source_frame and source is not None
      and not image_decoding.whole_rgb8_png(source, decode[0], cfg.resolution)):
    target = image_decoding.open_image(target_data)
  pair = np.array((source_frame, target_frame))
  return {
      "video_index": np.int32(video_index),
      "source_frame": np.int32(source_frame),
      "target_frame": np.int32(target_frame),
      "_frame_size": (height, width),
      "_boxes_2d": record["boxes_2d"].take(pair, axis=0),
      "_visible": record["visible"].take(pair, axis=0),
      "_corners_world": record["box_corners_world"][target_frame],
      "_world_to_camera": record["world_to_camera"].take(pair, axis=0),
      "_intrinsics": record["intrinsics"][target_frame],
      "_frames": ((source, source_data), (target, target_data), decode),
  }


def decode_example(opened: Mapping[str, Any],
                   out: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
  """The second half of `prepare_example`: the [H, W, 3] uint8 (source, target) images of an
  `open_example` result, decoded into `out` (two C-contiguous arrays) when given.

  Raises:
    CorruptRecordError: a frame cannot be decoded, or the frames differ in size.
  """
  (source, source_data), (target, target_data), decode = opened["_frames"]
  source_out, target_out = out if out is not None else (None, None)
  source_image = image_decoding.decode_opened(source, source_data, *decode, out=source_out)
  if opened["source_frame"] != opened["target_frame"]:
    return source_image, image_decoding.decode_opened(target, target_data, *decode,
                                                      out=target_out)
  if target_out is None:
    return source_image, source_image
  target_out[...] = source_image
  return source_image, target_out


def prepare_example(record: Mapping[str, Any], source_frame: int, target_frame: int,
                    video_index: int, cfg: FramePairConfig,
                    out: tuple[np.ndarray, np.ndarray] | None = None,
                    encoded: tuple[Any, Any] | None = None) -> dict[str, Any]:
  """The per-example half of an example: decodes the two frames, gathers the objects
  (`open_example`, then `decode_example`).

  Args:
    record, source_frame, target_frame, video_index, cfg: as `open_example`.
    out: optional (source, target) [H, W, 3] uint8 C-contiguous arrays the frames are decoded
      into.
    encoded: the pair's encoded frames if already read (`read_pair_frames`); else read here.

  Returns:
    `open_example`'s dict (without `_frames`) plus `source_image` and `target_image` (`out` when
    given). Batch them with `finish_examples`.

  Raises:
    CorruptRecordError: a frame cannot be decoded, or frames differ in size.
  """
  example = open_example(record, source_frame, target_frame, video_index, cfg, encoded)
  example["source_image"], example["target_image"] = decode_example(example, out)
  del example["_frames"]
  return example


def finish_examples(prepared, cfg: FramePairConfig):
  """The object half of the examples, for a batch of `prepare_example` outputs at once.

  Crops the boxes and intrinsics, projects the target 3D boxes, filters and selects the objects
  and computes the relative poses in one compiled loop over all objects of the batch
  (`object_slots.batch_objects`). It computes what `crop_boxes`, `crop_intrinsics`,
  `geometry.project_box`, `geometry.box_validity`, the selection rules (steps 3-4) and
  `geometry.relative_pose` define (tests/test_frame_pairs.py checks it against them), in
  float64, cast to float32 on output.

  Args:
    prepared: sequence of B `prepare_example` dicts.
    cfg: FramePairConfig.

  Returns:
    (objects, counts): objects = {source_boxes [B, N, 4], target_boxes [B, N, 4],
    target_corners [B, N, 8, 3], slot_mask [B, N], appearance_mask [B, N], relative_pose
    [B, 4, 4]} (+ background_mask [B, H, W] with `paint_all_source_objects`); counts =
    [B, len(OBJECT_COUNT_NAMES)] int32 per-object outcome counts.
  """
  sizes = [len(p["_corners_world"]) for p in prepared]
  crops = {}
  for p in prepared:
    if p["_frame_size"] not in crops:
      crops[p["_frame_size"]] = center_crop_box(*p["_frame_size"], *cfg.resolution)
  frames = np.array([p["_frame_size"] + crops[p["_frame_size"]] for p in prepared], np.float64)
  boxes_2d = np.concatenate([p["_boxes_2d"] for p in prepared], axis=1, dtype=np.float64)
  visible = np.concatenate([p["_visible"] for p in prepared], axis=1, dtype=bool)
  corners = np.concatenate([p["_corners_world"] for p in prepared], dtype=np.float64)
  cameras = np.array([p["_world_to_camera"] for p in prepared], np.float64)
  intrinsics = np.array([p["_intrinsics"] for p in prepared], np.float64)
  (boxes, source_boxes, target_boxes, target_corners, slot_mask, appearance_mask, relative_pose,
   counts) = object_slots.batch_objects(
       np.array(sizes, np.int64), frames, boxes_2d, visible, corners, cameras, intrinsics,
       cfg.max_objects, cfg.keep_all_objects, cfg.drop_invalid_3d, cfg.visible_in_both,
       cfg.min_box_size, cfg.min_depth, cfg.min_projected_size, geometry.PROJECT_EPS)
  objects = {"source_boxes": source_boxes, "target_boxes": target_boxes,
             "target_corners": target_corners, "slot_mask": slot_mask,
             "appearance_mask": appearance_mask, "relative_pose": relative_pose}
  if cfg.paint_all_source_objects:
    objects["background_mask"] = source_objects_mask(boxes[0], visible[0], sizes,
                                                     cfg.resolution)
  return objects, counts


def source_objects_mask(boxes, visible, sizes, resolution: tuple[int, int]) -> np.ndarray:
  """[B, H, W] bool: pixels whose centre lies inside the source box of any visible object
  (`geometry.boxes_union_mask`, the tokenizer's pixel rule).

  Args:
    boxes: [M, 4] normalised source boxes of all M objects of the batch; visible: [M] bool.
    sizes: [B] objects per example (example b's follow example b - 1's); resolution: (H, W).
  """
  sizes = np.asarray(sizes, np.int64)
  # The flat objects laid out as [B, K] slots (K: the most objects of an example), the rest
  # padded invalid.
  example = np.repeat(np.arange(len(sizes)), sizes)
  slot = np.arange(len(example)) - (np.cumsum(sizes) - sizes)[example]
  padded = np.zeros((len(sizes), int(sizes.max(initial=0)), 4), boxes.dtype)
  valid = np.zeros(padded.shape[:2], bool)
  padded[example, slot], valid[example, slot] = boxes, visible
  return geometry.boxes_union_mask(padded, valid, *resolution)
