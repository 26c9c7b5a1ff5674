"""End-to-end test of the embedded demo (neural_assets/demo.py) at smoke size, plus its helpers."""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from configs import smoke
from neural_assets import demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET_MINUTES = 0.33  # ~20 s of training.
BACKSTOP_SECONDS = 20.0


def test_data_spec_reads_config_and_overrides():
  config = smoke.get_config()
  spec = demo.data_spec(config, num_train_videos=5, num_frames=None)
  assert spec["num_train_videos"] == 5
  assert spec["num_frames"] == demo.SYNTHETIC_DEFAULTS["num_frames"]
  assert spec["resolution"] == 32
  config.synthetic = dict(num_eval_videos=3)
  assert demo.data_spec(config)["num_eval_videos"] == 3
  config.synthetic = dict(num_eval_vidoes=3)
  with pytest.raises(ValueError, match="Unknown config.synthetic"):
    demo.data_spec(config)
  with pytest.raises(ValueError, match="num_frames"):
    demo.data_spec(smoke.get_config(), num_frames=0)


def test_training_progress_reads_the_trainer_scalars_and_stops_at_the_backstop():
  now = [100.0]
  progress = demo.TrainingProgress(backstop_after_s=30.0, clock=lambda: now[0])
  # A log step: the trainer's logged means.
  assert not progress(12, {"train/grad_norm": 3.0, "train/loss": 0.125})
  assert progress.step == 12 and progress.loss == 0.125
  # Between log steps the scalars are empty: the step moves on, the loss stays.
  assert not progress(13, {})
  assert progress.step == 13 and progress.loss == 0.125
  assert progress.losses == [(12, 0.125)] and not progress.stopped_by_backstop
  now[0] = 131.0  # Past the backstop: the trainer is asked to save and stop.
  assert progress(14, {}) and progress.stopped_by_backstop
  assert not demo.TrainingProgress(None, clock=lambda: now[0])(1, {})  # No backstop.


def _copy_baseline_psnr(data_dir: str, min_gap: int) -> tuple[float, int]:
  """Image-level PSNR of source-as-prediction over the eval pairs, computed here in numpy."""
  from data_pipelines import pipeline
  config = smoke.get_config()
  config.data.data_dir = data_dir
  config.data.min_gap = min_gap
  values = []
  for index, batch in enumerate(pipeline.make_eval_iterator(config)):
    if 0 <= config.eval.num_batches <= index:
      break
    src = batch["source_image"].astype(np.float64) / 255.0
    tgt = batch["target_image"].astype(np.float64) / 255.0
    mse = np.mean((src - tgt) ** 2, axis=(1, 2, 3))
    values.extend(10.0 * np.log10(1.0 / mse))
  return float(np.mean(values)), len(values)


def test_demo_end_to_end(tmp_path):
  workdir = str(tmp_path / "demo")
  command = [
      sys.executable, "-m", "neural_assets.demo", f"--workdir={workdir}",
      f"--config={os.path.join(REPO, 'configs', 'smoke.py')}",
      f"--minutes={BUDGET_MINUTES}", f"--backstop_seconds={BACKSTOP_SECONDS}",
      "--vae_minutes=0.05",  # A few VAE warm-up steps: exercises the init_checkpoint path.
      "--num_train_videos=4", "--num_eval_videos=3", "--num_frames=3",
      "--num_edit_scenes=1", "--num_shown=2", "--num_fidelity_scenes=1",
      "--config.training.image_summary_every_steps=0", "--config.training.log_every_steps=1",
      "--config.checkpoint.async_save=False",
  ]
  # Compilation dominates this test on a CPU: reruns reuse JAX's persistent compilation cache.
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": os.path.join(
      tempfile.gettempdir(), "neural_assets_test_demo_jax_cache")}
  # The timeout is a hang guard only (a loaded 2-core machine is slow), not a speed check.
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env=env)
  assert result.returncode == 0, result.stderr[-4000:]

  report_dir = os.path.join(workdir, "report")
  with open(os.path.join(report_dir, "results.json")) as f:
    results = json.load(f)
  info = results["run_info"]
  assert info["steps at end"] >= 1
  # No wall-clock assertion: tests check correctness, not speed (the demo's budget is measured by
  # benchmarks/learning_curve.py and stated in the README).
  assert info["evaluated step"] == info["steps at end"]
  assert info["VAE warm-up"]["steps"] >= 1
  assert os.path.exists(os.path.join(workdir, "vae", "checkpoint"))
  with open(os.path.join(workdir, "train", "config.json")) as f:
    train_config = json.load(f)
  assert train_config["training"]["init_checkpoint"] == os.path.join(workdir, "vae", "checkpoint")
  assert train_config["model"]["vae"]["scaling_factor"] == pytest.approx(
      info["VAE warm-up"]["scaling_factor"], rel=1e-3)

  # Every figure is on disk and referenced by the page.
  html = open(os.path.join(report_dir, "index.html"), encoding="utf-8").read()
  expected = ["grid_reconstruction.png", "grid_edits_overview.png", "curves_train.png"] + [
      f"grid_edit_{name.replace(' ', '_')}.png" for name in demo.EDIT_TYPES]
  for name in expected:
    assert os.path.getsize(os.path.join(report_dir, name)) > 0, name
    assert f"src='{name}'" in html, name
  assert results["grids"] == [n[len("grid_"):-len(".png")] for n in expected if
                              n.startswith("grid_")]

  # The metrics table has the model and the copy-source baseline, both levels.
  metrics = results["metrics"]
  assert set(metrics) == {"model", "copy source frame", "VAE reconstruction of the target (ceiling)"}
  for method in metrics:
    row = re.search(rf"<tr><td>{re.escape(method)}</td>(.*?)</tr>", html)
    assert row, method
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    for key in ("image/psnr", "image/ssim", "object/psnr", "object/ssim"):
      assert f"{metrics[method][key]:.4f}" in cells, (method, key)
  # The baseline is what it says: source frame vs target frame, recomputed independently.
  psnr, count = _copy_baseline_psnr(os.path.join(workdir, "data"), min_gap=1)
  assert metrics["copy source frame"]["image/count"] == count == 3
  np.testing.assert_allclose(metrics["copy source frame"]["image/psnr"], psnr, rtol=1e-4)
  assert np.isfinite(metrics["model"]["image/psnr"])

  # The token-swap test: per timestep bucket, finite errors, the ratios they imply, in the page.
  conditioning = results["conditioning"]
  assert conditioning["buckets"] == [[0, 250], [250, 500], [500, 750], [750, 1000]]
  for i in range(4):
    np.testing.assert_allclose(conditioning["swap_ratio"][i],
                               conditioning["true"][i] / conditioning["swapped"][i], rtol=1e-5)
  assert all(np.isfinite(conditioning[k]).all() for k in ("true", "swapped", "null"))
  assert "token-swap test" in html and "ratio true / another scene" in html
  # The edit-fidelity benchmark of this checkpoint: its table in the report, linked in full.
  assert "How well edits work" in html and "rotate (yaw) | model" in html
  assert "href='../edit_fidelity/index.html'" in html
  fidelity = json.load(open(os.path.join(workdir, "edit_fidelity", "edit_fidelity.json")))
  assert fidelity["checkpoint_step"] == info["evaluated step"]
  assert fidelity["settings"]["num_scenes"] == 1
  # The held-out scenes are scene files the edit CLI opens, one per eval pair.
  from neural_assets import editing
  scenes = sorted(os.listdir(os.path.join(workdir, "scenes")))
  assert len(scenes) == 3 and all(name.endswith(".npz") for name in scenes)
  scene = editing.Scene.load(os.path.join(workdir, "scenes", scenes[0]))
  assert scene.image.shape == (32, 32, 3)

