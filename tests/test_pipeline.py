"""Tests of the grain frame-pair pipeline (data_pipelines.pipeline) on tiny ArrayRecord files."""
import json

import ml_collections
import numpy as np
import pytest

from data_pipelines import batch_map
from data_pipelines import data_config
from data_pipelines import frame_pairs
from data_pipelines import host_batches
from data_pipelines import pipeline
from data_pipelines import record_source
from data_pipelines import video_record
from tests import frame_pairs_reference
from tests import video_fixtures

NUM_VIDEOS = 12  # 7 + 5 over two files.
MAX_OBJECTS = 3
BATCH = 4


def _record(i):
  rng = np.random.default_rng(i)
  num_objects = int(rng.integers(2, 5))
  centers = np.stack([rng.uniform(-1.2, 1.2, num_objects), rng.uniform(-0.6, 0.6, num_objects),
                      rng.uniform(4.0, 7.0, num_objects)], -1)
  sizes = rng.uniform(0.3, 0.9, (num_objects, 3))
  return video_fixtures.make_video_record(num_frames=4, height=24, width=32, centers=centers,
                                          sizes=sizes, video_id=f"video{i}".encode())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("records")
  records = [_record(i) for i in range(NUM_VIDEOS)]
  video_record.write_array_record(str(root / "train-00000.array_record"), records[:7])
  video_record.write_array_record(str(root / "train-00001.array_record"), records[7:])
  video_record.write_array_record(str(root / "eval-00000.array_record"), records[:6])
  # A zstd-compressed file with corrupt videos 1 (a flipped byte in its video record) and 4
  # (undecodable frames).
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  bad_frame = dict(records[4])
  bad_frame["frames"] = [b"not an image"] * len(bad_frame["frames"])
  writer = array_record_module.ArrayRecordWriter(str(root / "corrupt-00000.array_record"),
                                                 "group_size:1,zstd:3")
  position, videos = 0, []
  for i, record in enumerate(records[:8]):
    payloads = video_record.encode_records(bad_frame if i == 4 else record, position)
    if i == 1:
      flipped = bytearray(payloads[-1])
      flipped[len(video_record.VIDEO_MAGIC) + 20] ^= 0xFF  # inside the checksummed header
      payloads[-1] = bytes(flipped)
    for p in payloads:
      writer.write(p)
    position += len(payloads)
    videos.append(position - 1)
  writer.write(video_record.encode_index(videos))
  writer.close()
  return str(root)


def _config(data_dir, **overrides):
  data = data_config.default_data_config()
  data.data_dir = data_dir
  data.resolution = (16, 16)
  data.global_batch_size = BATCH
  data.eval_global_batch_size = BATCH
  data.worker_count = 0
  data.read_threads = 0
  data.seed = 3
  data.update(overrides)
  return ml_collections.ConfigDict(dict(
      data=data, model=dict(conditioning=dict(max_objects=MAX_OBJECTS))))


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def _check_shapes(batch, size=BATCH, res=16):
  assert set(batch) == set(frame_pairs.EXAMPLE_KEYS)
  expect = {
      "source_image": ((size, res, res, 3), np.uint8),
      "target_image": ((size, res, res, 3), np.uint8),
      "source_boxes": ((size, MAX_OBJECTS, 4), np.float32),
      "target_boxes": ((size, MAX_OBJECTS, 4), np.float32),
      "target_corners": ((size, MAX_OBJECTS, 8, 3), np.float32),
      "slot_mask": ((size, MAX_OBJECTS), np.bool_),
      "appearance_mask": ((size, MAX_OBJECTS), np.bool_),
      "relative_pose": ((size, 4, 4), np.float32),
      "video_index": ((size,), np.int32),
      "source_frame": ((size,), np.int32),
      "target_frame": ((size,), np.int32),
  }
  for key, (shape, dtype) in expect.items():
    assert batch[key].shape == shape and batch[key].dtype == dtype, key


