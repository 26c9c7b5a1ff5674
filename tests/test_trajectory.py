"""Edit trajectories: the spec grammar, the video writer, rendering with a tiny model (shared vs
per-frame noise), the edit CLI's --trajectory and the trajectory-fidelity scores."""
import json
import os

import jax
import numpy as np
import pytest

from neural_assets import edit_cli
from neural_assets import editing
from neural_assets.diffusion import ddim
from neural_assets.editing import trajectory
from tests import editing_fixtures as fx


@pytest.fixture(scope="module")
def scene():
  return fx.make_scene()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return fx.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_run")))


@pytest.fixture(scope="module")
def bundle(workdir):
  return editing.load_model_for_inference(workdir)


# ------------------------------------------------------------------------------------------------
# The grammar.


def test_linear_path_gives_n_frames_with_both_ends():
  parsed = trajectory.parse_trajectory("rotate 1 yaw=0:360:24")
  assert parsed.num_frames == 24 and len(parsed.ops) == 24
  np.testing.assert_allclose(parsed.paths["0:yaw"], np.arange(24) * 360.0 / 23)
  assert parsed.ops[0] == "rotate 1 yaw=0.0" and parsed.ops[-1] == "rotate 1 yaw=360.0"


def test_several_keys_and_ops_share_one_time_line():
  parsed = trajectory.parse_trajectory(
      "translate 0 x=0:1:5 z=2:0 frame=camera; camera orbit=-10:10")
  assert parsed.num_frames == 5
  np.testing.assert_allclose(parsed.paths["0:x"], [0, 0.25, 0.5, 0.75, 1.0])
  np.testing.assert_allclose(parsed.paths["0:z"], [2.0, 1.5, 1.0, 0.5, 0.0])
  np.testing.assert_allclose(parsed.paths["1:orbit"], [-10, -5, 0, 5, 10])
  assert parsed.ops[1] == "translate 0 x=0.25 z=1.5 frame=camera; camera orbit=-5.0"
  # rescale's positional factor can be a path.
  np.testing.assert_allclose(trajectory.parse_trajectory("rescale 2 1:2:3").paths["0:factor"],
                             [1.0, 1.5, 2.0])


def test_waypoints_pass_through_each_point_without_overshoot():
  parsed = trajectory.parse_trajectory("translate 0 x=0,0.6,1:9 z=0,0.8,0")
  x, z = parsed.paths["0:x"], parsed.paths["0:z"]
  np.testing.assert_allclose([x[0], x[4], x[8]], [0.0, 0.6, 1.0], atol=1e-12)
  np.testing.assert_allclose([z[0], z[4], z[8]], [0.0, 0.8, 0.0], atol=1e-12)
  assert np.all(np.diff(x) > 0)  # Monotone waypoints stay monotone (PCHIP).
  assert z.max() == pytest.approx(0.8) and z.min() == pytest.approx(0.0)  # No overshoot.
  assert 0.0 < z[2] < 0.8 and z[2] == pytest.approx(z[6])  # A smooth, symmetric arc.


@pytest.mark.parametrize("spec, message", [
    ("", "Empty"),
    ("rotate 1 yaw=90", "has no path"),
    ("rotate 1 yaw=0:360", "give the frame count once"),
    ("rotate 1 yaw=0:10:4 pitch=0:10:5", r"different frame counts \[4, 5\]"),
    ("rotate 1:2 yaw=0:10:4", "an object index cannot"),
    ("rotate 1 yaw=0:abc:4", "'abc' is not a number"),
    ("rotate 1 yaw=0:nan:4", "'nan' is not a number"),
    ("rotate 1 yaw=0:10:1", "1 frames; want 2..1000"),
    ("rotate 1 yaw=0:10:100000", "100000 frames"),
    ("rotate 1 yaw=0:10:2.5", "not a whole number"),
    ("rotate 1 yaw=0::4", "empty part"),
    ("rotate 1 yaw=0:1:2:3", "is not A:B, A:B:N"),
    ("rotate 1 yaw=0,1:2,3", "one ':N' at the end"),
    ("rotate 1 yaw=0:1:4;", "operation 2 is empty"),
])
def test_refused_specs_say_why(spec, message):
  with pytest.raises(trajectory.TrajectoryError, match=message):
    trajectory.parse_trajectory(spec)


