"""Synthetic MOVi-E-schema generator: ray casting, determinism, masks vs 3D boxes, reader parity; the toy
3D world's depth, rotation and size variation."""
import dataclasses
import importlib

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


# ------------------------------------------------------------------------------------------------
# The toy 3D world (configs/synthetic_3d.py) and the demo's world (configs/synthetic.py).

# Measured at 64 px on videos 0-23 of seed 0 (the figures the assertions leave room under):
# 3D world: apparent size max / min within a video median 2.51x, 90% of the 62 objects >= 2x
# (range 1.63-7.0x); a video's rotation changes median 72% (10th percentile 47%) of an object's
# pixels; object sizes (cube root of the box volume) 90th / 10th percentile 2.25x, largest /
# smallest within a scene median 1.44x. Demo world (configs/synthetic.py): size ratio median
# 1.24x; rotation changes median 65% (10th percentile 35%); sizes 1.83x / 1.34x.
MIN_SIZE_RATIO = 2.0  # apparent size max / min within a video ...
MIN_FRACTION_2X = 0.75  # ... reached by at least this fraction of the objects.
MIN_ROTATION_CHANGE = 0.3  # changed fraction of an object's pixels, first -> last rotation.
DIFF_THRESHOLD = 0.1  # a pixel changed: max over RGB of |difference| in [0, 1] above this
# (edit_fidelity's default localisation threshold).
NUM_VIDEOS = 24


def _world(name: str, resolution: int = 64) -> synthetic.SceneConfig:
  """The SceneConfig a demo config's data are rendered with (as neural_assets.demo renders)."""
  from data_pipelines import synthetic_edits  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"configs.{name}").get_config()
  config.data.resolution = (resolution, resolution)
  return synthetic_edits.scene_config_for(config)


def _apparent_size_ratios(seed: int, index: int, config: synthetic.SceneConfig) -> list[float]:
  """Per object visible in >= 2 frames: max / min over those frames of its apparent size
  (bounding-sphere radius / camera depth of its centre: its image size under a pinhole)."""
  example = synthetic.generate_example(seed, index, config)
  visible = example["instances"]["visibility"] > 0  # [K, T]
  depth = np.stack([
      geometry.transform_points(geometry.invert_pose(s.cam_to_world), s.centers)[:, 2]
      for s in (synthetic.state_at(seed, index, f, config) for f in range(config.num_frames))],
                   axis=1)  # [K, T]
  assert (depth > 0).all()  # Every object stays in front of the camera.
  # The radius is constant in a video, so the size ratio is the inverse depth ratio.
  return [float(d.max() / d.min()) for d, v in zip(depth, visible) if v.sum() >= 2
          for d in [d[v]]]


def _rotation_changes(seed: int, index: int, config: synthetic.SceneConfig,
                      min_pixels: int = 30) -> list[float]:
  """Per object with >= min_pixels visible: the fraction of its pixels (union of its masks) that
  change when its rotation at the last frame is replaced by its rotation at the first frame,
  everything else as at the last frame."""
  first = synthetic.state_at(seed, index, 0, config)
  last = synthetic.state_at(seed, index, config.num_frames - 1, config)
  turned = synthetic.render_state(last, config)
  unturned = synthetic.render_state(last.replace(rotations=first.rotations), config)
  changed = np.abs(turned["rgb"].astype(np.float32)
                   - unturned["rgb"].astype(np.float32)).max(-1) / 255.0 > DIFF_THRESHOLD
  out = []
  for k in range(last.num_objects):
    a, b = turned["masks"][k], unturned["masks"][k]
    if min(a.sum(), b.sum()) >= min_pixels:
      out.append(float(changed[a | b].mean()))
  return out


def test_3d_world_apparent_size_varies_at_least_2x_within_videos():
  config = _world("synthetic_3d")
  ratios = np.concatenate([_apparent_size_ratios(0, i, config) for i in range(NUM_VIDEOS)])
  assert ratios.size >= 2 * NUM_VIDEOS
  assert np.median(ratios) >= 2.3, np.median(ratios)
  assert np.mean(ratios >= MIN_SIZE_RATIO) >= MIN_FRACTION_2X, np.mean(ratios >= MIN_SIZE_RATIO)
  # The demo's world keeps its nearly still camera: depth barely changes there.
  demo = np.concatenate([_apparent_size_ratios(0, i, _world("synthetic")) for i in range(8)])
  assert np.median(demo) < 1.5


@pytest.mark.parametrize("name,median", [("synthetic_3d", 0.6), ("synthetic", 0.5)])
def test_rotation_within_videos_changes_the_objects_pixels(name, median):
  config = _world(name)
  changes = np.concatenate([_rotation_changes(0, i, config) for i in range(NUM_VIDEOS)])
  assert changes.size >= NUM_VIDEOS
  assert np.median(changes) >= median, np.median(changes)
  if name == "synthetic_3d":  # Spins of >= 11 degrees per frame: every object turns visibly.
    assert np.percentile(changes, 10) >= MIN_ROTATION_CHANGE, np.percentile(changes, 10)