def test_video_order_epochs_are_permutations_and_batches_run_across_them():
  import pickle  # pylint: disable=g-import-not-at-top
  order = host_batches.VideoOrder(10, 17, batch_size=3, seed=5, shuffle=True, num_epochs=3,
                              drop_remainder=False)
  assert len(order) == 7  # 21 positions: 6 full batches and a final one of 3.
  flat = [k for i in range(len(order)) for k in order(i)]
  assert [len(order(i)) for i in range(7)] == [3] * 7
  epochs = [flat[i:i + 7] for i in range(0, 21, 7)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(10, 17))
  assert epochs[0] != epochs[1] != epochs[2]
  assert pickle.loads(pickle.dumps(order))(4) == order(4) == flat[12:15]  # Crosses epochs 1-2.
  again = host_batches.VideoOrder(10, 17, 3, 5, True, 3, False)
  assert [again(i) for i in reversed(range(7))] == [order(i) for i in reversed(range(7))]
  other = host_batches.VideoOrder(10, 17, 3, 6, True, 3, False)
  assert [other(i) for i in range(7)] != [order(i) for i in range(7)]
  plain = host_batches.VideoOrder(0, 5, 2, 5, False, 1, drop_remainder=False)
  assert [plain(i) for i in range(len(plain))] == [[0, 1], [2, 3], [4]]
  assert len(host_batches.VideoOrder(0, 5, 2, 5, False, 1, drop_remainder=True)) == 2
  forever = host_batches.VideoOrder(0, 5, 2, 5, True, None, True)
  assert len(forever) > 10**15 and sorted(forever(10**12 * 5) + forever(10**12 * 5 + 1)
                                          + forever(10**12 * 5 + 2)[:1]) == list(range(5))