def test_build_applies_each_frame_to_the_start_scene(scene):
  edits = trajectory.build_trajectory(scene, "rotate 1 yaw=0:90:4")
  assert len(edits) == 4 and all(e.source is scene for e in edits)
  for k, edit in enumerate(edits):
    want = editing.rotate(scene, 1, yaw=30.0 * k)
    np.testing.assert_allclose(edit.assets[1].rotation, want.assets[1].rotation, atol=1e-6)
    np.testing.assert_allclose(edit.assets[0].center, scene.centers[0])
  assert edits[2].name == "rotate 1 yaw=0:90:4 [frame 3/4]"
  # On top of an edit: the start's changes stay in every frame.
  moved = editing.translate(scene, 0, (0.3, 0.0, 0.0), "camera")
  on_top = trajectory.build_trajectory(moved, "camera orbit=0:10:3")
  np.testing.assert_allclose(on_top[0].assets[0].center, moved.assets[0].center)
  np.testing.assert_allclose(on_top[2].world_to_camera,
                             editing.orbit_camera(moved, 10.0).world_to_camera, atol=1e-6)


def test_a_refused_frame_is_named_and_force_applies_it(scene):
  with pytest.raises(trajectory.TrajectoryError,
                     match=r"frame 2 of 3 .*object 0 would be behind the camera") as info:
    trajectory.build_trajectory(scene, "translate 0 z=0:-50:3")
  assert "force=1" in str(info.value)
  forced = trajectory.build_trajectory(scene, "translate 0 z=0:-50:3 force=1")
  assert forced[0].active()[0] and not forced[1].active()[0] and not forced[2].active()[0]
  with pytest.raises(trajectory.TrajectoryError, match="No object 9"):
    trajectory.build_trajectory(scene, "rotate 9 yaw=0:10:2")
  with pytest.raises(trajectory.TrajectoryError, match="unknown key"):
    trajectory.build_trajectory(scene, "rotate 0 spin=0:10:2")


# ------------------------------------------------------------------------------------------------
# The writer.


def _frames(num_frames=5, height=16, width=24, seed=0):
  """Smooth, distinct frames (a moving gradient): lossy MP4 keeps them close."""
  yy, xx = np.mgrid[0:height, 0:width]
  frames = [np.stack([(xx * 10 + 20 * k) % 256, yy * 12, np.full_like(xx, 40 * k)], -1)
            for k in range(num_frames)]
  return np.asarray(frames, np.uint8)


@pytest.mark.parametrize("kind", trajectory.VIDEO_FORMATS)
def test_written_video_decodes_to_the_frames(kind, tmp_path):
  frames = _frames()
  path = trajectory.write_video(frames, str(tmp_path / f"motion.{kind}"), fps=10.0)
  back = trajectory.read_video(path)
  assert back.shape == frames.shape
  error = np.abs(back.astype(int) - frames.astype(int)).mean()
  if kind == "webp":
    np.testing.assert_array_equal(back, frames)  # Written lossless.
  else:
    assert error < 8.0, error  # H.264 is lossy; GIF quantises to 256 colours per frame.
  # Upscaled (nearest) by an integer factor.
  big = trajectory.read_video(trajectory.write_video(frames, str(tmp_path / f"big.{kind}"), 10.0,
                                                     scale=2))
  assert big.shape == (5, 32, 48, 3)


def test_writer_timing_and_refusals(tmp_path):
  import imageio.v3 as iio
  from PIL import Image
  frames = _frames()
  mp4 = trajectory.write_video(frames, str(tmp_path / "a.mp4"), fps=8.0)
  meta = iio.immeta(mp4, plugin="FFMPEG")
  assert meta["fps"] == 8.0 and meta["codec"] == "h264"
  assert meta["duration"] == pytest.approx(5 / 8.0, abs=0.01)
  gif = Image.open(trajectory.write_video(frames, str(tmp_path / "a.gif"), fps=10.0))
  assert gif.n_frames == 5 and gif.info["duration"] == 100 and gif.info["loop"] == 0
  with pytest.raises(ValueError, match="even height and width"):
    trajectory.write_video(frames[:, :15], str(tmp_path / "odd.mp4"))
  with pytest.raises(ValueError, match="unknown video format 'avi'"):
    trajectory.write_video(frames, str(tmp_path / "a.avi"))
  with pytest.raises(ValueError, match=r"\[F, H, W, 3\] uint8"):
    trajectory.write_video(frames.astype(np.float32), str(tmp_path / "f.gif"))
  with pytest.raises(ValueError, match="fps"):
    trajectory.write_video(frames, str(tmp_path / "z.gif"), fps=0.0)
  paths = trajectory.write_videos(frames, str(tmp_path / "both"), ("gif", "webp"), 10.0)
  assert [os.path.basename(p) for p in paths] == ["both.gif", "both.webp"]


