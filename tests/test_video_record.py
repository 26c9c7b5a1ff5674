"""The video-record storage: records round trip through ArrayRecord, every corruption detected."""
import json
import zlib

import numpy as np
import pytest

from data_pipelines import video_record as vr


def _record(num_frames=3, num_objects=2, seed=0):
  rng = np.random.default_rng(seed)
  return dict(
      video_id=f"video-{seed}".encode(),
      frames=[rng.bytes(100 + 10 * i) for i in range(num_frames)],
      intrinsics=rng.normal(size=(num_frames, 3, 3)).astype(np.float32),
      world_to_camera=rng.normal(size=(num_frames, 4, 4)).astype(np.float32),
      box_corners_world=rng.normal(size=(num_frames, num_objects, 8, 3)).astype(np.float32),
      boxes_2d=rng.uniform(size=(num_frames, num_objects, 4)).astype(np.float32),
      visible=rng.uniform(size=(num_frames, num_objects)) > 0.5,
      instance_ids=np.arange(num_objects, dtype=np.int32),
      category=np.full(num_objects, -1, np.int32))


def _assert_same(got, want):
  for name in vr.ARRAY_FIELDS:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert got[name].dtype == want[name].dtype
  assert got["video_id"] == want["video_id"]
  assert [bytes(f) for f in got["frames"]] == [bytes(f) for f in want["frames"]]
  assert got["attributes"] == want.get("attributes", {})


def test_records_of_a_video_round_trip():
  record = dict(_record(), attributes={"camera": "portrait"})
  payloads = vr.encode_records(record, position=10)
  assert len(payloads) == 4  # 3 frame records, then the video record.
  frames = [bytes(vr.decode_frame(p)) for p in payloads[:3]]
  assert frames == record["frames"]
  video = vr.decode_video(payloads[3])
  assert video["num_frames"] == 3 and video["first_frame"] == 10
  _assert_same(dict(video, frames=frames), record)


@pytest.mark.parametrize("options", [vr.DEFAULT_OPTIONS, "zstd:3", "group_size:1,snappy"])
def test_files_round_trip_with_any_compression(tmp_path, options):
  records = [_record(num_frames=1 + i, num_objects=i, seed=i) for i in range(4)]
  path = str(tmp_path / "shard.array_record")
  assert vr.write_array_record(path, records, options=options) == 4
  # Plain ArrayRecord files: 1 + 2 + 3 + 4 frame records, 4 video records, 1 index record.
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  reader = array_record_module.ArrayRecordReader(path)
  assert reader.num_records() == 10 + 4 + 1
  reader.close()
  for got, want in zip(vr.read_array_record(path), records, strict=True):
    _assert_same(got, want)
  reader = vr.VideoRecordReader([path, path])  # Keys run on across files.
  assert len(reader) == 8
  _assert_same(reader.read(6), records[2])


def test_group_size_other_than_one_is_refused(tmp_path):
  with pytest.raises(ValueError, match="group_size:1"):
    vr.write_array_record(str(tmp_path / "a"), [_record()], options="group_size:16")
  assert vr.check_options("zstd") == "group_size:1,zstd"


@pytest.mark.parametrize("where", ["header", "arrays", "id", "truncated", "magic"])
def test_video_record_corruption_is_detected_on_decode(where):
  data = bytearray(vr.encode_video(_record(), 0))
  header_len = int.from_bytes(data[len(vr.VIDEO_MAGIC):len(vr.VIDEO_MAGIC) + 4], "little")
  header_start = len(vr.VIDEO_MAGIC) + 18 + len(b"video-0")
  if where == "header":
    data[header_start + 5] ^= 0x01
  elif where == "arrays":
    data[header_start + header_len + 3] ^= 0x10
  elif where == "id":
    data[header_start - 2] ^= 0x01
  elif where == "truncated":
    data = data[:-1]
  else:
    data[0] ^= 0xFF
  with pytest.raises(vr.CorruptRecordError):
    vr.decode_video(bytes(data))


def test_frame_and_index_corruption_is_detected():
  frame = bytearray(vr.encode_frame(b"png bytes here"))
  frame[-2] ^= 0x01
  with pytest.raises(vr.CorruptRecordError, match="checksum"):
    vr.decode_frame(bytes(frame))
  with pytest.raises(vr.CorruptRecordError, match="frame record"):
    vr.decode_frame(vr.encode_video(_record(), 0))
  index = bytearray(vr.encode_index([3, 9]))
  assert vr.decode_index(bytes(index)) == [3, 9]
  index[-2] ^= 0x01
  with pytest.raises(vr.CorruptRecordError, match="index"):
    vr.decode_index(bytes(index))


