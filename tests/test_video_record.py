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
