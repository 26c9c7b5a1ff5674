"""Conversion on Apache Beam (DirectRunner, several processes) writes the records the
single-process CLIs write for the same fixture files, record by record; failed inputs are
counted and named, not fatal. Needs the `beam` extra (tests/run.sh installs it)."""
import glob
import os
import time

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")

# pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import beam_convert
from data_pipelines import dataset_conversion
from data_pipelines import movi_e
from data_pipelines import objectron
from data_pipelines import synthetic
from data_pipelines import video_record
from data_pipelines import waymo
from tests import test_movi_e
from tests import test_objectron
from tests import test_waymo

tf = pytest.importorskip("tensorflow")

WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _assert_same_files(cli_paths, beam_dir):
  assert cli_paths
  for path in cli_paths:
    other = os.path.join(beam_dir, os.path.basename(path))
    got, want = video_record.read_array_record(other), video_record.read_array_record(path)
    assert len(got) == len(want) > 0, path
    for g, w in zip(got, want):
      assert g["video_id"] == w["video_id"] and g["frames"] == w["frames"]
      assert g["attributes"] == w["attributes"]
      for name in video_record.ARRAY_FIELDS:
        np.testing.assert_array_equal(g[name], w[name], err_msg=f"{path} {name}")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("beam_inputs")
  # Objectron: a good shard of two sequences, and a shard whose second record is not one.
  good, bad = str(root / "book-00000-of-00002"), str(root / "book-00001-of-00002")
  with tf.io.TFRecordWriter(good) as writer:
    writer.write(test_objectron.build_example(test_objectron.make_scene()))
    writer.write(test_objectron.build_example(test_objectron.make_scene("portrait_cw_cy")))
  with tf.io.TFRecordWriter(bad) as writer:
    writer.write(test_objectron.build_example(test_objectron.make_scene("landscape")))
    writer.write(b"not a sequence example")
  # Waymo: one good segment, one whose files hold no rows of it (and no lidar_box file).
  waymo_dir = test_waymo.write_segment(str(root / "waymo"))
  os.makedirs(os.path.join(waymo_dir, "camera_image"), exist_ok=True)
  broken = "0000_broken_segment"
  import shutil  # pylint: disable=g-import-not-at-top
  for tag in ("camera_image", "camera_calibration", "vehicle_pose"):
    shutil.copy(os.path.join(waymo_dir, tag, f"{test_waymo.SEGMENT}.parquet"),
                os.path.join(waymo_dir, tag, f"{broken}.parquet"))
  # MOVi-E: a TFDS dataset of two videos.
  tfds_dir = str(root / "tfds")
  movi_e.write_tfds(tfds_dir, {"train": [test_movi_e._known_example(i) for i in range(2)]},  # pylint: disable=protected-access
                    test_movi_e.SIZE, test_movi_e.SIZE, test_movi_e.FRAMES)
  return dict(objectron=[good, bad], waymo=waymo_dir, broken=broken, tfds=tfds_dir)