def test_a_frame_with_a_bad_checksum_names_file_and_record(tmp_path):
  """A record whose bytes ArrayRecord returns intact but whose CRC32 fails (e.g. damaged before
  it was written) is reported by our checksum, naming where it is."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  record = _record()
  payloads = vr.encode_records(record, 0)
  bad = bytearray(payloads[1])
  bad[-1] ^= 0x01
  payloads[1] = bytes(bad)
  path = str(tmp_path / "x.array_record")
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  for p in payloads + [vr.encode_index([3])]:
    writer.write(p)
  writer.close()
  video = vr.VideoRecordReader([path]).read(0)
  assert bytes(video["frames"][0]) == record["frames"][0]
  with pytest.raises(vr.CorruptRecordError, match=r"x.array_record record 1: Frame fails"):
    video["frames"][1]  # pylint: disable=pointless-statement


def test_schema_errors_name_the_field():
  record = _record()
  record["boxes_2d"] = record["boxes_2d"][:, :1]
  with pytest.raises(vr.CorruptRecordError, match="boxes_2d"):
    vr.encode_video(record, 0)
  record = _record()
  record["intrinsics"][0, 0, 0] = np.nan
  with pytest.raises(vr.CorruptRecordError, match="intrinsics.*non-finite"):
    vr.encode_video(record, 0)
  record = _record()
  record["visible"] = record["visible"].astype(np.int32)
  with pytest.raises(vr.CorruptRecordError, match="visible has dtype"):
    vr.encode_video(record, 0)
  with pytest.raises(vr.CorruptRecordError, match="attributes"):
    vr.validate(dict(_record(), attributes={"a": 1}))


def test_write_array_record_is_atomic(tmp_path):
  path = str(tmp_path / "shard.array_record")
  assert vr.write_array_record(path, [_record(seed=i) for i in range(3)]) == 3
  assert vr.read_array_record(path)[2]["video_id"] == b"video-2"

  def failing():
    yield _record()
    raise RuntimeError("reader died")

  bad = str(tmp_path / "bad.array_record")
  with pytest.raises(RuntimeError, match="reader died"):
    vr.write_array_record(bad, failing())
  assert not (tmp_path / "bad.array_record").exists()
  assert not (tmp_path / "bad.array_record.tmp").exists()


def _split(data: bytes):
  """(fixed fields + id, JSON header, arrays) of a video record."""
  header_len = int.from_bytes(data[len(vr.VIDEO_MAGIC):len(vr.VIDEO_MAGIC) + 4], "little")
  start = len(vr.VIDEO_MAGIC) + 18 + int.from_bytes(data[len(vr.VIDEO_MAGIC) + 16:
                                                         len(vr.VIDEO_MAGIC) + 18], "little")
  return (data[len(vr.VIDEO_MAGIC) + 8:start], data[start:start + header_len],
          data[start + header_len:])


def _join(fixed: bytes, header: bytes, arrays: bytes) -> bytes:
  body = fixed + header + arrays
  return b"".join([vr.VIDEO_MAGIC, len(header).to_bytes(4, "little"),
                   zlib.crc32(body).to_bytes(4, "little"), body])


def _reheader(data: bytes, edit) -> bytes:
  """A video record with its JSON header edited by `edit(header)` and the checksum recomputed."""
  fixed, header, arrays = _split(data)
  header = json.loads(header)
  edit(header)
  return _join(fixed, json.dumps(header, separators=(",", ":")).encode(), arrays)


def test_header_schema_is_checked_even_with_valid_checksums():
  data = vr.encode_video(_record(), 0)
  assert vr.decode_video(_reheader(data, lambda h: None))["video_id"] == b"video-0"

  def bad_shape(header):
    header["arrays"]["visible"][1] = [2, 3]
  with pytest.raises(vr.CorruptRecordError, match="visible has shape"):
    vr.decode_video(_reheader(data, bad_shape))
  # A cache of checked layouts does not let a different table through.
  layouts = {}
  vr.decode_video(data, layouts)
  assert layouts
  with pytest.raises(vr.CorruptRecordError, match="visible has shape"):
    vr.decode_video(_reheader(data, bad_shape), layouts)


def test_non_finite_arrays_are_rejected_on_decode():
  data = vr.encode_video(_record(), 0)
  fixed, header, arrays = _split(data)
  offset = json.loads(header)["arrays"]["boxes_2d"][2]
  arrays = bytearray(arrays)
  arrays[offset:offset + 4] = np.float32(np.nan).tobytes()
  bad = _join(fixed, header, bytes(arrays))
  with pytest.raises(vr.CorruptRecordError, match="boxes_2d.*non-finite"):
    vr.decode_video(bad)
  assert np.isnan(vr.decode_video(bad, check_values=False)["boxes_2d"][0, 0, 0])