def test_batch_generators_are_philox_streams_per_batch_index():
  import pickle  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  generators = batch_map.BatchGenerators((3, 1))
  key = np.random.SeedSequence((3, 1)).generate_state(2, np.uint64)

  def fresh(index):
    return np.random.Generator(np.random.Philox(key=key, counter=[0, index, 0, 0])).random(7)

  draws = {index: generators(index).random(7) for index in (5, 0, 2**40, 5)}
  for index, values in draws.items():
    np.testing.assert_array_equal(values, fresh(index))
  generators(0).random(1)  # A partly used stream: the next batch still starts at its counter.
  np.testing.assert_array_equal(generators(5).random(7), fresh(5))
  assert not np.array_equal(fresh(5), fresh(6))
  other = batch_map.BatchGenerators((4, 1))
  assert not np.array_equal(other(5).random(7), fresh(5))
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(generators))(9).random(3), fresh(9)[:3])
  seen = {}  # Threads (grain's read threads) each have their own bit generator.
  threads = [threading.Thread(target=lambda i=i: seen.__setitem__(i, generators(i).random(7)))
             for i in range(4)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  for index, values in seen.items():
    np.testing.assert_array_equal(values, fresh(index))


def test_batches_deterministic_given_seed_and_differ_across_seeds(data_dir):
  first = _take(pipeline.make_train_iterator(_config(data_dir)), 4)  # JAX process 0 of 1.
  again = _take(pipeline.make_train_iterator(_config(data_dir), process_index=0,
                                             process_count=1), 4)
  _check_shapes(first[0])
  _assert_batches_equal(first, again)
  other = _take(pipeline.make_train_iterator(_config(data_dir, seed=4), process_index=0,
                                             process_count=1), 4)
  assert any(not np.array_equal(a["video_index"], b["video_index"])
             or not np.array_equal(a["source_frame"], b["source_frame"])
             for a, b in zip(first, other))
  # Data really comes from the records: boxes are inside [0, 1], some slots are filled, pairs vary.
  stacked = {k: np.concatenate([b[k] for b in first]) for k in first[0]}
  assert stacked["slot_mask"].any() and np.all(stacked["source_boxes"] <= 1)
  assert len(set(stacked["video_index"].tolist())) > 4
  assert np.any(stacked["source_frame"] != stacked["target_frame"])
  assert np.any(stacked["source_frame"] > stacked["target_frame"])  # Swaps happen.


def test_process_sharding_is_disjoint_and_covers_the_data(data_dir):
  seen = []
  for index in range(2):
    it = pipeline.make_train_iterator(_config(data_dir, num_epochs=1, drop_remainder=False),
                                      process_index=index, process_count=2)
    batches = list(it)
    assert all(b["video_index"].shape[0] == BATCH // 2 for b in batches[:-1])
    seen.append(np.concatenate([b["video_index"] for b in batches]).tolist())
  assert not set(seen[0]) & set(seen[1])
  assert sorted(seen[0] + seen[1]) == list(range(NUM_VIDEOS))
  with pytest.raises(ValueError, match="multiple of the process count"):
    pipeline.make_train_iterator(_config(data_dir, global_batch_size=3), process_index=0,
                                 process_count=2)


def test_worker_processes_and_read_threads_give_the_same_batches(data_dir):
  reference = _take(pipeline.make_train_iterator(_config(data_dir), process_index=0,
                                                 process_count=1), 5)  # Crosses an epoch.
  for overrides in (dict(worker_count=1), dict(worker_count=2), dict(read_threads=2)):
    it = pipeline.make_train_iterator(_config(data_dir, **overrides), process_index=0,
                                      process_count=1)
    got = _take(it, 5)
    it.close()
    _check_shapes(got[0])
    _assert_batches_equal(reference, got)


def test_checkpoint_restore_continues_exactly(data_dir):
  it = pipeline.make_train_iterator(_config(data_dir), process_index=0, process_count=1)
  _take(it, 2)
  state = it.get_state()
  assert isinstance(state, bytes) and json.loads(state)["next_batch"] == 2
  stats_at_save = it.stats
  expected = _take(it, 4)  # Crosses the epoch boundary (12 videos / batch 4).
  restored = pipeline.make_train_iterator(_config(data_dir), process_index=0, process_count=1)
  _take(restored, 1)  # A different position, overwritten by the restore.
  restored.set_state(state)
  assert restored.stats == stats_at_save
  _assert_batches_equal(expected, _take(restored, 4))
  assert restored.stats == it.stats


def test_checkpoint_restore_with_worker_processes(data_dir):
  config = _config(data_dir, worker_count=2)
  it = pipeline.make_train_iterator(config, process_index=0, process_count=1)
  _take(it, 3)
  state = it.get_state()
  expected = _take(it, 3)
  it.close()
  # The position is portable: a run resumed with another worker count continues exactly.
  for restored_config in (config, _config(data_dir)):
    restored = pipeline.make_train_iterator(restored_config, process_index=0, process_count=1)
    restored.set_state(state)
    _assert_batches_equal(expected, _take(restored, 3))
    assert restored.stats == it.stats and it.stats["objects/kept"] > 0
    restored.close()
  # A state of other data (seed, batch size, files, process layout) is refused by name.
  with pytest.raises(ValueError, match="seed=3.*seed=4"):
    pipeline.make_train_iterator(_config(data_dir, seed=4), process_index=0,
                                 process_count=1).set_state(state)
  with pytest.raises(ValueError, match="num_videos"):
    pipeline.make_train_iterator(_config(data_dir, train_files="train-00000.array_record"),
                                 process_index=0, process_count=1).set_state(state)
  old = json.dumps({"loader": {}, "skipped_records": 0, "object_counts": []}).encode()
  with pytest.raises(ValueError, match="older version"):
    pipeline.make_train_iterator(config, process_index=0, process_count=1).set_state(old)


def test_corrupt_records_are_skipped_and_counted(data_dir):
  config = _config(data_dir, train_files="corrupt-*.array_record", num_epochs=1, shuffle=False)
  it = pipeline.make_train_iterator(config, process_index=0, process_count=1)
  batches = list(it)
  assert len(batches) == 2
  for b in batches:
    _check_shapes(b)
  indices = np.concatenate([b["video_index"] for b in batches]).tolist()
  # Keys 1 and 4 are replaced by the next record (2 and 5).
  assert indices == [0, 2, 2, 3, 5, 5, 6, 7]
  assert it.stats["skipped_records"] == 2
  kept = it.stats["objects/kept"]
  assert kept == sum(int(b["slot_mask"].sum()) for b in batches) and kept > 0
  # The per-object outcomes add up to all objects of the 8 records used.
  total = sum(v for k, v in it.stats.items() if k.startswith("objects/"))
  assert total == sum(_record(i)["instance_ids"].shape[0] for i in indices)


def test_frames_that_fail_to_decode_are_replaced_with_their_objects(tmp_path):
  """A video whose frame headers parse but whose pixels do not decode (truncated PNGs) fails in
  the decode phase, after the batch's object logic ran: the next video replaces it, images and
  objects alike. Full-size frames, so the libpng path decodes them."""
  records = [_record(i) for i in range(4)]
  records[1] = dict(records[1], frames=[bytes(f)[:-60] for f in records[1]["frames"]])
  video_record.write_array_record(str(tmp_path / "train-00000.array_record"), records)
  config = _config(str(tmp_path), resolution=(24, 32), num_epochs=1, shuffle=False)
  iterator = pipeline.make_train_iterator(config, process_index=0, process_count=1)
  (batch,) = list(iterator)
  assert batch["video_index"].tolist() == [0, 2, 2, 3]
  assert iterator.stats["skipped_records"] == 1
  cfg = data_config.frame_pair_config(config)
  for slot, video in enumerate(batch["video_index"]):
    want, _ = frame_pairs_reference.make_frame_pair(
        records[video], int(batch["source_frame"][slot]), int(batch["target_frame"][slot]),
        int(video), cfg)
    for key, value in want.items():
      np.testing.assert_array_equal(batch[key][slot], value, err_msg=f"{key} of slot {slot}")


def test_videos_too_short_for_the_gap_are_skipped(tmp_path):
  """A record failing at the pair-sampling stage (fewer frames than min_gap needs) is replaced
  by the next video, in training and in evaluation."""
  records = [_record(i) for i in range(4)]
  records[1] = video_fixtures.make_video_record(num_frames=2, height=24, width=32)
  video_record.write_array_record(str(tmp_path / "train-00000.array_record"), records)
  video_record.write_array_record(str(tmp_path / "eval-00000.array_record"), records)
  config = _config(str(tmp_path), min_gap=2, num_epochs=1, shuffle=False)
  for make in (pipeline.make_train_iterator, pipeline.make_eval_iterator):
    iterator = make(config, process_index=0, process_count=1)
    (batch,) = list(iterator)
    assert batch["video_index"].tolist() == [0, 2, 2, 3], make.__name__
    assert iterator.stats["skipped_records"] == 1
    assert np.all(np.abs(batch["target_frame"] - batch["source_frame"]) >= 2)


def test_eval_iterator_fixed_pairs_without_swap(data_dir):
  config = _config(data_dir, swap_prob=0.5)
  first = list(pipeline.make_eval_iterator(config, process_index=0, process_count=1))
  second = list(pipeline.make_eval_iterator(_config(data_dir, seed=9), process_index=0,
                                            process_count=1))
  _assert_batches_equal(first, second)
  indices = np.concatenate([b["video_index"] for b in first])
  assert sorted(indices.tolist()) == list(range(6))
  src = np.concatenate([b["source_frame"] for b in first])
  tgt = np.concatenate([b["target_frame"] for b in first])
  assert np.all(src < tgt)  # eval_min_gap=1 (default): never target = source
  assert first[0]["video_index"].shape == (BATCH,) and first[-1]["video_index"].shape == (2,)
  # A training range below it (single-frame training, max_gap=0) does not bound eval pairs.
  single = list(pipeline.make_eval_iterator(_config(data_dir, max_gap=0), process_index=0,
                                            process_count=1))
  assert np.all(np.concatenate([b["source_frame"] for b in single])
                < np.concatenate([b["target_frame"] for b in single]))


def test_config_errors(data_dir):
  with pytest.raises(FileNotFoundError):
    pipeline.make_train_iterator(_config(data_dir, train_files="nothing-*.array_record"),
                                 process_index=0, process_count=1)
  config = _config(data_dir, max_objects=MAX_OBJECTS + 1)
  with pytest.raises(ValueError, match="disagrees"):
    pipeline.make_train_iterator(config, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="invalid_3d_boxes 'clip'"):
    pipeline.make_train_iterator(_config(data_dir, invalid_3d_boxes="clip"), process_index=0,
                                 process_count=1)


def test_compressed_files_read_the_same_records(data_dir, tmp_path):
  files = data_config.resolve_files(data_dir, "train-*.array_record")
  source = record_source.VideoRecordSource(files)
  assert len(source) == NUM_VIDEOS
  compressed = []
  for n, path in enumerate(files):
    out = str(tmp_path / f"zstd-{n}.array_record")
    video_record.write_array_record(out, video_record.read_array_record(path),
                                    options="zstd:5")
    compressed.append(out)
  zstd = record_source.VideoRecordSource(compressed)
  assert len(zstd) == NUM_VIDEOS
  for key in range(NUM_VIDEOS):
    expected, got = _record(key), zstd.read_record(key)
    for name in video_record.ARRAY_FIELDS:
      np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert got["video_id"] == expected["video_id"] and got["frames"] == expected["frames"]
    assert source.read_record(key)["frames"] == expected["frames"]
  # The grain element of a video is its video record only.
  assert bytes(source[3]["data"]).startswith(video_record.VIDEO_MAGIC)
  assert data_config.read_threads(_config(data_dir, read_threads=None).data) == 0


def _flip_byte_inside(path, needle: bytes):
  """Flips a byte in the middle of the first occurrence of `needle` in the file."""
  with open(path, "r+b") as f:
    data = f.read()
    offset = data.index(needle) + len(needle) // 2
    f.seek(offset)
    f.write(bytes([data[offset] ^ 0x40]))


def test_a_damaged_shard_names_the_file_and_record_and_is_skipped(data_dir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "train-00000.array_record")
  shutil.copy(data_config.resolve_files(data_dir, "train-00000.array_record")[0], path)
  frame = bytes(_record(2)["frames"][3])
  _flip_byte_inside(path, frame)  # ArrayRecord's chunk hash of frame record 2*5+3 = 13 fails.
  source = record_source.VideoRecordSource([path])
  record = source.read_record(2)
  assert bytes(record["frames"][0]) == bytes(_record(2)["frames"][0])
  with pytest.raises(video_record.CorruptRecordError, match=r"train-00000.array_record record 13"):
    record["frames"][3]  # pylint: disable=pointless-statement
  # In a run, the video with the damaged frame is skipped and counted when its frame is read
  # (a gap of 3 in 4-frame videos: every pair is (0, 3)).
  config = _config(str(tmp_path), train_files="train-*.array_record", num_epochs=1,
                   shuffle=False, global_batch_size=1, min_gap=3, max_gap=3, swap_prob=0.0)
  it = pipeline.make_train_iterator(config, process_index=0, process_count=1)
  indices = [int(b["video_index"][0]) for b in it]
  assert len(indices) == 7 and it.stats["skipped_records"] == 1 and indices[2] == 3
  # A damaged video record (read by grain's reader) is skipped and counted too.
  data = open(path, "rb").read()
  offset = data.index(b"video4") + 2  # video 4's id, inside its video record
  with open(path, "r+b") as f:
    f.seek(offset)
    f.write(bytes([data[offset] ^ 0x40]))
  with pytest.raises(video_record.CorruptRecordError, match=r"train-00000.array_record record"):
    record_source.VideoRecordSource([path]).read(4)
  it = pipeline.make_train_iterator(config, process_index=0, process_count=1)
  indices = [int(b["video_index"][0]) for b in it]
  assert 4 not in indices and indices[4] == 5 and it.stats["skipped_records"] >= 1


def test_a_truncated_shard_stops_with_its_name(data_dir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  source_path = data_config.resolve_files(data_dir, "train-00000.array_record")[0]
  path = tmp_path / "train-00000.array_record"
  shutil.copy(source_path, path)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) * 2 // 3])
  config = _config(str(tmp_path), train_files="train-*.array_record")
  with pytest.raises(video_record.DataFileError, match=r"train-00000.array_record.*truncated"):
    pipeline.make_train_iterator(config, process_index=0, process_count=1)
  # A file of other records (no video index) is named too.
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")
  writer.write(b"some other record")
  writer.close()
  with pytest.raises(video_record.DataFileError, match=r"train-00000.array_record.*video index"):
    pipeline.make_train_iterator(config, process_index=0, process_count=1)


def test_batches_held_by_the_caller_are_never_overwritten(data_dir):
  it = pipeline.make_train_iterator(_config(data_dir), process_index=0, process_count=1)
  held = next(it)
  snapshot = {key: value.copy() for key, value in held.items()}
  view = held["target_image"][1]  # A view alone must keep its buffer alive too.
  view_copy = view.copy()
  del held["target_image"]
  for _ in range(12):  # Several epochs' worth of batches through the recycled buffers.
    next(it)
  for key, value in held.items():
    np.testing.assert_array_equal(value, snapshot[key], err_msg=key)
  np.testing.assert_array_equal(view, view_copy)
