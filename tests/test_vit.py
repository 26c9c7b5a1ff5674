"""ViT (DINO / DINOv2): parity with transformers' PyTorch models through the safetensors loader."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.torch import load_file, save_file
import torch

from tests import torch_reference

from neural_assets.convert import CheckpointMismatchError, load_transformers_vit
from neural_assets.convert import transformers_vit
from neural_assets.models import vit as vit_lib

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             image_size=32, hidden_act="gelu", hidden_dropout_prob=0.0,
             attention_probs_dropout_prob=0.0)


def _save(model, tmp_path_factory, name):
  model.eval()
  directory = str(tmp_path_factory.mktemp(name))
  model.save_pretrained(directory, safe_serialization=True)
  return directory


@pytest.fixture(scope="module", params=[8, 16], ids=["vit_p8", "vit_p16"])
def dino(request, tmp_path_factory):
  config = transformers.ViTConfig(**SMALL, patch_size=request.param, layer_norm_eps=1e-6)
  model = transformers.ViTModel(config, add_pooling_layer=False)
  torch_reference.randomise(model, seed=request.param)
  return model, _save(model, tmp_path_factory, f"dino{request.param}")


@pytest.fixture(scope="module")
def dinov2_reg(tmp_path_factory):
  config = transformers.Dinov2WithRegistersConfig(**SMALL, patch_size=8, num_register_tokens=3,
                                                  mlp_ratio=2, layer_norm_eps=1e-6)
  model = transformers.Dinov2WithRegistersModel(config)
  torch_reference.randomise(model, seed=3)
  return model, _save(model, tmp_path_factory, "dinov2reg")


@pytest.fixture(scope="module")
def dinov2(tmp_path_factory):
  config = transformers.Dinov2Config(**SMALL, patch_size=8, mlp_ratio=2, layer_norm_eps=1e-6)
  model = transformers.Dinov2Model(config)
  torch_reference.randomise(model, seed=4)
  return model, _save(model, tmp_path_factory, "dinov2")


def _pixels(h, w, seed=0):
  return np.random.default_rng(seed).normal(size=(2, h, w, 3)).astype(np.float32)


def _torch_hidden(model, pixels, **kwargs):
  with torch.no_grad():
    out = model(torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))), **kwargs)
  return out.last_hidden_state.numpy()


def _check(got, want):
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
  assert float(np.std(want)) > 0.1  # Not a comparison of two near-constant tensors.


@pytest.mark.parametrize("size", [(32, 32), (48, 40)], ids=["native", "interpolated"])
def test_dino_matches_transformers(dino, size):
  model, directory = dino
  vit = load_transformers_vit(directory)
  pixels = _pixels(*size)
  want = _torch_hidden(model, pixels, interpolate_pos_encoding=True)
  _check(np.asarray(vit(jnp.asarray(pixels))), want)
  assert vit.module.kind == "dino" and vit.config_fields["patch_size"] == model.config.patch_size


@pytest.mark.parametrize("size", [(32, 32), (56, 24)], ids=["native", "interpolated"])
def test_dinov2_with_registers_matches_transformers(dinov2_reg, size):
  model, directory = dinov2_reg
  vit = load_transformers_vit(directory)
  assert vit.module.num_prefix_tokens == 4 and vit.module.interpolate_antialias
  pixels = _pixels(*size, seed=1)
  _check(np.asarray(vit(jnp.asarray(pixels))), _torch_hidden(model, pixels))


def test_dinov2_downscaled_interpolation_matches_transformers(dinov2_reg):
  """A smaller grid than the native one exercises the antialiased (widened) kernel."""
  model, directory = dinov2_reg
  vit = load_transformers_vit(directory)
  pixels = _pixels(16, 24, seed=2)
  _check(np.asarray(vit(jnp.asarray(pixels))), _torch_hidden(model, pixels))


@pytest.mark.parametrize("size", [(32, 32), (40, 64)], ids=["native", "interpolated"])
def test_dinov2_matches_transformers(dinov2, size):
  model, directory = dinov2
  vit = load_transformers_vit(directory)
  assert not vit.module.interpolate_antialias
  pixels = _pixels(*size, seed=5)
  _check(np.asarray(vit(jnp.asarray(pixels))), _torch_hidden(model, pixels))


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("grid", [(2, 3), (7, 5), (4, 4), (1, 9)])
def test_position_interpolation_matches_torch(grid, antialias):
  side, dim = 4, 6
  pos = np.random.default_rng(0).normal(size=(1 + side * side, dim)).astype(np.float32)
  grid_t = torch.from_numpy(pos[1:]).reshape(1, side, side, dim).permute(0, 3, 1, 2)
  want = torch.nn.functional.interpolate(grid_t, size=grid, mode="bicubic", align_corners=False,
                                         antialias=antialias)
  want = want.permute(0, 2, 3, 1).reshape(-1, dim).numpy()
  got = np.asarray(vit_lib.interpolate_position_embeddings(jnp.asarray(pos), grid, antialias))
  np.testing.assert_allclose(got[0], pos[0])
  np.testing.assert_allclose(got[1:], want, atol=1e-5)


def test_jax_image_resize_differs_from_torch_bicubic():
  """Why we build our own weights: jax.image.resize's cubic is not PyTorch's (A=-0.5 vs -0.75)."""
  x = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
  want = torch.nn.functional.interpolate(torch.from_numpy(x)[None, None], size=(7, 7),
                                         mode="bicubic", align_corners=False)[0, 0].numpy()
  jax_cubic = np.asarray(jax.image.resize(jnp.asarray(x), (7, 7), "cubic"))
  ours = vit_lib.bicubic_resize_matrix(4, 7) @ x @ vit_lib.bicubic_resize_matrix(4, 7).T
  assert np.abs(jax_cubic - want).max() > 1e-3
  np.testing.assert_allclose(ours, want, atol=1e-5)


def test_patch_feature_map():
  hidden = jnp.arange(2 * (4 + 6) * 3, dtype=jnp.float32).reshape(2, 10, 3)
  fmap = vit_lib.patch_feature_map(hidden, num_prefix=4, grid_hw=(2, 3))
  assert fmap.shape == (2, 2, 3, 3)
  np.testing.assert_array_equal(fmap[1, 1, 0], hidden[1, 4 + 3])
  with pytest.raises(ValueError, match="prefix"):
    vit_lib.patch_feature_map(hidden, num_prefix=1, grid_hw=(2, 3))


def test_mismatched_checkpoint_raises(dinov2_reg, tmp_path):
  _, directory = dinov2_reg
  config = json.load(open(os.path.join(directory, "config.json")))
  config["num_hidden_layers"] = 1
  (tmp_path / "config.json").write_text(json.dumps(config))
  save_file(load_file(os.path.join(directory, "model.safetensors")),
            str(tmp_path / "model.safetensors"))
  with pytest.raises(CheckpointMismatchError, match="layer"):
    load_transformers_vit(str(tmp_path))
  config["num_hidden_layers"] = 2
  config["hidden_size"] = 32
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(CheckpointMismatchError, match="shape"):
    load_transformers_vit(str(tmp_path))


def test_unknown_model_type_raises(dinov2, tmp_path):
  _, directory = dinov2
  config = json.load(open(os.path.join(directory, "config.json")))
  config["model_type"] = "clip_vision_model"
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(CheckpointMismatchError, match="clip_vision_model"):
    load_transformers_vit(str(tmp_path))


def test_new_style_parameter_names_load(dinov2, tmp_path):
  """transformers 5's in-memory state dict names (q_proj, o_proj...) map to the same tree."""
  model, directory = dinov2
  state = {k: v.contiguous() for k, v in model.state_dict().items()}
  assert any(".q_proj." in k for k in state)
  save_file(state, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text(open(os.path.join(directory, "config.json")).read())
  pixels = jnp.asarray(_pixels(32, 32))
  np.testing.assert_allclose(np.asarray(load_transformers_vit(str(tmp_path))(pixels)),
                             np.asarray(load_transformers_vit(directory)(pixels)), atol=1e-6)


def test_dino_config_presets_build():
  from configs import dino  # pylint: disable=g-import-not-at-top
  for variant, tokens in [("vitb8", 1 + 28 * 28), ("vits16", 1 + 14 * 14),
                          ("dinov2_vitb14_reg", 1 + 4 + 16 * 16)]:
    config = dino.get_config(variant)
    module = vit_lib.ViT.from_config(config)
    size = config.input_size
    out = jax.eval_shape(module.init_with_output, jax.random.PRNGKey(0),
                         jnp.zeros((1, size, size, 3)))[0]
    assert out.shape == (1, tokens, config.hidden_size), variant


def test_bfloat16_compute_is_close(dinov2_reg):
  _, directory = dinov2_reg
  pixels = jnp.asarray(_pixels(40, 40))
  want = np.asarray(load_transformers_vit(directory)(pixels))
  vit = load_transformers_vit(directory, dtype=jnp.bfloat16)
  got = vit(pixels)
  assert got.dtype == jnp.bfloat16
  assert jax.tree_util.tree_leaves(vit.params)[0].dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=0.15, rtol=0.05)