def test_beam_and_cli_write_the_same_records(inputs, tmp_path):
  cli, out = tmp_path / "cli", tmp_path / "beam"
  scene = synthetic.SceneConfig(height=32, width=32, num_frames=3)
  size = f"{test_movi_e.SIZE}x{test_movi_e.SIZE}"
  plans = {
      "synthetic": synthetic.conversion_plan(str(out / "synthetic"), 3, scene, seed=7,
                                             records_per_shard=2),
      "objectron": objectron.conversion_plan(inputs["objectron"], str(out / "objectron")),
      "waymo": waymo.conversion_plan(inputs["waymo"], str(out / "waymo")),
      "movi_e": movi_e.conversion_plan(inputs["tfds"], str(out / "movi_e"), "train", size,
                                       records_per_shard=1, options="zstd:3"),
  }
  pipeline = beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(WORKERS))
  for name, plan in plans.items():
    beam_convert.build(pipeline, plan, str(out / name / "conversion_failures"), label=name)
  start = time.time()
  result = pipeline.run()
  result.wait_until_finish()
  seconds = time.time() - start
  counters = beam_convert.counter_totals(result)
  # 3 synthetic + 3 Objectron (1 bad record) + 1 Waymo (1 broken segment) + 2 MOVi-E videos.
  assert counters["converted_videos"] == 3 + 2 + 1 + 1 + 2, (counters, seconds)
  assert counters["failed_videos"] == 1 + 1  # the bad Objectron record, the broken segment
  assert counters.get("failed_inputs", 0) == 0
  failures = "".join(open(p).read() for p in glob.glob(str(out / "*" / "conversion_failures*")))
  assert "book-00001-of-00002#1" in failures and "not an Objectron record" in failures
  assert "video\t0000_broken_segment/FRONT" in failures and "WaymoFormatError" in failures

  # The single-process CLIs on the same inputs.
  synthetic.main(["--out_dir", str(cli / "synthetic"), "--num_videos", "3", "--resolution", "32",
                  "--num_frames", "3", "--seed", "7", "--records_per_shard", "2"])
  _assert_same_files(sorted(glob.glob(str(cli / "synthetic" / "train.array_record-*"))),
                     str(out / "synthetic"))
  objectron.main(["--input", inputs["objectron"][0], "--out_dir", str(cli / "objectron")])
  _assert_same_files(glob.glob(str(cli / "objectron" / "*.array_record")),
                     str(out / "objectron"))
  # The CLI stops at the bad record (naming it); Beam wrote the good one of that shard.
  with pytest.raises(RuntimeError, match=r"book-00001-of-00002#1"):
    objectron.main(["--input", inputs["objectron"][1], "--out_dir", str(cli / "objectron")])
  (landscape,) = video_record.read_array_record(str(out / "objectron" /
                                                    "book-00001-of-00002.array_record"))
  assert landscape["attributes"]["objectron_orientation"] == "landscape"
  waymo.main(["--input_dir", inputs["waymo"], "--out_dir", str(cli / "waymo"), "--segments",
              test_waymo.SEGMENT])
  (beam_waymo,) = video_record.read_array_record(glob.glob(str(out / "waymo" / "train.*"))[0])
  (cli_waymo,) = video_record.read_array_record(glob.glob(str(cli / "waymo" / "train.*"))[0])
  for name in video_record.ARRAY_FIELDS:
    np.testing.assert_array_equal(beam_waymo[name], cli_waymo[name], err_msg=name)
  assert beam_waymo["frames"] == cli_waymo["frames"]
  movi_e.main(["--tfds_dir", inputs["tfds"], "--out_dir", str(cli / "movi_e"), "--split",
               "train", "--config", size, "--records_per_shard", "1"])
  _assert_same_files(sorted(glob.glob(str(cli / "movi_e" / "train.array_record-*"))),
                     str(out / "movi_e"))


def test_cli_entry_point_and_failed_inputs(tmp_path):
  counters = beam_convert.main(["synthetic", "--out_dir", str(tmp_path), "--num_videos", "2",
                                "--resolution", "32", "--num_frames", "2",
                                "--records_per_shard", "1", "--options", "zstd:1"])
  assert counters["converted_videos"] == 2 and counters["written_shards"] == 2
  assert [r["video_id"] for r in video_record.read_array_record(
      str(tmp_path / "train.array_record-00001-of-00002"))] == [b"synthetic_0_000001"]

  plan = dataset_conversion.ConversionPlan(
      (dataset_conversion.Shard(str(tmp_path / "x" / "a.array_record"), ("bad", "worse")),),
      _explode)
  counters = beam_convert.run(plan, failures_prefix=str(tmp_path / "x" / "failures"))
  assert counters["failed_inputs"] == 1 and counters["failed_videos"] == 1
  assert counters["converted_videos"] == 0
  failures = open(glob.glob(str(tmp_path / "x" / "failures*"))[0]).read()
  assert "input\tbad" in failures and "disk on fire" in failures
  assert "video\tworse/0" in failures and "no frames" in failures


def _explode(item):
  """A conversion whose input "bad" cannot be read and whose "worse" has a broken video."""
  if item == "bad":
    raise OSError("disk on fire")

  def broken():
    raise ValueError("no frames")
  yield dataset_conversion.guarded(f"{item}/0", broken)