# ------------------------------------------------------------------------------------------------
# Rendering.


def _spy_initial_noise(monkeypatch):
  """Records the initial latents [B, h, w, c] of every sampler call."""
  calls = []
  original = ddim.DDIMSampler.sample

  def spy(self, denoise_fn, params, cond, key, shape, uncond=None, initial_latents=None):
    calls.append(np.asarray(initial_latents))
    return original(self, denoise_fn, params, cond, key, shape, uncond, initial_latents)

  monkeypatch.setattr(ddim.DDIMSampler, "sample", spy)
  return calls


def test_render_frames_match_the_still_renders(bundle, scene):
  edits = trajectory.build_trajectory(scene, "rotate 1 yaw=0:90:3")
  frames = trajectory.render_frames(bundle, edits, seed=3, num_steps=2, batch_size=2)
  assert frames.shape == (3, fx.RESOLUTION, fx.RESOLUTION, 3) and frames.dtype == np.uint8
  stills = editing.render(bundle, scene, *edits, seed=3, num_steps=2)[:, 0]
  # Same noise, same conditioning: the same images (up to XLA's batch-size-dependent rounding).
  assert np.abs(frames.astype(int) - stills.astype(int)).max() <= 1
  # The conditioning changes along the path (the tiny random model responds weakly, but does).
  assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[0], frames[2])


def test_shared_noise_shares_the_initial_latents(bundle, scene, monkeypatch):
  calls = _spy_initial_noise(monkeypatch)
  # Four frames of the same (no-op) edit: only the noise can tell them apart.
  edits = trajectory.build_trajectory(scene, "rotate 0 yaw=0:0:4")
  shared = trajectory.render_frames(bundle, edits, seed=5, num_steps=2, batch_size=3)
  latents = np.concatenate(calls)
  assert len(calls) == 2 and latents.shape[0] == 6  # 3 + (1 padded to 3).
  for row in latents[1:]:
    np.testing.assert_array_equal(row, latents[0])
  for frame in shared[1:]:
    np.testing.assert_array_equal(frame, shared[0])
  calls.clear()
  independent = trajectory.render_frames(bundle, edits, seed=5, num_steps=2, shared_noise=False)
  latents = np.concatenate(calls)
  assert latents.shape[0] == 4
  # Frame k's x_T is that of seed 5 + k (render's noise: fold_in(split(key(seed))[0], 0)).
  for k in range(4):
    key = jax.random.fold_in(jax.random.split(jax.random.PRNGKey(5 + k))[0], 0)
    want = jax.random.normal(key, latents.shape[1:], np.float32)
    np.testing.assert_array_equal(latents[k], np.asarray(want))
  assert not np.array_equal(latents[0], latents[1])
  assert np.abs(independent[0].astype(int) - independent[1].astype(int)).mean() > 1.0
  np.testing.assert_array_equal(independent[0], shared[0])  # Frame 0: the same seed.


def test_render_frames_refuses_mixed_scenes(bundle, scene):
  other = fx.make_scene(frame=1)
  edits = [editing.as_edit(scene), editing.as_edit(other)]
  with pytest.raises(editing.EditError, match="another scene"):
    trajectory.render_frames(bundle, edits, num_steps=1)
  with pytest.raises(trajectory.TrajectoryError, match="at least one frame"):
    trajectory.render_frames(bundle, [], num_steps=1)


# ------------------------------------------------------------------------------------------------
# The edit CLI.


