"""MOVi-E (Kubric) in its real TFDS format -> video records (DESIGN.md) -> ArrayRecord shards.

Source of the format: google-research/kubric, `challenges/movi/movi_e.py` (the TFDS builder
`MoviE`, configs `256x256` and `128x128`, version 1.0.0) and `challenges/movi/README.md`. One
example is one video of `s = 24` frames:

  video                [s, h, w, 3] uint8   tfds.features.Video (PNG-encoded frames)
  segmentations        [s, h, w, 1] uint8   Sequence(Image(uint8)); 0 = background, i + 1 =
                                            instance i of `instances`
  depth                [s, h, w, 1] uint16  Sequence(Image(uint16)); distance from the camera
                                            *centre* (not z), de-quantised with
                                            metadata/depth_range: d / 65535 * (max - min) + min
  forward_flow, backward_flow [s, h, w, 2] uint16 Sequence(Tensor); normal, object_coordinates
                                            [s, h, w, 3] uint16 Video
  metadata             video_name (Text), width, height, num_frames (int32), num_instances
                       (uint16), depth_range, forward_flow_range, backward_flow_range [2] float32
  background           Text
  camera               focal_length, sensor_width, field_of_view (float32), positions [s, 3],
                       quaternions [s, 4] (w, x, y, z), camera-to-world, Blender camera
                       (looks along -Z, +Y up)
  instances            Sequence of: mass, friction, restitution (float32), positions [s, 3],
                       quaternions [s, 4], velocities [s, 3], angular_velocities [s, 3],
                       bboxes_3d [s, 8, 3] (world-space corners), image_positions [s, 2],
                       bboxes Sequence(BBoxFeature), bbox_frames Sequence(int32),
                       visibility [s] uint16, asset_id (Text), category (ClassLabel, 17 names),
                       scale (float32), is_dynamic (bool)
  events               collisions: Sequence of instances [2] uint16, frame int32, force float32,
                       position [3], image_position [2], contact_normal [3] float32

Conventions used in the conversion (each checked by tests/test_movi_e.py and test_geometry.py):
  * `bboxes_3d` corner order: Kubric's `PhysicalObject.bbox_3d` (`kubric/core/objects.py`) builds
    the corners with `itertools.product(bounds[:, 0], bounds[:, 1], bounds[:, 2])`, i.e. x varies
    slowest and z fastest: index bits (x, y, z) = (4, 2, 1), which *is* the canonical order of
    DESIGN.md, so no reordering is needed.
  * Camera: `camera/positions` + `camera/quaternions` are the Blender camera-to-world pose; it is
    converted to OpenCV axes and inverted into `world_to_camera`.
  * Intrinsics: `kubric/core/cameras.py` `PerspectiveCamera`: fx = focal_length / sensor_width,
    fy = focal_length / sensor_height with sensor_height = sensor_width * h / w, principal point
    at the image centre (`geometry.kubric_intrinsics`).
  * 2D boxes come from the instance segmentation masks (not `instances/bboxes`), in pixel-edge
    units: a mask covering rows r0..r1 gives y0 = r0 / h, y1 = (r1 + 1) / h.

TensorFlow / TFDS are imported inside the functions that need them (the `data` extra); converting
an already-decoded example (`example_to_video_record`) needs only numpy and PIL.

CLI:
  python -m data_pipelines.movi_e --tfds_dir DIR --out_dir OUT --split train [--config 256x256]
"""
from __future__ import annotations

import argparse
import functools
import io
import logging
import os
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
from PIL import Image

from data_pipelines import dataset_conversion
from data_pipelines import video_record
from neural_assets import geometry

DATASET_NAME = "movi_e"
DATASET_VERSION = "1.0.0"

# `instances/category` ClassLabel names, in order (challenges/movi/movi_e.py).
CATEGORIES = ("Action Figures", "Bag", "Board Games", "Bottles and Cans and Cups", "Camera",
              "Car Seat", "Consumer Goods", "Hat", "Headphones", "Keyboard", "Legos",
              "Media Cases", "Mouse", "None", "Shoe", "Stuffed Toys", "Toys")

# Features the conversion never reads; their decoding is skipped when reading TFDS.
_UNUSED_IMAGE_FEATURES = ("depth", "forward_flow", "backward_flow", "normal",
                          "object_coordinates")


# ------------------------------------------------------------------------------------------------
# The TFDS feature spec (same as the Kubric builder).