def test_demo_numbers_are_checked_at_parse_time(tmp_path):
  # absl validators run on the module's real flags; a subprocess keeps this process's FLAGS clean.
  result = subprocess.run(
      [sys.executable, "-m", "neural_assets.demo", f"--workdir={tmp_path / 'w'}",
       "--minutes=nan", "--num_train_videos=-4"], capture_output=True, text=True, timeout=120,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode != 0
  assert "--minutes must be a finite number >= 0" in result.stderr, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "w")


def test_conditioning_errors_equal_the_per_variant_definition():
  """The token-swap errors (buckets in a loop, the 3 token variants as one batch) equal the
  definition computed one bucket and one variant at a time."""
  import jax
  import jax.numpy as jnp
  from neural_assets.demo import evaluation
  from neural_assets.diffusion.schedule import NoiseSchedule
  from neural_assets.models.asset_diffusion import NeuralAssetsModel
  from neural_assets.training import train_step as train_step_lib

  config = smoke.get_config()
  model, vae = train_step_lib.build_models(config)
  rng = np.random.default_rng(0)
  size, slots = 3, config.model.conditioning.max_objects
  corners = rng.uniform(0.1, 0.9, size=(size, slots, 2, 2))
  batch = dict(
      source_image=rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8),
      target_image=rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8),
      source_boxes=np.concatenate([corners.min(2), corners.max(2)], -1).astype(np.float32),
      target_corners=rng.uniform(0, 1, (size, slots, 8, 3)).astype(np.float32),
      slot_mask=rng.uniform(size=(size, slots)) < 0.7,
      relative_pose=np.tile(np.eye(4, dtype=np.float32), (size, 1, 1)))
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  latents = jnp.zeros((size, 8, 8, 4))
  params = jax.jit(model.init)(jax.random.key(0), latents, jnp.zeros((size,), jnp.int32), batch,
                               jnp.zeros((size,), bool))["params"]
  vae_params = jax.jit(vae.init)(jax.random.key(1), jnp.zeros((1, 32, 32, 3)))["params"]
  key = jax.random.key(7)
  error_fn = evaluation.make_conditioning_error_fn(config, model, vae)
  got = np.asarray(error_fn(params, vae_params, batch, key))

  schedule = NoiseSchedule.from_config(config.diffusion)
  edges = error_fn.bucket_edges
  latents = train_step_lib.encode_latents(vae, vae_params, batch["target_image"], key, False)
  cond, null = model.apply({"params": params}, batch,
                           method=NeuralAssetsModel.tokenize_cond_and_null)
  denoise = jax.jit(lambda x, t, c: model.apply({"params": params}, x, t, c,
                                                method=NeuralAssetsModel.denoise))
  want = np.zeros((len(edges) - 1, 3))
  for i in range(len(edges) - 1):
    t_key, n_key = jax.random.split(jax.random.fold_in(key, i))
    t = jax.random.randint(t_key, (size,), int(edges[i]), int(edges[i + 1]), jnp.int32)
    noise = jax.random.normal(n_key, latents.shape, jnp.float32)
    noisy = schedule.add_noise(latents, noise, t)
    target = schedule.training_target(latents, noise, t)
    for j, tokens in enumerate((cond, jnp.roll(cond, 1, axis=0), null)):
      want[i, j] = float(jnp.mean(jnp.square(denoise(noisy, t, tokens) - target)))
  assert got.shape == (4, 3)
  np.testing.assert_allclose(got, want, rtol=2e-4)
  assert np.all(got[:, 0] != got[:, 1])  # The swapped tokens change the prediction.
