"""Synthetic MOVi-E-schema generator: ray casting, determinism, masks vs 3D boxes, reader parity."""
import numpy as np
import pytest

from data_pipelines import movi_e
from data_pipelines import synthetic
from data_pipelines import video_record
from neural_assets import geometry

CONFIG = synthetic.SceneConfig(height=48, width=64, num_frames=4)
_intersect = synthetic._intersect_unit  # pylint: disable=protected-access


@pytest.mark.parametrize("shape", synthetic.SHAPES)
def test_unit_primitive_intersections(shape):
  # Rays along +z from z = -5 and along +x from x = -5 hit every unit primitive at t = 4.
  d = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
  t, normal = _intersect(shape, np.array([0.0, 0.0, -5.0]), d)
  np.testing.assert_allclose(t, 4.0)
  np.testing.assert_allclose(normal[0] / np.linalg.norm(normal[0]), [0, 0, -1], atol=1e-9)
  t, normal = _intersect(shape, np.array([-5.0, 0.0, 0.0]), np.array([[1.0, 0.0, 0.0]]))
  np.testing.assert_allclose(t, 4.0)
  np.testing.assert_allclose(normal[0] / np.linalg.norm(normal[0]), [-1, 0, 0], atol=1e-9)
  # A ray passing outside the unit box misses every primitive.
  t, _ = _intersect(shape, np.array([0.0, 1.5, -5.0]), d[:1])
  assert np.isinf(t[0])


def test_deterministic_per_seed_and_index():
  a = synthetic.generate_example(0, 3, CONFIG)
  b = synthetic.generate_example(0, 3, CONFIG)
  c = synthetic.generate_example(1, 3, CONFIG)
  np.testing.assert_array_equal(a["video"], b["video"])
  np.testing.assert_array_equal(a["segmentations"], b["segmentations"])
  np.testing.assert_array_equal(a["instances"]["bboxes_3d"], b["instances"]["bboxes_3d"])
  assert not np.array_equal(a["video"], c["video"])
  assert a["video"].shape == (4, 48, 64, 3) and a["video"].dtype == np.uint8
  assert a["depth"].dtype == np.uint16 and a["segmentations"].dtype == np.uint8


def test_objects_visible_and_moving():
  seen, total = 0, 0
  for index in range(4):
    ex = synthetic.generate_example(0, index, CONFIG)
    vis = ex["instances"]["visibility"]  # [K, T] pixel counts
    k = vis.shape[0]
    assert CONFIG.min_objects <= k <= CONFIG.max_objects
    assert (vis > 0).any(axis=0).all()  # some object in every frame
    seen += int((vis[:, 0] > 0).sum())
    total += k
    np.testing.assert_array_equal(vis, [[(ex["segmentations"][t, ..., 0] == i + 1).sum()
                                         for t in range(CONFIG.num_frames)] for i in range(k)])
    assert not np.array_equal(ex["video"][0], ex["video"][-1])  # camera / objects move
    assert not np.allclose(ex["camera"]["positions"][0], ex["camera"]["positions"][-1]) or \
        not np.allclose(ex["instances"]["positions"][:, 0], ex["instances"]["positions"][:, -1])
    assert len(np.unique(ex["video"][0].reshape(-1, 3), axis=0)) > 20  # textured, shaded
  assert seen >= 0.7 * total