def test_cli_writes_each_trajectory_in_each_format(workdir, scene, tmp_path, capsys):
  scene_path = str(tmp_path / "a.npz")
  scene.save(scene_path)
  out = tmp_path / "out"
  argv = ["--checkpoint", workdir, "--scene", scene_path, "--out_dir", str(out),
          "--num_steps", "2", "--seed", "3", "--fps", "6", "--format", "mp4,gif,webp",
          "--video_scale", "2", "--batch_size", "2",
          "--trajectory", "rotate 1 yaw=0:90:3", "--trajectory", "camera orbit=0,5,-5:4"]
  assert edit_cli.main(argv) == 0
  names = sorted(os.listdir(out))
  stems = ["trajectory_00_rotate_1_yaw=0_90_3", "trajectory_01_camera_orbit=0_5_-5_4"]
  assert names == sorted(f"{s}.{k}" for s in stems for k in ("mp4", "gif", "webp"))
  size = 2 * fx.RESOLUTION
  for stem, count in zip(stems, (3, 4)):
    webp = trajectory.read_video(str(out / f"{stem}.webp"))
    assert webp.shape == (count, size, size, 3)
    assert trajectory.read_video(str(out / f"{stem}.mp4")).shape == (count, size, size, 3)
  # The lossless WebP holds exactly the frames the library renders for the same settings.
  bundle = editing.load_model_for_inference(workdir)
  want = trajectory.render_frames(bundle, trajectory.build_trajectory(
      editing.Scene.load(scene_path), "rotate 1 yaw=0:90:3"), seed=3, num_steps=2, batch_size=2)
  np.testing.assert_array_equal(trajectory.read_video(str(out / f"{stems[0]}.webp")),
                                trajectory.upscale(want, 2))
  assert "Wrote 3 frames of 'rotate 1 yaw=0:90:3'" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    ([], "at least one --op or --trajectory"),
    (["--trajectory", "rotate 0 yaw=0:90"], "give the frame count once"),
    (["--trajectory", "translate 0 z=0:-50:3"], "frame 2 of 3"),
    (["--trajectory", "rotate 0 yaw=0:9:2", "--format", "avi"], "--format 'avi'"),
    (["--trajectory", "rotate 0 yaw=0:9:2", "--fps", "0"], "--fps"),
])
def test_cli_trajectory_errors_exit_before_loading(scene, tmp_path, capsys, extra, message):
  scene_path = str(tmp_path / "a.npz")
  scene.save(scene_path)
  with pytest.raises(SystemExit) as info:
    edit_cli.main(["--checkpoint", str(tmp_path / "missing"), "--scene", scene_path,
                   "--out_dir", str(tmp_path / "out")] + extra)
  assert info.value.code == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------
# Trajectory fidelity against the generator's ground truth.

FID_RES = 48


@pytest.fixture(scope="module")
def fidelity_setup():
  from data_pipelines import synthetic
  from data_pipelines import synthetic_edits
  config = synthetic.SceneConfig(height=FID_RES, width=FID_RES, num_frames=4)
  (held,) = synthetic_edits.heldout_scenes(config, synthetic_edits.DEFAULT_SEED, 1,
                                           (FID_RES, FID_RES), 6, frame=1)
  return held, config


def _ground_truth(held, config):
  from data_pipelines import synthetic_edits
  return synthetic_edits.ground_truth_renderer(held, [], config)


def _truth_renderer(held, config):
  from data_pipelines import synthetic_edits
  states = {id(held.scene): held.state}

  def perfect(scene, edits, shared_noise):
    del scene, shared_noise
    return np.stack([synthetic_edits.render_ground_truth(e, states, config, (FID_RES, FID_RES))[0]
                     for e in edits])

  return perfect


def test_flicker_counts_only_the_change_outside_the_regions():
  from neural_assets.evaluation import trajectory_fidelity as tf
  frames = np.zeros((3, 10, 10, 3), np.uint8)
  frames[1, :5] = 51  # Frame 1 changes the top half (0.2 in [0, 1])...
  frames[2] = frames[1]
  frames[2, 6:, 6:] = 255  # ... frame 2 changes only its bottom-right corner (its region).
  top = np.array([0.0, 0.0, 0.5, 1.0], np.float32)
  corner = np.array([0.6, 0.6, 1.0, 1.0], np.float32)
  np.testing.assert_allclose(tf.flicker(frames, [None, None, corner]), [0.1, 0.0])
  np.testing.assert_allclose(tf.flicker(frames, [top, None, corner]), [0.0, 0.0])
  whole = np.array([0.0, 0.0, 1.0, 1.0], np.float32)
  assert np.isnan(tf.flicker(frames, [whole, whole, None])).tolist() == [True, True]