def test_3d_world_sizes_vary_across_objects_and_objects_are_elongated():
  config = _world("synthetic_3d")
  states = [synthetic.state_at(0, i, 0, config) for i in range(NUM_VIDEOS)]
  size = np.concatenate([np.cbrt(np.prod(s.sizes, axis=-1)) for s in states])  # [sum K]
  assert np.percentile(size, 90) / np.percentile(size, 10) >= 2.0
  within = [np.ptp(np.log(np.cbrt(np.prod(s.sizes, -1)))) for s in states if s.num_objects > 1]
  assert np.exp(np.median(within)) >= 1.3  # Also within a scene.
  sizes = np.concatenate([s.sizes for s in states])
  assert (sizes[:, 0] >= 1.5 * config.min_size * config.scale_range[0] - 1e-9).all()
  assert (sizes[:, 0] / sizes[:, 1:].max(-1) > 1.0).mean() >= 0.75  # The marked axis is long.


def test_front_pattern_marks_the_positive_x_end_in_a_contrasting_colour():
  p = np.array([[0.9, 0.0, 0.0], [0.41, 0.5, -0.5], [0.39, 0.0, 0.0], [-0.9, 0.2, 0.9]])
  np.testing.assert_array_equal(synthetic._pattern("front", p, 2.0, 0.4),  # pylint: disable=protected-access
                                [True, True, False, False])
  config = _world("synthetic_3d")
  for i in range(4):
    state = synthetic.state_at(0, i, 0, config)
    assert (state.patterns == synthetic.PATTERNS.index("front")).all()
    assert (np.abs(state.colors[:, 1] - state.colors[:, 0]).max(-1) >= 0.5).all()


def test_motion_knobs_do_what_they_say_and_are_checked():
  base = synthetic.SceneConfig(height=32, width=32, num_frames=4)
  knobs = dataclasses.replace(base, aspect_range=(1.5, 2.0), scale_range=(0.5, 2.0),
                              min_spin=0.1, depth_speed=0.3, dolly_distance=(4.0, 9.0))
  for i in range(3):
    a = synthetic.sample_scene(np.random.default_rng([0, i]), base)
    b = synthetic.sample_scene(np.random.default_rng([0, i]), knobs)
    # Their draws come from a spawned stream: what is drawn before the (size-dependent)
    # placement is the same.
    for name in ("shapes", "dynamic"):
      np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert (np.abs(b["spins"]) >= 0.1).all() and (np.abs(b["spins"]) <= base.max_spin).all()
    assert not np.array_equal(a["sizes"], b["sizes"])
    # The dolly: the camera's distance to its look-at point goes from one end to the other.
    dist = [np.linalg.norm(synthetic.scene_at(b, f)["cam_to_world"][:3, 3] - b["target"])
            for f in (0, 3)]
    np.testing.assert_allclose(sorted(dist), [4.0, 9.0], rtol=1e-9)
  for bad in (dict(aspect_range=(0.0, 1.0)), dict(min_spin=0.5, max_spin=0.25),
              dict(dolly_distance=(5.0, 4.0)), dict(depth_speed=-1.0)):
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
      synthetic.generate_example(0, 0, dataclasses.replace(base, **bad))


def test_3d_preset_config_is_complete_and_fits_its_budget():
  config = importlib.import_module("configs.synthetic_3d").get_config()
  default = importlib.import_module("configs.synthetic").get_config()
  assert config.model.to_dict() == default.model.to_dict()  # Same model, other world.
  assert config.demo.minutes <= 55 and config.demo.fidelity_scenes >= 32
  # Training pairs may copy (gap 0); the held-out pairs the report scores never do.
  assert config.data.min_gap == 0 < config.data.eval_min_gap <= config.data.max_gap
  # A step budget whose learning rate is at its peak until the anneal and reaches 0 at its end.
  from neural_assets.training import optimizer  # pylint: disable=g-import-not-at-top
  lr = optimizer.make_schedules(config.optimizer, config.training.num_train_steps)["new"]
  end, decay = config.training.num_train_steps, config.optimizer.decay_steps
  np.testing.assert_allclose([float(lr(s)) for s in (end - decay, (2 * end - decay) // 2, end)],
                             [config.optimizer.new_layers_lr, config.optimizer.new_layers_lr / 2,
                              0.0], atol=1e-9)
  assert default.demo.minutes + 3 <= 15
  config.lock()
  with pytest.raises(AttributeError):
    config.training.num_train_step = 5


def test_demo_preset_flag_chooses_the_config_file_and_workdir():
  from neural_assets.demo import run  # pylint: disable=g-import-not-at-top
  argv = run.preset_argv(["demo", "--preset=3d", "--minutes=5"])
  assert argv == ["demo", f"--config={run.PRESETS['3d']}", "--preset=3d", "--minutes=5"]
  assert run.preset_argv(["demo", "--preset", "3d"])[1].endswith("configs/synthetic_3d.py")
  assert run.preset_argv(["demo", "--minutes=5"]) == ["demo", "--minutes=5"]
  assert run.preset_argv(["demo", "--config=c.py", "--preset=default"]) == [
      "demo", "--config=c.py", "--preset=default"]
  with pytest.raises(ValueError, match="drop --config"):
    run.preset_argv(["demo", "--config=c.py", "--preset=3d"])
  with pytest.raises(ValueError, match="Unknown --preset"):
    run.preset_argv(["demo", "--preset=4d"])
  assert run.default_workdir("3d").endswith("demo_3d") and run.default_workdir(
      "default").endswith("demo")
  config = importlib.import_module("configs.synthetic_3d").get_config()
  assert run.demo_defaults(config) == {"minutes": config.demo.minutes, "fidelity_scenes": 32}