def movi_e_features(height: int, width: int, num_frames: int):
  """The `tfds.features.FeaturesDict` of MOVi-E, as in kubric `challenges/movi/movi_e.py`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  s, h, w = num_frames, height, width
  instance = {
      "mass": tf.float32,
      "friction": tf.float32,
      "restitution": tf.float32,
      "positions": tfds.features.Tensor(shape=(s, 3), dtype=tf.float32),
      "quaternions": tfds.features.Tensor(shape=(s, 4), dtype=tf.float32),
      "velocities": tfds.features.Tensor(shape=(s, 3), dtype=tf.float32),
      "angular_velocities": tfds.features.Tensor(shape=(s, 3), dtype=tf.float32),
      "bboxes_3d": tfds.features.Tensor(shape=(s, 8, 3), dtype=tf.float32),
      "image_positions": tfds.features.Tensor(shape=(s, 2), dtype=tf.float32),
      "bboxes": tfds.features.Sequence(tfds.features.BBoxFeature()),
      "bbox_frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=tf.int32)),
      "visibility": tfds.features.Tensor(shape=(s,), dtype=tf.uint16),
      "asset_id": tfds.features.Text(),
      "category": tfds.features.ClassLabel(names=list(CATEGORIES)),
      "scale": tf.float32,
      "is_dynamic": tf.bool,
  }
  return tfds.features.FeaturesDict({
      "metadata": {
          "video_name": tfds.features.Text(),
          "width": tf.int32,
          "height": tf.int32,
          "num_frames": tf.int32,
          "num_instances": tf.uint16,
          "depth_range": tfds.features.Tensor(shape=(2,), dtype=tf.float32),
          "forward_flow_range": tfds.features.Tensor(shape=(2,), dtype=tf.float32),
          "backward_flow_range": tfds.features.Tensor(shape=(2,), dtype=tf.float32),
      },
      "background": tfds.features.Text(),
      "instances": tfds.features.Sequence(feature=instance),
      "camera": {
          "focal_length": tf.float32,
          "sensor_width": tf.float32,
          "field_of_view": tf.float32,
          "positions": tfds.features.Tensor(shape=(s, 3), dtype=tf.float32),
          "quaternions": tfds.features.Tensor(shape=(s, 4), dtype=tf.float32),
      },
      "events": {
          "collisions": tfds.features.Sequence({
              "instances": tfds.features.Tensor(shape=(2,), dtype=tf.uint16),
              "frame": tf.int32,
              "force": tf.float32,
              "position": tfds.features.Tensor(shape=(3,), dtype=tf.float32),
              "image_position": tfds.features.Tensor(shape=(2,), dtype=tf.float32),
              "contact_normal": tfds.features.Tensor(shape=(3,), dtype=tf.float32),
          })
      },
      "video": tfds.features.Video(shape=(s, h, w, 3)),
      "segmentations": tfds.features.Sequence(
          tfds.features.Image(shape=(h, w, 1), dtype=tf.uint8), length=s),
      "forward_flow": tfds.features.Sequence(
          tfds.features.Tensor(shape=(h, w, 2), dtype=tf.uint16), length=s),
      "backward_flow": tfds.features.Sequence(
          tfds.features.Tensor(shape=(h, w, 2), dtype=tf.uint16), length=s),
      "depth": tfds.features.Sequence(
          tfds.features.Image(shape=(h, w, 1), dtype=tf.uint16), length=s),
      "normal": tfds.features.Video(shape=(s, h, w, 3), dtype=tf.uint16),
      "object_coordinates": tfds.features.Video(shape=(s, h, w, 3), dtype=tf.uint16),
  })


def to_tfds_example(example: Mapping[str, Any]) -> dict[str, Any]:
  """A decoded-layout example (as `tfds.as_numpy` yields, `instances` as a dict of [K, ...]
  arrays, `instances/bboxes` and `instances/bbox_frames` as lists of K arrays) -> the layout
  `tfds` encodes (`instances` as a list of K dicts, text as `str`)."""
  instances = example["instances"]
  num_objects = len(instances["bboxes_3d"])
  per_object = []
  for k in range(num_objects):
    obj = {}
    for name, value in instances.items():
      item = value[k]
      if name == "bboxes":
        item = np.asarray(item, np.float32).reshape(-1, 4)
      elif name == "bbox_frames":
        item = np.asarray(item, np.int32).reshape(-1)
      elif name == "asset_id":
        item = item.decode() if isinstance(item, bytes) else str(item)
      obj[name] = item
    per_object.append(obj)
  metadata = dict(example["metadata"])
  name = metadata["video_name"]
  metadata["video_name"] = name.decode() if isinstance(name, bytes) else str(name)
  background = example.get("background", "")
  out = dict(example)
  out.update(metadata=metadata, instances=per_object,
             background=background.decode() if isinstance(background, bytes) else background)
  collisions = example.get("events", {}).get("collisions", [])
  if isinstance(collisions, Mapping):  # decoded layout: dict of [C, ...] arrays.
    count = len(collisions.get("frame", []))
    collisions = [{k: v[i] for k, v in collisions.items()} for i in range(count)]
  out["events"] = {"collisions": list(collisions)}
  return out


def write_tfds(data_dir: str, split_examples: Mapping[str, Iterable[Mapping[str, Any]]],
               height: int, width: int, num_frames: int, config: str | None = None,
               examples_per_shard: int = 1000) -> str:
  """Writes decoded-layout examples as a real TFDS `movi_e` dataset (tfrecord shards + metadata).

  Each example is serialised with the MOVi-E `FeaturesDict` into
  `data_dir/movi_e/<config>/1.0.0/movi_e-<split>.tfrecord-XXXXX-of-YYYYY`, and
  `tfds.folder_dataset.write_metadata` writes `dataset_info.json` / `features.json`, so the result
  reads exactly like a downloaded copy (`tfds.builder_from_directory`, `read_tfds`).

  Args:
    data_dir: TFDS data dir.
    split_examples: {split name: sequence of decoded-layout examples}.
    height, width, num_frames: the feature shapes.
    config: builder config name; defaults to f"{height}x{width}" as in Kubric.
    examples_per_shard: tfrecord shard size.

  Returns:
    The dataset directory.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = config or f"{height}x{width}"
  out_dir = os.path.join(data_dir, DATASET_NAME, config, DATASET_VERSION)
  os.makedirs(out_dir, exist_ok=True)
  features = movi_e_features(height, width, num_frames)
  template = tfds.core.ShardedFileTemplate(
      data_dir=out_dir, template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
      dataset_name=DATASET_NAME, filetype_suffix="tfrecord")
  split_infos = []
  for split, examples in split_examples.items():
    examples = list(examples)
    num_shards = max(1, -(-len(examples) // examples_per_shard))
    shard_lengths, num_bytes = [], 0
    for shard, path in enumerate(
        template.replace(split=split).sharded_filepaths(num_shards=num_shards)):
      chunk = examples[shard * examples_per_shard:(shard + 1) * examples_per_shard]
      with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for ex in chunk:
          serialized = features.serialize_example(to_tfds_example(ex))
          writer.write(serialized)
          num_bytes += len(serialized)
      shard_lengths.append(len(chunk))
    split_infos.append(tfds.core.SplitInfo(name=split, shard_lengths=shard_lengths,
                                           num_bytes=num_bytes, filename_template=template))
  tfds.folder_dataset.write_metadata(
      data_dir=out_dir, features=features, split_infos=split_infos, filename_template=template,
      version=DATASET_VERSION, check_data=True,
      homepage="https://github.com/google-research/kubric")
  return out_dir


# ------------------------------------------------------------------------------------------------
# Reading.


def find_dataset_dir(tfds_dir: str, config: str = "256x256") -> str:
  """Locates a prepared MOVi-E dataset: `tfds_dir` itself, or `tfds_dir/movi_e/<config>/<ver>`.

  Raises:
    FileNotFoundError: no `dataset_info.json` found in either place.
  """
  if os.path.exists(os.path.join(tfds_dir, "dataset_info.json")):
    return tfds_dir
  base = os.path.join(tfds_dir, DATASET_NAME, config)
  versions = sorted((v for v in os.listdir(base)
                     if os.path.exists(os.path.join(base, v, "dataset_info.json"))),
                    key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit())
                    ) if os.path.isdir(base) else []
  if not versions:
    raise FileNotFoundError(f"No prepared TFDS dataset at {tfds_dir} or {base}/<version> "
                            "(expected a dataset_info.json).")
  return os.path.join(base, versions[-1])


def read_tfds(tfds_dir: str, split: str, config: str = "256x256",
              skip_unused: bool = True) -> Iterator[dict[str, Any]]:
  """Yields decoded numpy examples of a prepared MOVi-E TFDS dataset, in file order.

  Args:
    tfds_dir: TFDS data dir (containing movi_e/<config>/<version>) or the dataset dir itself.
    split: "train", "validation" or "test".
    config: "256x256" or "128x128".
    skip_unused: do not decode depth / flow / normal / object coordinates (unused here).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(find_dataset_dir(tfds_dir, config))
  decoders = None
  if skip_unused:
    decoders = {k: tfds.decode.SkipDecoding() for k in _UNUSED_IMAGE_FEATURES
                if k in builder.info.features}
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
  yield from tfds.as_numpy(ds)


# ------------------------------------------------------------------------------------------------
# Conversion.


def encode_frame(frame: np.ndarray, image_format: str = "png", jpeg_quality: int = 95) -> bytes:
  """[H, W, 3] uint8 -> PNG / JPEG bytes."""
  frame = np.asarray(frame)
  if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
    raise ValueError(f"Frames must be [H, W, 3] uint8, got {frame.shape} {frame.dtype}.")
  buf = io.BytesIO()
  if image_format == "png":
    Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
  elif image_format == "jpeg":
    Image.fromarray(frame).save(buf, format="JPEG", quality=jpeg_quality)
  else:
    raise ValueError(f"Unknown image format {image_format!r} (png or jpeg).")
  return buf.getvalue()


def boxes_from_segmentation(segmentations: np.ndarray, num_objects: int,
                            min_pixels: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """2D boxes of every instance from instance masks (0 = background, k + 1 = instance k).

  Args:
    segmentations: [T, H, W] or [T, H, W, 1] integer instance ids.
    num_objects: K.
    min_pixels: an instance is visible in a frame when it covers at least this many pixels.

  Returns:
    boxes: [T, K, 4] float32 normalised [y0, x0, y1, x1] (pixel edges); zeros where invisible.
    visible: [T, K] bool.
    pixel_counts: [T, K] int64.
  """
  seg = np.asarray(segmentations)
  if seg.ndim == 4:
    if seg.shape[-1] != 1:
      raise ValueError(f"Segmentations must be [T, H, W, 1], got {seg.shape}.")
    seg = seg[..., 0]
  if seg.ndim != 3:
    raise ValueError(f"Segmentations must be [T, H, W(, 1)], got {seg.shape}.")
  num_frames, height, width = seg.shape
  if seg.size and int(seg.max()) > num_objects:
    raise ValueError(f"Segmentation holds id {int(seg.max())} but only {num_objects} instances.")
  boxes = np.zeros((num_frames, num_objects, 4), np.float32)
  counts = np.zeros((num_frames, num_objects), np.int64)
  rows_idx, cols_idx = np.arange(height), np.arange(width)
  for k in range(num_objects):
    mask = seg == k + 1  # [T, H, W]
    counts[:, k] = mask.sum(axis=(1, 2))
    rows, cols = mask.any(axis=2), mask.any(axis=1)  # [T, H], [T, W]
    big = np.iinfo(np.int64).max
    y0 = np.where(rows, rows_idx, big).min(axis=1)
    y1 = np.where(rows, rows_idx, -1).max(axis=1) + 1
    x0 = np.where(cols, cols_idx, big).min(axis=1)
    x1 = np.where(cols, cols_idx, -1).max(axis=1) + 1
    box = np.stack([y0 / height, x0 / width, y1 / height, x1 / width], axis=-1)
    boxes[:, k] = np.where((counts[:, k] > 0)[:, None], box, 0.0)
  visible = counts >= max(min_pixels, 1)
  boxes = np.where(visible[..., None], boxes, 0.0).astype(np.float32)
  return boxes, visible, counts


def camera_world_to_camera(positions: np.ndarray, quaternions: np.ndarray) -> np.ndarray:
  """Kubric camera poses (Blender camera-to-world) -> OpenCV world_to_camera.

  Args:
    positions: [T, 3]; quaternions: [T, 4] (w, x, y, z).

  Returns:
    [T, 4, 4] float32.
  """
  positions = np.asarray(positions, np.float64)
  rot = geometry.quaternion_to_matrix(np.asarray(quaternions, np.float64))
  cam_to_world = geometry.blender_to_opencv(geometry.pose_matrix(rot, positions))
  return geometry.invert_pose(cam_to_world).astype(np.float32)


def _text(value) -> str:
  if isinstance(value, bytes):
    return value.decode()
  if isinstance(value, np.ndarray):
    return _text(value.item())
  return str(value)


def example_to_video_record(example: Mapping[str, Any], image_format: str = "png",
                            min_visible_pixels: int = 1,
                            video_id: str | None = None) -> dict[str, Any]:
  """One decoded MOVi-E example (`tfds.as_numpy` layout) -> a video record (DESIGN.md).

  Args:
    example: nested dict with at least video [T, H, W, 3] uint8, segmentations [T, H, W, 1],
      camera/{focal_length, sensor_width, positions [T, 3], quaternions [T, 4]},
      instances/{bboxes_3d [K, T, 8, 3], category [K]}, metadata/video_name.
    image_format: "png" (lossless) or "jpeg" for the stored frames.
    min_visible_pixels: mask pixels an object needs in a frame to count as visible.
    video_id: overrides metadata/video_name.

  Returns:
    A record that passes `video_record.validate`; `instance_ids[k] = k` (segmentation id k + 1).
  """
  video = np.asarray(example["video"])
  if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
    raise ValueError(f"MOVi-E video must be [T, H, W, 3] uint8, got {video.shape} {video.dtype}.")
  num_frames, height, width, _ = video.shape
  seg = np.asarray(example["segmentations"])
  if seg.shape[:3] != (num_frames, height, width):
    raise ValueError(f"segmentations {seg.shape} do not match video {video.shape}.")
  instances = example["instances"]
  bboxes_3d = np.asarray(instances["bboxes_3d"], np.float32)
  num_objects = int(bboxes_3d.shape[0])
  if num_objects:
    if bboxes_3d.shape != (num_objects, num_frames, 8, 3):
      raise ValueError(f"instances/bboxes_3d must be [K, T, 8, 3] with T={num_frames}, got "
                       f"{bboxes_3d.shape}.")
  else:
    bboxes_3d = np.zeros((0, num_frames, 8, 3), np.float32)
  camera = example["camera"]
  positions = np.asarray(camera["positions"], np.float32)
  quaternions = np.asarray(camera["quaternions"], np.float32)
  if positions.shape != (num_frames, 3) or quaternions.shape != (num_frames, 4):
    raise ValueError(f"camera/positions {positions.shape} and camera/quaternions "
                     f"{quaternions.shape} must be [T, 3] and [T, 4] with T={num_frames}.")
  world_to_camera = camera_world_to_camera(positions, quaternions)
  intrinsics = geometry.kubric_intrinsics(float(camera["focal_length"]),
                                          float(camera["sensor_width"]), height, width)
  intrinsics = np.broadcast_to(intrinsics, (num_frames, 3, 3)).astype(np.float32)
  boxes_2d, visible, _ = boxes_from_segmentation(seg, num_objects, min_visible_pixels)
  if "category" in instances and num_objects:
    category = np.asarray(instances["category"]).astype(np.int32).reshape(num_objects)
  else:
    category = np.full((num_objects,), -1, np.int32)
  if video_id is None:
    video_id = _text(example.get("metadata", {}).get("video_name", ""))
  record = {
      "video_id": video_id.encode(),
      "frames": [encode_frame(f, image_format) for f in video],
      "intrinsics": intrinsics,
      "world_to_camera": world_to_camera,
      "box_corners_world": np.ascontiguousarray(np.swapaxes(bboxes_3d, 0, 1)),
      "boxes_2d": boxes_2d,
      "visible": visible,
      "instance_ids": np.arange(num_objects, dtype=np.int32),
      "category": category,
  }
  video_record.validate(record)
  return record


def write_shards(records: Iterable[dict[str, Any]], out_dir: str, prefix: str,
                 num_records: int, records_per_shard: int) -> list[str]:
  """Writes video records into ArrayRecord shards `{prefix}.array_record-%05d-of-%05d`.

  Args:
    records: iterable of video records (consumed lazily).
    out_dir: output directory (created).
    prefix: file name prefix, e.g. "train".
    num_records: how many records the iterable yields (sets the shard count).
    records_per_shard: maximum records per shard.

  Returns:
    The shard paths written.
  """
  if records_per_shard <= 0:
    raise ValueError(f"records_per_shard must be positive, got {records_per_shard}.")
  os.makedirs(out_dir, exist_ok=True)
  num_shards = max(1, -(-num_records // records_per_shard))
  iterator = iter(records)
  paths = []
  for shard in range(num_shards):
    path = os.path.join(out_dir, f"{prefix}.array_record-{shard:05d}-of-{num_shards:05d}")
    chunk = (r for _, r in zip(range(records_per_shard), iterator))
    video_record.write_array_record(path, chunk)
    paths.append(path)
  leftover = next(iterator, None)
  if leftover is not None:
    raise ValueError(f"More than num_records={num_records} records were given.")
  return paths


def _convert_range(example_range: tuple[int, int], tfds_dir: str, split: str, config: str,
                   image_format: str, min_visible_pixels: int):
  start, stop = example_range
  for index, ex in enumerate(read_tfds(tfds_dir, f"{split}[{start}:{stop}]", config),
                             start=start):
    name = f"{split}[{index}]"
    video_name = ex.get("metadata", {}).get("video_name")
    if video_name is not None:
      if isinstance(video_name, bytes):
        video_name = video_name.decode("utf-8", "replace")
      name += f" ({video_name})"
    yield dataset_conversion.guarded(
        name, lambda: example_to_video_record(ex, image_format, min_visible_pixels))


def _describe_range(example_range: tuple[int, int], split: str) -> str:
  return f"{split}[{example_range[0]}:{example_range[1]}]"


def conversion_plan(tfds_dir: str, out_dir: str, split: str, config: str = "256x256",
                    records_per_shard: int = 256, max_videos: int | None = None,
                    image_format: str = "png", min_visible_pixels: int = 1,
                    options: str = video_record.DEFAULT_OPTIONS
                    ) -> dataset_conversion.ConversionPlan:
  """Shards `{out_dir}/{split}.array_record-XXXXX-of-YYYYY` of `records_per_shard` videos; one
  input = the example range of one shard (read with TFDS split slicing)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if records_per_shard <= 0:
    raise ValueError(f"records_per_shard must be positive, got {records_per_shard}.")
  info = tfds.builder_from_directory(find_dataset_dir(tfds_dir, config)).info
  total = info.splits[split].num_examples
  if max_videos is not None:
    total = min(total, max_videos)
  ranges = [(s, min(s + records_per_shard, total)) for s in range(0, total, records_per_shard)]
  shards = dataset_conversion.chunked_shards(
      ranges, 1, lambda n, count: os.path.join(out_dir, f"{split}.array_record-{n:05d}-of-"
                                                        f"{count:05d}"))
  return dataset_conversion.ConversionPlan(
      shards, functools.partial(_convert_range, tfds_dir=tfds_dir, split=split, config=config,
                                image_format=image_format,
                                min_visible_pixels=min_visible_pixels),
      describe_input=functools.partial(_describe_range, split=split), options=options)


def convert(tfds_dir: str, out_dir: str, split: str, config: str = "256x256",
            records_per_shard: int = 256, max_videos: int | None = None,
            image_format: str = "png", min_visible_pixels: int = 1,
            options: str = video_record.DEFAULT_OPTIONS) -> list[str]:
  """Converts one split of a prepared MOVi-E TFDS dataset into video-record ArrayRecord shards
  in this process (`data_pipelines.beam_convert` runs the same plan on Apache Beam).

  Returns:
    The shard paths, named `{out_dir}/{split}.array_record-XXXXX-of-YYYYY`.
  """
  plan = conversion_plan(tfds_dir, out_dir, split, config, records_per_shard, max_videos,
                         image_format, min_visible_pixels, options)
  written = dataset_conversion.run_local(plan)
  logging.info("Wrote %d MOVi-E %s videos to %d shards in %s", sum(written.values()), split,
               len(written), out_dir)
  return list(written)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tfds_dir", required=True,
                      help="TFDS data dir holding movi_e/<config>/<version>, or that dir.")
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--split", default="train")
  parser.add_argument("--config", default="256x256")
  parser.add_argument("--records_per_shard", type=int, default=256)
  parser.add_argument("--max_videos", type=int, default=None)
  parser.add_argument("--image_format", default="png", choices=("png", "jpeg"))
  parser.add_argument("--min_visible_pixels", type=int, default=1)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  paths = convert(args.tfds_dir, args.out_dir, args.split, args.config, args.records_per_shard,
                  args.max_videos, args.image_format, args.min_visible_pixels)
  print(f"Wrote {len(paths)} shards to {args.out_dir}")


if __name__ == "__main__":
  main()