def test_changed_assets_name_what_moved(scene):
  from neural_assets.evaluation import trajectory_fidelity as tf
  unedited = editing.as_edit(scene)
  assert tf.changed_assets(editing.rotate(scene, 2, yaw=10), unedited) == [2]
  assert tf.changed_assets(editing.duplicate(scene, 1, (0.1, 0, 0)), unedited) == [4]
  assert tf.changed_assets(editing.remove(scene, 3), unedited) == [3]
  assert tf.changed_assets(editing.orbit_camera(scene, 5.0), unedited) == [0, 1, 2, 3]
  assert tf.changed_assets(unedited, unedited) == []


def test_a_perfect_renderer_scores_the_cap_and_no_flicker(fidelity_setup):
  from neural_assets.evaluation import edit_fidelity as ef
  from neural_assets.evaluation import trajectory_fidelity as tf
  held, config = fidelity_setup
  scorer = ef.Scorer(_random_lpips(), crop_size=FID_RES)
  result = tf.score_scene(held.scene, _ground_truth(held, config), 6, _truth_renderer(held, config),
                          scorer, num_frames=4)
  assert set(result["scores"]) == set(tf.TRAJECTORY_TYPES), result["specs"]
  assert result["specs"]["rotate (yaw)"].endswith("yaw=0:270.0:4")
  for name, by_method in result["scores"].items():
    for method in ("model", "model, per-frame noise", "ground truth (ceiling)"):
      row = by_method[method]
      assert row["region/psnr"] == ef.PSNR_CAP and row["image/psnr"] == ef.PSNR_CAP, (name, row)
      assert row["region/lpips"] == 0.0 and row["flicker/excess"] == 0.0, (name, row)
      assert len(row["per_frame"]["region/psnr"]) == 4 and len(row["per_frame"]["flicker"]) == 3
    if not name.startswith("camera"):
      # Nothing but the edited object moves, and it stays inside its region.
      assert by_method["model"]["flicker"] == 0.0, name
    # The frozen source frame does not follow the path.
    assert by_method["source frame"]["region/psnr"] < 60.0, name
  means = tf.aggregate([result])
  assert means["rescale"]["model"]["scenes"] == 1
  assert "| rotate (yaw) | model | 1 | 100.00 |" in tf.format_table(means)


def test_a_flickering_renderer_scores_lower(fidelity_setup):
  from neural_assets.evaluation import edit_fidelity as ef
  from neural_assets.evaluation import trajectory_fidelity as tf
  held, config = fidelity_setup
  perfect = _truth_renderer(held, config)
  rng = np.random.default_rng(0)

  def noisy(scene, edits, shared_noise):  # The truth plus fresh noise in every frame.
    frames = perfect(scene, edits, shared_noise).astype(np.int16)
    return np.clip(frames + rng.integers(-20, 21, frames.shape), 0, 255).astype(np.uint8)

  scorer = ef.Scorer(None, crop_size=FID_RES)
  result = tf.score_scene(held.scene, _ground_truth(held, config), 6, noisy, scorer, num_frames=3,
                          per_frame_noise=False, types=("rotate (yaw)", "camera orbit"))
  for name in ("rotate (yaw)", "camera orbit"):
    row = result["scores"][name]["model"]
    assert 20.0 < row["region/psnr"] < 40.0, row
    # Fresh noise in [-20, 20] per frame: |a - b| of two draws averages ~13 / 255 (less where
    # clipped at 0 / 255); the perfect renderer's excess is exactly 0.
    assert 5.0 / 255.0 < row["flicker/excess"] < 14.0 / 255.0, row
    assert np.isnan(row["region/lpips"])  # No LPIPS function given.
  # An object path: the truth does not change outside the region, so all flicker is excess.
  rotate = result["scores"]["rotate (yaw)"]["model"]
  assert rotate["flicker"] == rotate["flicker/excess"]
  assert "model, per-frame noise" not in result["scores"]["rotate (yaw)"]


