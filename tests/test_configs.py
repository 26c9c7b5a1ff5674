"""Experiment configs: the paper's numbers, locked keys, and file globs that match converters."""
import fnmatch
import importlib

import pytest

from configs import sd21

EXPERIMENTS = ["movi_e", "objectron", "waymo", "synthetic", "smoke", "videos"]


def _config(name):
  return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_config_is_complete_and_typos_fail(name):
  config = _config(name)
  for section in ("model", "diffusion", "sampler", "data", "mesh", "sharding", "optimizer",
                  "training", "checkpoint", "eval", "evaluation"):
    assert section in config, section
  assert config.model.unet.cross_attention_dim == config.model.conditioning.context_dim
  config.lock()
  with pytest.raises(AttributeError):
    config.training.num_train_step = 5  # typo of num_train_steps


@pytest.mark.parametrize("name", ["movi_e", "objectron", "waymo"])
def test_paper_settings(name):
  config = _config(name)
  unet = sd21.unet_config("base")
  for key in ("block_out_channels", "attention_head_dim", "use_linear_projection",
              "cross_attention_dim", "layers_per_block", "down_block_types"):
    assert config.model.unet[key] == unet[key], key
  cond = config.model.conditioning
  assert (cond.encoder.hidden_size, cond.encoder.patch_size, cond.encoder.input_size) == (
      768, 8, 224)  # DINO ViT-B/8 at 224 -> 28x28 patches
  assert tuple(cond.roi_output_size) == (2, 2) and cond.token_dim == 512
  assert cond.context_dim == 1024 and cond.cfg_drop_prob == 0.1
  assert tuple(cond.pose_corner_indices) == (0, 1, 2, 4)
  assert tuple(config.data.resolution) == (256, 256)
  assert config.diffusion.beta_schedule == "scaled_linear"
  assert (config.diffusion.beta_start, config.diffusion.beta_end) == (0.00085, 0.012)
  assert config.diffusion.prediction_type == "epsilon"
  assert (config.optimizer.lr, config.optimizer.new_layers_lr) == (5e-5, 1e-3)
  if name == "movi_e":
    assert cond.max_objects == 23  # 24 slots x 4 = 96 tokens (release)


@pytest.mark.parametrize("name,train_name,eval_name", [
    # Names the converters write (data_pipelines.movi_e / objectron / waymo).
    ("movi_e", "train.array_record-00000-of-00004", "validation.array_record-00000-of-00001"),
    ("objectron", "book_train-00000-of-00004.array_record", "book_test-00000-of-00001.array_record"),
    ("waymo", "train.array_record-waymo_front-00000-of-00002",
     "validation.array_record-waymo_front-00000-of-00001"),
    # data_pipelines.videos --split train / --split eval.
    ("videos", "train.array_record-00000-of-00002", "eval.array_record-00000-of-00001"),
])
def test_file_globs_match_converter_outputs(name, train_name, eval_name):
  data = _config(name).data
  assert fnmatch.fnmatch(train_name, data.train_files)
  assert not fnmatch.fnmatch(eval_name, data.train_files)
  assert fnmatch.fnmatch(eval_name, data.eval_files)


@pytest.mark.parametrize("preset,resolution", [("paper", 256), ("toy", 64), ("tiny", 32)])
def test_videos_presets(preset, resolution):
  config = importlib.import_module("configs.videos").get_config(preset)
  assert tuple(config.data.resolution) == (resolution, resolution)
  assert config.data.train_files == "train.array_record-*"
  with pytest.raises(ValueError, match="preset"):
    importlib.import_module("configs.videos").get_config("papr")
