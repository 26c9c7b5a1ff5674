"""Experiment configs: the paper's numbers, locked keys, file globs that match converters, and
every key the model, diffusion and training code reads present in every config."""
import fnmatch
import functools
import importlib
import pkgutil

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np
import pytest

import configs
from configs import conditioning as conditioning_config
from configs import dino
from configs import sampler as sampler_config
from configs import sd21
from configs import videos
from neural_assets import config_checks
from neural_assets.diffusion.ddim import DDIMSampler
from neural_assets.diffusion.schedule import NoiseSchedule
from neural_assets.models.conditioning import AssetTokenizer
from neural_assets.models.unet import UNet2DConditionModel
from neural_assets.models.vae import AutoencoderKL
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import train_step

EXPERIMENTS = ["movi_e", "objectron", "waymo", "synthetic", "synthetic_3d", "smoke", "videos"]


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


# Every whole experiment config, with each of its presets / arguments. Each is built below.
EXPERIMENT_BUILDS = {
    "movi_e": [()], "objectron": [()], "waymo": [()], "synthetic": [()], "synthetic_3d": [()],
    "smoke": [()], "videos": [(preset,) for preset in videos.PRESETS],
    "paper_base": [(8,), (23, 128)],
}
# Modules that build one section of the experiment configs (built on their own below), and
# `common`, whose sections every experiment above includes.
SECTION_MODULES = {"sd21", "dino", "conditioning", "sampler", "common"}


def test_every_config_module_is_built_by_these_tests():
  """A new file in configs/ must join EXPERIMENT_BUILDS or SECTION_MODULES."""
  modules = {m.name for m in pkgutil.iter_modules(configs.__path__)}
  assert modules == set(EXPERIMENT_BUILDS) | SECTION_MODULES


def _experiment_configs():
  cases = [pytest.param(name, args, id=f"{name}:{','.join(map(str, args))}")
           for name, builds in EXPERIMENT_BUILDS.items() for args in builds]
  # The editing / CLI / notebook tests' own shrunk smoke config.
  return cases + [pytest.param("tests.editing_fixtures", (), id="editing_fixtures")]


def _build_experiment(name, args):
  if name == "tests.editing_fixtures":
    return importlib.import_module(name).tiny_config()
  return importlib.import_module(f"configs.{name}").get_config(*args)


def _read_every_model_key(config):
  """Builds what training builds from `config`, reading each key as the code does (no
  defaults: a key missing from the config raises here)."""
  config_checks.check_config(config)
  model, vae = train_step.build_models(config)
  # The model's and the VAE's set-up and call on a dummy batch, traced only.
  params, frozen = jax.eval_shape(
      functools.partial(train_step.init_params, config, model, vae), jax.random.key(0))
  assert set(params) == {"tokenizer", "unet"} and set(frozen) == {"vae"}
  # The train step reads the diffusion, conditioning, training and optimizer keys when made.
  mesh = Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
  replicated = NamedSharding(mesh, PartitionSpec())
  train_step.make_train_step(config, model, vae, None, {}, None, None, replicated)
  sharding_lib.config_shardings(params, mesh, config.sharding)
  DDIMSampler.from_config(config.diffusion, config.sampler)


@pytest.mark.parametrize("name,args", _experiment_configs())
def test_every_config_has_every_key_the_model_reads(name, args):
  config = _build_experiment(name, args)
  config.lock()  # As the entry points use it: no key appears on first read.
  _read_every_model_key(config)


@pytest.mark.parametrize("section,key", [
    ("model", "latent_coordinates"), ("model", "latent_coordinate_bands"),
    ("diffusion", "prediction_type"), ("training", "loss_min_snr_gamma"),
    ("training", "loss_object_weight"), ("sharding", "split_dims"),
    ("model.conditioning", "null_condition")])
def test_a_missing_model_key_is_an_error(section, key):
  """The check above is real: without one of the keys the code reads, building fails (no
  silent default)."""
  config = _build_experiment("smoke", ())
  node = config
  for part in section.split("."):
    node = node[part]
  del node[key]
  with pytest.raises((AttributeError, KeyError), match=key):
    _read_every_model_key(config)


@pytest.mark.parametrize("variant", sd21.VARIANTS)
def test_sd21_variants_build(variant):
  sd = sd21.get_config(variant)
  unet = UNet2DConditionModel(**dict(sd.unet))
  latents = jnp.zeros((1, 8, 8, sd.unet.in_channels))
  context = jnp.zeros((1, 4, sd.unet.cross_attention_dim))
  jax.eval_shape(unet.init, jax.random.key(0), latents, jnp.zeros((1,), jnp.int32), context)
  jax.eval_shape(AutoencoderKL(**dict(sd.vae)).init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  schedule = NoiseSchedule.from_config(sd.diffusion)
  assert schedule.prediction_type == sd.diffusion.prediction_type
  DDIMSampler.from_config(sd.diffusion, sampler_config.get_config())


@pytest.mark.parametrize("variant", dino.VARIANTS)
def test_conditioning_builds_with_every_dino_variant(variant):
  """configs/conditioning.py with each configs/dino.py encoder: the tokenizer reads every
  conditioning and encoder key (preprocessing keys included)."""
  cond = conditioning_config.get_config(variant, max_objects=2)
  assert dict(cond.encoder) == dict(dino.get_config(variant))
  batch = dict(source_image=jnp.zeros((1, 32, 32, 3), jnp.uint8),
               source_boxes=jnp.zeros((1, 2, 4)), target_corners=jnp.zeros((1, 2, 8, 3)),
               slot_mask=jnp.zeros((1, 2), bool), relative_pose=jnp.eye(4)[None])
  tokens = jax.eval_shape(lambda: AssetTokenizer(cond).init_with_output(
      jax.random.key(0), batch, jnp.zeros((1,), bool))[0])
  assert tokens[0].shape == (1, 3 * 4, cond.context_dim)
