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

Encoding (built for reading 2 of T frames fast): `MAGIC`, a little-endian u32 header length, a
JSON header (array dtypes/shapes/offsets, frame offsets, one CRC32 per frame), the raw array bytes,
then the frame bytes. The header and arrays carry one CRC32, checked on every decode; each frame's
CRC32 is checked when that frame is read (`LazyFrames`), so a reader that uses 2 of 24 frames
neither copies nor checksums the other 22, and a corrupted byte anywhere is still reported as
`CorruptRecordError` before it is used, never decoded into garbage. `decode` works on the whole
encoded bytes; `decode_lazy` on a record it reads piecewise (the header and arrays, then each frame
when accessed), which is how the grain pipeline reads ArrayRecord entries (`record_file`).
"""
from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable, Sequence
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


MAGIC = b"NAVR1"


class LazyFrames(Sequence):
  """The encoded frames of a decoded record; `frames[i]` reads frame i and checks its CRC32.

  Args:
    read: read(start, stop) -> the bytes [start, stop) of the frame region (a memoryview slice of
      an in-memory record, or a file read).
    offsets: [T + 1] frame boundaries within the frame region.
    crcs: [T] CRC32 of each frame.
  """

  def __init__(self, read: Callable[[int, int], Any], offsets: list[int], crcs: list[int]):
    self._read, self._offsets, self._crcs = read, offsets, crcs

  def __len__(self) -> int:
    return len(self._crcs)

  def __eq__(self, other) -> bool:
    if not isinstance(other, Sequence) or len(other) != len(self):
      return False
    return all(bytes(a) == bytes(b) for a, b in zip(self, other))

  __hash__ = None  # mutable-buffer views: compare by value, never hash

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    if not -len(self) <= i < len(self):
      raise IndexError(f"frame {i} of a {len(self)}-frame video")
    i %= len(self)
    start, stop = self._offsets[i], self._offsets[i + 1]
    frame = self._read(start, stop)
    if len(frame) != stop - start or zlib.crc32(frame) != self._crcs[i]:
      raise CorruptRecordError(f"Frame {i} fails its checksum (corrupted bytes).")
    return frame


def encode(record: dict[str, Any]) -> bytes:
  """Serialises a validated record to bytes."""
  validate(record)
  frames = [bytes(f) for f in record["frames"]]
  arrays, blobs, offset = {}, [], 0
  for name, (dtype, _) in ARRAY_FIELDS.items():
    value = np.ascontiguousarray(record[name], dtype=dtype)
    arrays[name] = [value.dtype.str, list(value.shape), offset]
    blobs.append(value.tobytes())
    offset += value.nbytes
  header = dict(
      video_id=bytes(record["video_id"]).hex(),
      arrays=arrays,
      frame_offsets=np.cumsum([0] + [len(f) for f in frames]).tolist(),
      frame_crcs=[zlib.crc32(f) for f in frames],
  )
  header_bytes = json.dumps(header, separators=(",", ":")).encode()
  body = header_bytes + b"".join(blobs)
  return b"".join([MAGIC, len(header_bytes).to_bytes(4, "little"),
                   zlib.crc32(body).to_bytes(4, "little"), body, *frames])


_PREFIX_SIZE = len(MAGIC) + 8  # magic, u32 header length, u32 CRC32 of header + arrays


def decode(data: bytes) -> dict[str, Any]:
  """Inverse of `encode`, without copying: arrays view `data`, frames are `LazyFrames`.

  Raises CorruptRecordError on a bad magic, checksum, truncation or schema.
  """
  view = memoryview(data)
  return decode_lazy(lambda start, stop: view[start:stop], len(view), prefix=view)


def decode_lazy(read: Callable[[int, int], Any], size: int, prefix=b"",
                layouts: dict | None = None) -> dict[str, Any]:
  """Decodes a record that is read piecewise: the header and arrays now, each frame when used.

  Args:
    read: read(start, stop) -> bytes [start, stop) of the encoded record (e.g. a file read).
    size: length of the encoded record in bytes.
    prefix: bytes [0, len(prefix)) of the record, already read (used instead of `read` where they
      suffice; a prefix that covers the header and arrays costs no further read until a frame is
      accessed).
    layouts: optional dict the caller keeps across calls: array layouts already checked, reused
      when a header's array table is identical (records of one dataset share a few layouts).

  Returns:
    The record as `decode` returns it (arrays view the bytes read, frames are `LazyFrames`).

  Raises:
    CorruptRecordError on a bad magic, checksum, truncation or schema (a frame's checksum is
    checked when the frame is read).
  """
  head = memoryview(prefix)
  known = len(head)

  def read_range(start, stop):
    return head[start:stop] if stop <= known else read(start, stop)

  if known < _PREFIX_SIZE:
    head = memoryview(read(0, min(size, _PREFIX_SIZE)))
    known = len(head)
  if size < _PREFIX_SIZE or known < _PREFIX_SIZE or bytes(head[:len(MAGIC)]) != MAGIC:
    raise CorruptRecordError("Not a video record (bad magic bytes).")
  header_len = int.from_bytes(head[len(MAGIC):len(MAGIC) + 4], "little")
  crc = int.from_bytes(head[len(MAGIC) + 4:_PREFIX_SIZE], "little")
  try:
    header_end = _PREFIX_SIZE + header_len
    if header_end > size:
      raise CorruptRecordError(f"Video record header length {header_len} exceeds the record "
                               f"({size} bytes).")
    if known < header_end:
      head = memoryview(b"".join([head[:known], read(known, header_end)]))
      known = len(head)
    header = json.loads(bytes(head[_PREFIX_SIZE:header_end]))
    offsets, crcs = header["frame_offsets"], header["frame_crcs"]
    if offsets[0] != 0 or any(b < a for a, b in zip(offsets, offsets[1:])):
      raise CorruptRecordError("Video record frame offsets are not increasing.")
    arrays = header["arrays"]
    cache_key = (len(crcs), arrays["instance_ids"][1][0]) if layouts is not None else None
    cached = layouts.get(cache_key) if cache_key is not None else None
    if cached is not None and cached[0] == arrays:  # The same table was checked before.
      layout = cached[1]
    else:
      layout = _array_layout(arrays, len(crcs))
      if cache_key is not None:
        layouts[cache_key] = (arrays, layout)
    body_end = header_end + sum(nbytes for _, _, _, nbytes in layout.values())
    if size != body_end + offsets[-1] or len(offsets) != len(crcs) + 1:
      raise CorruptRecordError(f"Video record is {size} bytes, its header says "
                               f"{body_end + offsets[-1]} (truncated or padded).")
    if known < body_end:  # One more read for the rest of the header and arrays.
      head = memoryview(b"".join([head, read(known, body_end)]))
      known = len(head)
    if zlib.crc32(head[_PREFIX_SIZE:body_end]) != crc:
      raise CorruptRecordError("Video record header checksum mismatch (corrupted bytes).")
    record = {name: np.frombuffer(head, dtype=dtype, count=math.prod(shape),
                                  offset=header_end + offset).reshape(shape)
              for name, (dtype, shape, offset, _) in layout.items()}
    _check_finite(head, header_end, layout, record)
    record["frames"] = LazyFrames(
        lambda start, stop: read_range(body_end + start, body_end + stop), offsets, crcs)
    record["video_id"] = bytes.fromhex(header["video_id"])
  except (CorruptRecordError, OSError):  # An I/O failure is not a corrupt record.
    raise
  except Exception as e:  # noqa: BLE001 - any parse failure means a corrupt record.
    raise CorruptRecordError(f"Video record cannot be decoded: {e!r}") from e
  return record


_DTYPES = {name: np.dtype(dtype) for name, (dtype, _) in ARRAY_FIELDS.items()}
_FLOAT_FIELDS = [name for name, dtype in _DTYPES.items() if dtype.kind == "f"]


def _array_layout(arrays: dict[str, Any], num_frames: int) -> dict[str, tuple]:
  """Checks the header's array entries against the schema (what `validate` checks of a record,
  from the header alone); returns {name: (dtype, shape, offset, nbytes)} in ARRAY_FIELDS order."""
  if arrays.keys() != ARRAY_FIELDS.keys():
    raise CorruptRecordError(f"Video record has arrays {sorted(arrays)}, want "
                             f"{sorted(ARRAY_FIELDS)}.")
  ids_shape = arrays["instance_ids"][1]
  num_objects = ids_shape[0] if len(ids_shape) == 1 else -1
  layout = {}
  for name, (_, symbolic) in ARRAY_FIELDS.items():
    dtype_str, shape, offset = arrays[name]
    dtype = _DTYPES[name]
    want = [num_frames if d == "T" else num_objects if d == "K" else d for d in symbolic]
    if shape != want:
      raise CorruptRecordError(f"Video record field {name} has shape {tuple(shape)}, want "
                               f"{tuple(want)} (T={num_frames} frames, K={num_objects} objects).")
    if dtype_str != dtype.str:
      raise CorruptRecordError(f"Video record field {name} has dtype {dtype_str}, want "
                               f"{dtype.str}.")
    layout[name] = (dtype, want, int(offset), math.prod(want) * dtype.itemsize)
  return layout


def _check_finite(buffer, base: int, layout, record):
  """Raises CorruptRecordError if a float array holds NaN / inf (one pass when, as `encode` lays
  them out, the float arrays are adjacent and of one dtype)."""
  floats = [layout[name] for name in _FLOAT_FIELDS]
  start = min(offset for _, _, offset, _ in floats)
  stop = max(offset + nbytes for _, _, offset, nbytes in floats)
  dtype = floats[0][0]
  if (stop - start == sum(nbytes for _, _, _, nbytes in floats)
      and all(d == dtype for d, _, _, _ in floats)):
    values = np.frombuffer(buffer, dtype, count=(stop - start) // dtype.itemsize,
                           offset=base + start)
    if np.isfinite(values).all():
      return
  for name in _FLOAT_FIELDS:
    if not np.isfinite(record[name]).all():
      raise CorruptRecordError(f"Video record field {name} holds non-finite values.")


def write_array_record(path: str, records) -> int:
  """Writes an iterable of video records to one ArrayRecord file; returns how many.

  The file appears under `path` only once complete (written as `path.tmp`, then renamed), so a
  conversion that dies never leaves a truncated shard that looks finished.
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  tmp_path = path + ".tmp"
  # Frames are PNG/JPEG already: compressing again costs read time and saves nothing.
  writer = array_record_module.ArrayRecordWriter(tmp_path, "group_size:1,uncompressed")
  count = 0
  try:
    for record in records:
      writer.write(encode(record))
      count += 1
  except BaseException:
    writer.close()
    os.remove(tmp_path)
    raise
  writer.close()
  os.replace(tmp_path, path)
  return count