def test_trajectory_fidelity_smoke_run(workdir, tmp_path, capsys):
  from benchmarks import trajectory_fidelity as tf_benchmark
  from neural_assets.evaluation import trajectory_fidelity as tf
  assert tf_benchmark.main(["--checkpoint", workdir, "--num_scenes", "1", "--num_frames", "2",
                  "--num_steps", "1", "--lpips_weights", "none", "--out_dir",
                  str(tmp_path)]) == 0
  assert "| trajectory | method |" in capsys.readouterr().out
  saved = json.loads((tmp_path / "trajectory_fidelity.json").read_text())
  report = saved
  assert saved["settings"]["num_frames"] == 2 and saved["checkpoint_step"] == 0
  chosen = [n for n, s in saved["per_scene"][0]["specs"].items() if s is not None]
  assert chosen and set(report["means"]) == set(tf.TRAJECTORY_TYPES)
  for name in chosen:
    model, ceiling = (report["means"][name][m] for m in ("model", "ground truth (ceiling)"))
    assert model["region/psnr"] < ceiling["region/psnr"] == 100.0  # A random model is far off.
    gif = trajectory.read_video(str(tmp_path / f"{tf_benchmark._file_name(name)}.gif"))  # pylint: disable=protected-access
    # Ground truth | model | per-frame noise, side by side, upscaled 2x.
    assert gif.shape == (2, 2 * fx.RESOLUTION, 3 * 2 * fx.RESOLUTION, 3)
  assert "| trajectory | method |" in (tmp_path / "table.md").read_text()


def _random_lpips():
  import jax.numpy as jnp
  from neural_assets.evaluation import lpips
  module = lpips.LPIPS(net="alex", width_divisor=16)
  x = jnp.zeros((1, 64, 64, 3))
  params = module.init(jax.random.key(0), x, x)["params"]
  return lambda a, b: lpips.lpips_distance_unit(module, params, jnp.asarray(a), jnp.asarray(b))


# ------------------------------------------------------------------------------------------------
# The demo report's trajectories.


def test_demo_trajectories_and_their_gifs_in_the_report(bundle, scene, tmp_path):
  from configs import smoke
  from neural_assets import report as report_lib
  from neural_assets.demo import edits as demo_edits
  from neural_assets.evaluation import trajectory_fidelity as tf
  config = smoke.get_config()
  from neural_assets.demo import settings as demo_settings
  assert demo_edits.trajectory_settings(config) == dict(
      frames=demo_settings.DEFAULTS["trajectory_frames"],
      steps=demo_settings.DEFAULTS["trajectory_steps"],
      fps=demo_settings.DEFAULTS["trajectory_fps"])
  config.demo = dict(trajectory_frames=1)
  with pytest.raises(ValueError, match="trajectory_frames must be 0"):
    demo_edits.trajectory_settings(config)
  motions = demo_edits.render_trajectories(bundle, scene, num_frames=2, num_steps=1, seed=0)
  assert motions and set(motions) <= set(tf.TRAJECTORY_TYPES)
  assert set(tf.TRAJECTORY_TYPES) <= set(demo_edits.EDIT_TYPES)  # Each names a demo grid.
  spec, frames = motions["rotate (yaw)"]
  assert spec.endswith(":2") and frames.shape == (2, fx.RESOLUTION, fx.RESOLUTION, 3)
  grid = report_lib.Grid("edit_rotate", "Edit: rotate", frames[0], animation=frames,
                         animation_caption=f"Trajectory {spec}", animation_fps=4.0)
  for embed in (False, True):
    out = tmp_path / f"report_{embed}"
    html = open(report_lib.write_report(str(out), grids=[grid], metrics={"m": {"image/psnr": 1}},
                                        image_scale=3, embed_images=embed)).read()
    gif = trajectory.read_video(str(out / "anim_edit_rotate.gif"))
    assert gif.shape == (2, 3 * fx.RESOLUTION, 3 * fx.RESOLUTION, 3)
    assert f"Trajectory {spec}" in html
    assert ("src='data:image/gif;base64," in html) if embed else ("src='anim_edit_rotate.gif'"
                                                                  in html)
