"""The per-video record every dataset reader produces, and its byte encoding for ArrayRecord.

One record = one video (T frames, K objects), in the canonical conventions of DESIGN.md:
  video_id           bytes
  frames             list of T encoded images (PNG or JPEG bytes), all H x W
  intrinsics         [T, 3, 3] float32  normalised pinhole intrinsics, OpenCV camera frame
  world_to_camera    [T, 4, 4] float32  OpenCV camera frame (x right, y down, z forward)
  box_corners_world  [T, K, 8, 3] float32  canonical corner order (bits x=4, y=2, z=1)
  boxes_2d           [T, K, 4] float32  normalised [y0, x0, y1, x1]; zeros where not visible
  visible            [T, K] bool
  instance_ids       [K] int32
  category           [K] int32  (-1 when unknown)

Encoding: an uncompressed `.npz` (no pickles) with the frames concatenated and a CRC32 of the
payload, so a corrupted record is detected on read (`CorruptRecordError`) rather than decoded into
garbage.
"""
from __future__ import annotations

import io
import zlib
from typing import Any

import numpy as np

ARRAY_FIELDS = {
    # name: (dtype, shape with symbolic dims)
    "intrinsics": (np.float32, ("T", 3, 3)),
    "world_to_camera": (np.float32, ("T", 4, 4)),
    "box_corners_world": (np.float32, ("T", "K", 8, 3)),
    "boxes_2d": (np.float32, ("T", "K", 4)),
    "visible": (np.bool_, ("T", "K")),
    "instance_ids": (np.int32, ("K",)),
    "category": (np.int32, ("K",)),
}


class CorruptRecordError(ValueError):
  """A stored record cannot be decoded or does not follow the video-record schema."""


def validate(record: dict[str, Any]) -> tuple[int, int]:
  """Checks a record against the schema; returns (T, K). Raises CorruptRecordError."""
  missing = [k for k in ("video_id", "frames", *ARRAY_FIELDS) if k not in record]
  if missing:
    raise CorruptRecordError(f"Video record is missing fields {missing}.")
  num_frames = len(record["frames"])
  num_objects = int(np.shape(record["instance_ids"])[0])
  dims = {"T": num_frames, "K": num_objects}
  for name, (dtype, shape) in ARRAY_FIELDS.items():
    value = np.asarray(record[name])
    want = tuple(dims.get(d, d) for d in shape)
    if value.shape != want:
      raise CorruptRecordError(f"Video record field {name} has shape {value.shape}, want {want} "
                               f"(T={num_frames} frames, K={num_objects} objects).")
    if value.dtype != dtype:
      raise CorruptRecordError(f"Video record field {name} has dtype {value.dtype}, want "
                               f"{np.dtype(dtype)}.")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
      raise CorruptRecordError(f"Video record field {name} holds non-finite values.")
  return num_frames, num_objects


def encode(record: dict[str, Any]) -> bytes:
  """Serialises a validated record to bytes."""
  validate(record)
  frames = [bytes(f) for f in record["frames"]]
  offsets = np.cumsum([0] + [len(f) for f in frames]).astype(np.int64)
  arrays = {name: np.asarray(record[name]) for name in ARRAY_FIELDS}
  arrays["frames_concat"] = np.frombuffer(b"".join(frames), dtype=np.uint8)
  arrays["frame_offsets"] = offsets
  arrays["video_id"] = np.frombuffer(bytes(record["video_id"]), dtype=np.uint8)
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  payload = buf.getvalue()
  return zlib.crc32(payload).to_bytes(4, "little") + payload


def decode(data: bytes) -> dict[str, Any]:
  """Inverse of `encode`. Raises CorruptRecordError on a bad checksum or schema."""
  if len(data) < 4 or zlib.crc32(data[4:]).to_bytes(4, "little") != data[:4]:
    raise CorruptRecordError("Video record checksum mismatch (truncated or corrupted bytes).")
  try:
    with np.load(io.BytesIO(data[4:]), allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except Exception as e:  # noqa: BLE001 - any decode failure means a corrupt record.
    raise CorruptRecordError(f"Video record cannot be decoded: {e}") from e
  try:
    concat, offsets = arrays.pop("frames_concat"), arrays.pop("frame_offsets")
    record = {name: arrays[name] for name in ARRAY_FIELDS}
    record["frames"] = [concat[offsets[i]:offsets[i + 1]].tobytes()
                        for i in range(len(offsets) - 1)]
    record["video_id"] = arrays["video_id"].tobytes()
  except KeyError as e:
    raise CorruptRecordError(f"Video record is missing field {e}.") from e
  validate(record)
  return record


def write_array_record(path: str, records) -> int:
  """Writes an iterable of video records to one ArrayRecord file; returns how many."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  count = 0
  try:
    for record in records:
      writer.write(encode(record))
      count += 1
  finally:
    writer.close()
  return count
