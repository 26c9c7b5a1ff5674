"""The video-record byte format: round trip, zero-copy frames, every corruption detected."""
import numpy as np
import pytest

from data_pipelines import video_record as vr


def _record(num_frames=3, num_objects=2, seed=0):
  rng = np.random.default_rng(seed)
  return dict(
      video_id=b"video-7",
      frames=[rng.bytes(100 + 10 * i) for i in range(num_frames)],
      intrinsics=rng.normal(size=(num_frames, 3, 3)).astype(np.float32),
      world_to_camera=rng.normal(size=(num_frames, 4, 4)).astype(np.float32),
      box_corners_world=rng.normal(size=(num_frames, num_objects, 8, 3)).astype(np.float32),
      boxes_2d=rng.uniform(size=(num_frames, num_objects, 4)).astype(np.float32),
      visible=rng.uniform(size=(num_frames, num_objects)) > 0.5,
      instance_ids=np.arange(num_objects, dtype=np.int32),
      category=np.full(num_objects, -1, np.int32))


def test_round_trip():
  record = _record()
  decoded = vr.decode(vr.encode(record))
  assert decoded["video_id"] == b"video-7"
  assert [bytes(f) for f in decoded["frames"]] == record["frames"]
  for name in vr.ARRAY_FIELDS:
    np.testing.assert_array_equal(decoded[name], record[name])
    assert decoded[name].dtype == record[name].dtype
  assert bytes(decoded["frames"][-1]) == record["frames"][-1]
  assert [bytes(f) for f in decoded["frames"][1:]] == record["frames"][1:]


def test_zero_objects_and_one_frame():
  decoded = vr.decode(vr.encode(_record(num_frames=1, num_objects=0)))
  assert decoded["box_corners_world"].shape == (1, 0, 8, 3)


@pytest.mark.parametrize("where", ["header", "arrays", "truncated", "magic"])
def test_corruption_is_detected_on_decode(where):
  data = bytearray(vr.encode(_record()))
  header_len = int.from_bytes(data[len(vr.MAGIC):len(vr.MAGIC) + 4], "little")
  start = len(vr.MAGIC) + 8
  if where == "header":
    data[start + 5] ^= 0x01
  elif where == "arrays":
    data[start + header_len + 3] ^= 0x10
  elif where == "truncated":
    data = data[:-1]
  else:
    data[0] ^= 0xFF
  with pytest.raises(vr.CorruptRecordError):
    vr.decode(bytes(data))


def test_corrupt_frame_is_detected_when_read():
  record = _record()
  data = bytearray(vr.encode(record))
  data[-5] ^= 0x01  # inside the last frame
  decoded = vr.decode(bytes(data))
  assert bytes(decoded["frames"][0]) == record["frames"][0]  # untouched frames still read
  with pytest.raises(vr.CorruptRecordError, match="Frame 2"):
    decoded["frames"][2]  # pylint: disable=pointless-statement


def test_schema_errors_name_the_field():
  record = _record()
  record["boxes_2d"] = record["boxes_2d"][:, :1]
  with pytest.raises(vr.CorruptRecordError, match="boxes_2d"):
    vr.encode(record)
  record = _record()
  record["intrinsics"][0, 0, 0] = np.nan
  with pytest.raises(vr.CorruptRecordError, match="intrinsics.*non-finite"):
    vr.encode(record)
  record = _record()
  record["visible"] = record["visible"].astype(np.int32)
  with pytest.raises(vr.CorruptRecordError, match="visible has dtype"):
    vr.encode(record)


def test_write_array_record_is_atomic(tmp_path):
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "shard.array_record")
  assert vr.write_array_record(path, [_record(seed=i) for i in range(3)]) == 3
  source = array_record_data_source.ArrayRecordDataSource([path])
  assert len(source) == 3 and vr.decode(source[2])["video_id"] == b"video-7"

  def failing():
    yield _record()
    raise RuntimeError("reader died")

  bad = str(tmp_path / "bad.array_record")
  with pytest.raises(RuntimeError, match="reader died"):
    vr.write_array_record(bad, failing())
  assert not (tmp_path / "bad.array_record").exists()
  assert not (tmp_path / "bad.array_record.tmp").exists()


def _reader(data, log):
  def read(start, stop):
    log.append((start, stop))
    return bytes(data[start:stop])
  return read