def test_masks_inside_projected_boxes_and_depth_consistent():
  for index in range(3):
    ex = synthetic.generate_example(0, index, CONFIG)
    record = movi_e.example_to_video_record(ex)
    video_record.validate(record)
    uvd = geometry.project_box(record["box_corners_world"], record["world_to_camera"][:, None],
                               record["intrinsics"][:, None])
    valid, _ = geometry.box_validity(uvd)
    proj = geometry.box2d_from_corners(uvd)
    vis = record["visible"]
    assert vis.any()
    assert valid[vis].all()
    mask = record["boxes_2d"][vis]
    tol = 1.0 / min(CONFIG.height, CONFIG.width)
    # The projected 3D box contains the mask's box (up to the pixel grid).
    assert np.all(proj[vis][:, :2] <= mask[:, :2] + tol)
    assert np.all(proj[vis][:, 2:] >= mask[:, 2:] - tol)
    # ... and is not wildly larger than it (objects fill a good part of their box).
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # pylint: disable=g-long-lambda
    big = vis & (ex["instances"]["visibility"].T > 50)
    assert np.median(area(record["boxes_2d"][big]) / area(proj[big])) > 0.3
    # Depth is the distance to the camera centre: between the object's nearest possible z-depth
    # and its farthest corner distance.
    lo, hi = ex["metadata"]["depth_range"]
    depth = ex["depth"][..., 0] / 65535.0 * (hi - lo) + lo
    cam_pos = ex["camera"]["positions"]
    for t in range(CONFIG.num_frames):
      for k in np.nonzero(vis[t])[0]:
        d = depth[t][ex["segmentations"][t, ..., 0] == k + 1]
        corner_dist = np.linalg.norm(record["box_corners_world"][t, k] - cam_pos[t], axis=-1)
        scale = (hi - lo) / 65535.0
        assert d.max() <= corner_dist.max() + scale
        assert d.min() >= uvd[t, k, :, 2].min() - scale


def test_tfds_round_trip_matches_direct_conversion(tmp_path):
  config = synthetic.SceneConfig(height=32, width=32, num_frames=4)
  examples = [synthetic.generate_example(5, i, config) for i in range(2)]
  movi_e.write_tfds(str(tmp_path), {"train": examples}, 32, 32, 4)
  read = list(movi_e.read_tfds(str(tmp_path), "train", config="32x32"))
  assert len(read) == 2
  for ex, direct in zip(read, examples):
    got, want = movi_e.example_to_video_record(ex), movi_e.example_to_video_record(direct)
    assert got["frames"] == want["frames"]
    for name in video_record.ARRAY_FIELDS:
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_cli_writes_video_records(tmp_path):
  synthetic.main(["--out_dir", str(tmp_path), "--num_videos", "3", "--resolution", "32",
                  "--num_frames", "3", "--seed", "7", "--records_per_shard", "2"])
  shards = sorted(tmp_path.iterdir())
  assert [p.name for p in shards] == ["train.array_record-00000-of-00002",
                                      "train.array_record-00001-of-00002"]
  records = video_record.read_array_record(str(shards[0]))
  assert len(records) == 2
  assert records[1]["video_id"] == b"synthetic_7_000001"
  assert video_record.validate(records[1])[0] == 3


def test_cli_help_documents_every_flag_with_its_default_and_refuses_bad_counts(capsys):
  synthetic_cli = synthetic
  with pytest.raises(SystemExit) as exit_info:
    synthetic_cli.main(["--help"])
  assert exit_info.value.code == 0
  text = " ".join(capsys.readouterr().out.split())
  for flag, default in (("--num_videos", "16"), ("--resolution", "128"), ("--num_frames", "8"),
                        ("--seed", "0"), ("--split", "train"), ("--min_objects", "3"),
                        ("--max_objects", "6"), ("--records_per_shard", "256"),
                        ("--image_format", "png"), ("--num_workers", "1"),
                        ("--tfds_dir", "None"), ("--out_dir", "None")):
    after = text.split(f" {flag} ")[-1]  # The flag's help paragraph, onwards.
    assert after.split("(default: ")[1].split(")")[0] == default, flag
  for argv, message in ((["--num_videos", "-3"],
                         "argument --num_videos: -3 is not an integer >= 1"),
                        (["--num_frames", "0"], "argument --num_frames: 0 is not an integer >= 1"),
                        (["--min_objects", "4", "--max_objects", "2"],
                         "--max_objects=2 is below --min_objects=4")):
    with pytest.raises(SystemExit) as exit_info:
      synthetic_cli.main(["--out_dir", "/nonexistent/never_written", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
