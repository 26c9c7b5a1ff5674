"""benchmarks/sampler_sweep.py on a tiny random checkpoint: fresh validation videos, the
copy-source row against PSNR computed here, settings reaching the sampler."""
import json
import os

import numpy as np
import pytest

from benchmarks import sampler_sweep
from neural_assets import inference
from neural_assets.demo import data as demo_data
from neural_assets.training import eval_sampling
from tests import editing_fixtures


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("sweep")
  config = editing_fixtures.tiny_config()
  config.data.eval_global_batch_size = 4
  workdir = editing_fixtures.make_tiny_checkpoint(str(root / "run"), config)
  spec = demo_data.data_spec(config, num_train_videos=1, num_eval_videos=1, min_objects=1,
                             max_objects=3, num_frames=4)
  spec_path = root / "spec.json"
  spec_path.write_text(json.dumps(spec))
  bundle = inference.load_model_for_inference(workdir)
  return bundle, str(root / "work"), str(spec_path), spec


def test_validation_videos_are_new_and_copy_source_is_scored_exactly(setup):
  bundle, work_dir, spec_path, spec = setup
  config = sampler_sweep.validation_config(bundle, work_dir, 5, seed=7, spec_path=spec_path)
  with open(os.path.join(config.data.data_dir, "spec.json")) as f:
    made = json.load(f)
  assert made["eval_seed"] == 7 and made["num_eval_videos"] == 5
  assert made["scene"] == spec["scene"]
  batches = list(eval_sampling.eval_batches(config))
  assert sum(len(b["video_index"]) for b in batches) == 5
  # The baseline row, recomputed from the pairs: mean over images of 10 log10(1 / MSE).
  psnrs = []
  for b in batches:
    source = b["source_image"].astype(np.float64) / 255.0
    target = b["target_image"].astype(np.float64) / 255.0
    psnrs += list(10 * np.log10(1.0 / np.mean((source - target) ** 2, axis=(1, 2, 3))))
  got = sampler_sweep.score(config, bundle, sampler_sweep.copy_source_sample_fn)
  assert got["image/psnr"] == pytest.approx(float(np.mean(psnrs)), abs=1e-3)
  # Same spec and seed: the videos are not rendered again.
  stamp = os.path.getmtime(os.path.join(config.data.data_dir, "spec.json"))
  sampler_sweep.validation_config(bundle, work_dir, 5, seed=7, spec_path=spec_path)
  assert os.path.getmtime(os.path.join(config.data.data_dir, "spec.json")) == stamp


def test_the_run_s_own_seeds_are_refused(setup):
  bundle, work_dir, spec_path, spec = setup
  for seed in (spec["train_seed"], spec["eval_seed"]):
    with pytest.raises(ValueError, match="validation videos must be new"):
      sampler_sweep.validation_config(bundle, work_dir, 2, seed=seed, spec_path=spec_path)


def test_every_setting_is_scored_and_reaches_the_sampler(setup, tmp_path):
  bundle, work_dir, spec_path, _ = setup
  config = sampler_sweep.validation_config(bundle, work_dir, 4, seed=9, spec_path=spec_path)
  out = tmp_path / "sweep.json"
  result = sampler_sweep.sweep(bundle, config, guidance=[1.0, 4.0], etas=[0.0], steps=[2],
                               out=str(out), log=lambda *_: None)
  rows = result["settings"]
  assert [(r["guidance_scale"], r["eta"], r["num_inference_steps"]) for r in rows] == [
      (1.0, 0.0, 2), (4.0, 0.0, 2)]
  assert rows[0]["metrics"]["image/psnr"] != rows[1]["metrics"]["image/psnr"]
  assert json.loads(out.read_text())["settings"][1]["guidance_scale"] == 4.0
  for row in rows:
    assert row["beats_copy_source"] == sampler_sweep.beats(row["metrics"], result["copy_source"])


def test_beats_needs_every_reported_metric():
  base = {"image/psnr": 17.0, "object/psnr": 11.0, "image/lpips": 0.29}
  assert sampler_sweep.beats({"image/psnr": 18.0, "object/psnr": 11.5, "image/lpips": 0.28},
                             base)
  assert not sampler_sweep.beats({"image/psnr": 18.0, "object/psnr": 11.5, "image/lpips": 0.33},
                                 base)
  assert not sampler_sweep.beats({"image/psnr": 16.0, "object/psnr": 11.5, "image/lpips": 0.2},
                                 base)
  assert not sampler_sweep.beats({}, base)
