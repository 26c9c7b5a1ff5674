"""AutoencoderKL: parity with diffusers' PyTorch AutoencoderKL through the safetensors loader."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.torch import load_file, save_file
import torch

from tests import torch_reference

from neural_assets.convert import CheckpointMismatchError, load_diffusers_vae
from neural_assets.convert import diffusers_vae
from neural_assets.models.vae import AutoencoderKL

diffusers = pytest.importorskip("diffusers")

TINY = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64),
            layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=32,
            scaling_factor=0.18215)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  torch.manual_seed(0)
  model = diffusers.AutoencoderKL(**TINY).eval()
  torch_reference.randomise(model, seed=1)
  directory = str(tmp_path_factory.mktemp("vae"))
  model.save_pretrained(directory, safe_serialization=True)
  return model, directory


@pytest.fixture(scope="module")
def loaded(reference):
  return load_diffusers_vae(reference[1])


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _nhwc(t):
  return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def test_encode_matches_diffusers(reference, loaded):
  model, _ = reference
  images = _images((2, 32, 32, 3))
  with torch.no_grad():
    dist = model.encode(_nchw(images)).latent_dist
  mean, logvar = loaded.encode_moments(jnp.asarray(images))
  assert mean.shape == (2, 16, 16, 4)
  np.testing.assert_allclose(np.asarray(mean), _nhwc(dist.mean), atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(logvar), _nhwc(dist.logvar), atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(loaded.encode(jnp.asarray(images))), np.asarray(mean))
  # Non-trivial output: the comparison above is not between two near-zero tensors.
  assert float(np.std(np.asarray(mean))) > 1e-2


def test_decode_matches_diffusers(reference, loaded):
  model, _ = reference
  latents = np.random.default_rng(1).normal(size=(2, 16, 12, 4)).astype(np.float32)
  with torch.no_grad():
    want = _nhwc(model.decode(_nchw(latents)).sample)
  got = np.asarray(loaded.decode(jnp.asarray(latents)))
  assert got.shape == (2, 32, 24, 3)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
  assert float(np.std(got)) > 1e-2


def test_odd_size_encode_matches_diffusers(reference, loaded):
  """Odd sizes exercise the asymmetric (bottom / right) padding of the stride-2 convs."""
  model, _ = reference
  images = _images((1, 27, 21, 3), seed=3)
  with torch.no_grad():
    want = _nhwc(model.encode(_nchw(images)).latent_dist.mean)
  got = np.asarray(loaded.encode(jnp.asarray(images)))
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_loader_exposes_module_and_scaling(loaded):
  assert loaded.scaling_factor == pytest.approx(0.18215)
  assert isinstance(loaded.module, AutoencoderKL)
  assert loaded.module.block_out_channels == (32, 64)
  assert loaded.params["decoder"]["up_blocks_0"]["resnets_1"]["conv1"]["kernel"].shape == (
      3, 3, 64, 64)


def test_legacy_attention_names_load(reference, loaded, tmp_path):
  """Old diffusers checkpoints name the attention layers query/key/value/proj_attn."""
  _, directory = reference
  state = load_file(os.path.join(directory, diffusers_vae.WEIGHTS_NAME))
  renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
  legacy = {}
  for name, value in state.items():
    for new, old in renames.items():
      name = name.replace(f".{new}.", f".{old}.")
    legacy[name] = value
  assert any(".proj_attn." in k for k in legacy)
  save_file(legacy, str(tmp_path / diffusers_vae.WEIGHTS_NAME))
  (tmp_path / "config.json").write_text(open(os.path.join(directory, "config.json")).read())
  vae = load_diffusers_vae(str(tmp_path))
  images = jnp.asarray(_images((1, 16, 16, 3)))
  np.testing.assert_allclose(np.asarray(vae.encode(images)), np.asarray(loaded.encode(images)),
                             atol=1e-6)


def test_mismatched_checkpoint_raises(reference, tmp_path):
  _, directory = reference
  config = json.load(open(os.path.join(directory, "config.json")))
  config["block_out_channels"] = [32, 32]
  (tmp_path / "config.json").write_text(json.dumps(config))
  state = load_file(os.path.join(directory, diffusers_vae.WEIGHTS_NAME))
  save_file(state, str(tmp_path / diffusers_vae.WEIGHTS_NAME))
  with pytest.raises(CheckpointMismatchError, match="parameter"):
    load_diffusers_vae(str(tmp_path))


def test_missing_parameter_names_it(reference, tmp_path):
  _, directory = reference
  (tmp_path / "config.json").write_text(open(os.path.join(directory, "config.json")).read())
  state = load_file(os.path.join(directory, diffusers_vae.WEIGHTS_NAME))
  del state["decoder.mid_block.attentions.0.to_q.weight"]
  save_file(state, str(tmp_path / diffusers_vae.WEIGHTS_NAME))
  with pytest.raises(CheckpointMismatchError, match="decoder/mid_block/attentions_0/to_q/kernel"):
    load_diffusers_vae(str(tmp_path))


def test_pickles_are_refused(reference, tmp_path):
  _, directory = reference
  (tmp_path / "config.json").write_text(open(os.path.join(directory, "config.json")).read())
  (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
  with pytest.raises(FileNotFoundError, match="pickle"):
    load_diffusers_vae(str(tmp_path))


def test_bad_inputs_raise():
  vae = AutoencoderKL(**TINY)
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    vae.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 16, 16)))
  with pytest.raises(ValueError, match="DownEncoderBlock2D"):
    AutoencoderKL(**{**TINY, "down_block_types": ("DownBlock2D",) * 2}).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))


def test_sd21_config_builds_sd_shapes():
  from configs import sd21  # pylint: disable=g-import-not-at-top
  vae = AutoencoderKL(**sd21.vae_config())
  shapes = jax.eval_shape(vae.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))["params"]
  assert shapes["encoder"]["conv_out"]["kernel"].shape == (3, 3, 512, 8)
  assert shapes["decoder"]["up_blocks_3"]["resnets_2"]["conv2"]["kernel"].shape == (
      3, 3, 128, 128)
  mean = jax.eval_shape(lambda p, x: vae.apply({"params": p}, x, method=AutoencoderKL.encode),
                        shapes, jnp.zeros((1, 64, 64, 3)))[0]
  assert mean.shape == (1, 8, 8, 4)


def test_bfloat16_compute_is_close(reference, loaded):
  vae = load_diffusers_vae(reference[1], dtype=jnp.bfloat16)
  images = jnp.asarray(_images((1, 32, 32, 3)))
  mean = vae.encode(images)
  assert mean.dtype == jnp.float32  # Moments are returned in float32 whatever the compute dtype.
  np.testing.assert_allclose(np.asarray(mean), np.asarray(loaded.encode(images)), atol=0.05,
                             rtol=0.05)