@pytest.mark.parametrize("prefix_len", [0, 5, 13, 60, None, -1])
def test_decode_lazy_matches_decode_and_reads_only_what_is_used(prefix_len):
  record = _record(num_frames=4)
  data = vr.encode(record)
  full = vr.decode(data)
  body_end = len(data) - sum(len(f) for f in record["frames"])
  prefix_len = {None: body_end, -1: len(data)}.get(prefix_len, prefix_len)
  log = []
  lazy = vr.decode_lazy(_reader(data, log), len(data), prefix=data[:prefix_len])
  for name in vr.ARRAY_FIELDS:
    np.testing.assert_array_equal(lazy[name], full[name])
  assert lazy["video_id"] == full["video_id"]
  # Header and arrays: one read per piece the prefix lacks (length field, header, arrays).
  assert all(stop <= body_end for _, stop in log)
  header_end = 13 + int.from_bytes(data[len(vr.MAGIC):len(vr.MAGIC) + 4], "little")
  assert len(log) == (3 if prefix_len < 13 else 2 if prefix_len < header_end else
                      1 if prefix_len < body_end else 0)
  log.clear()
  assert bytes(lazy["frames"][2]) == record["frames"][2]
  frame_start = body_end + sum(len(f) for f in record["frames"][:2])
  assert log == ([] if prefix_len == len(data) else [(frame_start,
                                                      frame_start + len(record["frames"][2]))])
  assert lazy["frames"] == record["frames"]


def test_decode_lazy_detects_corruption():
  record = _record()
  data = bytearray(vr.encode(record))
  data[-5] ^= 0x01  # inside the last frame
  lazy = vr.decode_lazy(_reader(data, []), len(data), prefix=bytes(data[:20]))
  assert bytes(lazy["frames"][0]) == record["frames"][0]
  with pytest.raises(vr.CorruptRecordError, match="Frame 2"):
    lazy["frames"][2]  # pylint: disable=pointless-statement
  data = bytearray(vr.encode(record))
  data[len(vr.MAGIC) + 30] ^= 0x01  # inside the header
  with pytest.raises(vr.CorruptRecordError):
    vr.decode_lazy(_reader(data, []), len(data))
  with pytest.raises(vr.CorruptRecordError, match="truncated"):
    vr.decode_lazy(_reader(data, []), len(data) - 1)


def _reheader(data: bytes, edit) -> bytes:
  """`data` with its JSON header edited by `edit(header)` and the checksum recomputed."""
  import json  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  start = len(vr.MAGIC) + 8
  header_len = int.from_bytes(data[len(vr.MAGIC):len(vr.MAGIC) + 4], "little")
  header = json.loads(data[start:start + header_len])
  arrays_len = sum(int(np.prod(s)) * np.dtype(d).itemsize for d, s, _ in header["arrays"].values())
  edit(header)
  new_header = json.dumps(header, separators=(",", ":")).encode()
  body = new_header + data[start + header_len:start + header_len + arrays_len]
  return b"".join([vr.MAGIC, len(new_header).to_bytes(4, "little"),
                   zlib.crc32(body).to_bytes(4, "little"), body,
                   data[start + header_len + arrays_len:]])


def test_header_schema_and_offsets_are_checked_even_with_valid_checksums():
  data = vr.encode(_record())
  assert vr.decode(_reheader(data, lambda h: None))["video_id"] == b"video-7"

  def swap_offsets(header):
    offsets = header["frame_offsets"]
    offsets[1], offsets[2] = offsets[2], offsets[1]
  with pytest.raises(vr.CorruptRecordError, match="offsets"):
    vr.decode(_reheader(data, swap_offsets))

  def bad_shape(header):
    header["arrays"]["visible"][1] = [2, 3]
  with pytest.raises(vr.CorruptRecordError, match="visible has shape"):
    vr.decode(_reheader(data, bad_shape))
  # A cache of checked layouts does not let a different table through.
  layouts = {}
  vr.decode_lazy(_reader(data, []), len(data), layouts=layouts)
  assert layouts
  with pytest.raises(vr.CorruptRecordError, match="visible has shape"):
    bad = _reheader(data, bad_shape)
    vr.decode_lazy(_reader(bad, []), len(bad), layouts=layouts)


def test_non_finite_arrays_are_rejected_on_decode():
  record = _record()
  data = vr.encode(record)
  bad = bytearray(data)
  # Overwrite boxes_2d[0, 0, 0] with NaN and fix the checksum: the value check still fires.
  import json  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  start = len(vr.MAGIC) + 8
  header_len = int.from_bytes(data[len(vr.MAGIC):len(vr.MAGIC) + 4], "little")
  header = json.loads(data[start:start + header_len])
  offset = start + header_len + header["arrays"]["boxes_2d"][2]
  bad[offset:offset + 4] = np.float32(np.nan).tobytes()
  arrays_len = sum(int(np.prod(s)) * np.dtype(d).itemsize for d, s, _ in header["arrays"].values())
  bad[len(vr.MAGIC) + 4:start] = zlib.crc32(bad[start:start + header_len + arrays_len]).to_bytes(
      4, "little")
  with pytest.raises(vr.CorruptRecordError, match="non-finite"):
    vr.decode(bytes(bad))
