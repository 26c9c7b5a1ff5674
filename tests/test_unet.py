"""Parity of our Flax UNet (+ diffusers loader) with diffusers' PyTorch UNet2DConditionModel.

Reference models are built from tiny configs with random (re-randomised, so no layer is left
zero-initialised) weights, saved with `save_pretrained` and loaded by our converter.
"""
import functools
import json
import re

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import sd21
from neural_assets.convert import CheckpointMismatchError, load_diffusers_unet
from neural_assets.convert.diffusers_unet import (unet_fields_from_diffusers_config,
                                                  unet_param_shapes)
from neural_assets.models import attention as attention_lib
from neural_assets.models.unet import UNet2DConditionModel, timestep_embedding

CROSS_DIM = 24
SD1 = dict(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
           up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
           attention_head_dim=4, cross_attention_dim=CROSS_DIM, norm_num_groups=8,
           in_channels=4, out_channels=4, sample_size=16)
SD2 = dict(SD1, use_linear_projection=True, attention_head_dim=(2, 4), layers_per_block=2,
           flip_sin_to_cos=True, freq_shift=0)
UPCAST_DEEP = dict(SD2, upcast_attention=True, transformer_layers_per_block=2,
                   flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6)
# Three levels on a 10x10 input: 10 -> 5 -> 3, so upsampling must follow the skips' sizes.
THREE_LEVELS = dict(SD1, block_out_channels=(16, 32, 32),
                    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                      "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                    attention_head_dim=(2, 4, 4), only_cross_attention=(True, False, False))


def _save_reference(directory, config, seed=0):
  """Builds diffusers' UNet with random weights (none zero) and saves it as safetensors."""
  torch.manual_seed(seed)
  model = diffusers.UNet2DConditionModel(**config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("weight") and p.ndim == 1:  # norm scales stay near 1
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
      else:
        torch.nn.init.normal_(p, std=0.1 if p.ndim <= 2 else 0.05)
  model.save_pretrained(str(directory), safe_serialization=True)
  return model


def _inputs(config, hw=(16, 16), batch=2, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, *hw, config["in_channels"])).astype(np.float32)
  t = np.array([3.0, 871.0][:batch], np.float32)
  ctx = rng.standard_normal((batch, 7, CROSS_DIM)).astype(np.float32)
  return x, t, ctx


def _reference_output(model, x, t, ctx):
  with torch.no_grad():
    out = model(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t),
                torch.from_numpy(ctx)).sample
  return out.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def sd1_checkpoint(tmp_path_factory):
  directory = tmp_path_factory.mktemp("sd1_unet")
  model = _save_reference(directory, SD1)
  return directory, model


@pytest.mark.parametrize("config,hw", [(SD2, (16, 16)), (UPCAST_DEEP, (8, 8)),
                                       (THREE_LEVELS, (10, 10))],
                         ids=["sd2_linear_per_level_heads", "upcast_2_layers_freq_shift",
                              "three_levels_odd_size_only_cross"])
def test_parity_with_diffusers(tmp_path, config, hw):
  model = _save_reference(tmp_path, config)
  x, t, ctx = _inputs(config, hw)
  ref = _reference_output(model, x, t, ctx)
  ours = np.asarray(load_diffusers_unet(str(tmp_path))(x, t, ctx))
  assert ours.shape == ref.shape
  assert np.abs(ref).max() > 0.1  # a non-trivial output
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)


def test_sd1_parity_and_attention_impls_agree(sd1_checkpoint):
  directory, model = sd1_checkpoint
  x, t, ctx = _inputs(SD1)
  ref = _reference_output(model, x, t, ctx)
  xla = load_diffusers_unet(str(directory), attention_impl="xla")
  assert xla.params["conv_in"]["kernel"].dtype == jnp.float32
  ours = np.asarray(xla(x, t, ctx))
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
  fused = load_diffusers_unet(str(directory), attention_impl="dot_product")
  np.testing.assert_allclose(np.asarray(fused(x, t, ctx)), ours, atol=1e-5, rtol=1e-5)


def test_bf16_compute_is_close(sd1_checkpoint):
  directory, model = sd1_checkpoint
  x, t, ctx = _inputs(SD1)
  ref = _reference_output(model, x, t, ctx)
  unet = load_diffusers_unet(str(directory), dtype=jnp.bfloat16)
  assert jax.tree.leaves(unet.params)[0].dtype == jnp.float32  # params stay float32
  out = np.asarray(unet(x, t, ctx))
  assert out.dtype == np.float32 and np.isfinite(out).all()
  rel = np.abs(out - ref).max() / np.abs(ref).max()
  assert 0 < rel < 5e-2, rel


def test_mismatched_checkpoint_names_parameter(sd1_checkpoint, tmp_path):
  directory, _ = sd1_checkpoint
  config = json.loads((directory / "config.json").read_text())
  # Linear instead of 1x1-conv projections: proj_in's kernel has another rank.
  config["use_linear_projection"] = True
  for f in ("config.json", "diffusion_pytorch_model.safetensors"):
    (tmp_path / f).write_bytes((directory / f).read_bytes())
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(CheckpointMismatchError, match=r"proj_in/kernel"):
    load_diffusers_unet(str(tmp_path))
  # A narrower second level: its first resnet's conv1 is the first (sorted) misfit.
  config = dict(config, use_linear_projection=False, block_out_channels=[32, 32])
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(CheckpointMismatchError, match=r"down_blocks_1/resnets_0/conv1/bias .*\(64,\).*\(32,\)"):
    load_diffusers_unet(str(tmp_path))


def test_unsupported_config_names_key():
  base = {k: list(v) if isinstance(v, tuple) else v for k, v in SD1.items()}
  assert unet_fields_from_diffusers_config(dict(base, _class_name="UNet2DConditionModel"))
  with pytest.raises(ValueError, match="addition_embed_type"):
    unet_fields_from_diffusers_config(dict(base, addition_embed_type="text_time"))
  with pytest.raises(ValueError, match="made_up_key"):
    unet_fields_from_diffusers_config(dict(base, made_up_key=1))
  with pytest.raises(ValueError, match="SimpleCrossAttnDownBlock2D"):
    fields = unet_fields_from_diffusers_config(
        dict(base, down_block_types=["SimpleCrossAttnDownBlock2D", "DownBlock2D"]))
    x, t, ctx = _inputs(SD1, (8, 8), batch=1)
    UNet2DConditionModel(**fields).init(jax.random.PRNGKey(0), x, t, ctx)


def test_timestep_embedding_matches_diffusers():
  t = np.array([0.0, 1.0, 999.0, 17.5], np.float32)
  for flip, shift, dim in ((True, 0, 32), (False, 1, 33)):
    ref = diffusers.models.embeddings.get_timestep_embedding(
        torch.from_numpy(t), dim, flip_sin_to_cos=flip, downscale_freq_shift=shift).numpy()
    ours = np.asarray(timestep_embedding(jnp.asarray(t), dim, flip, shift))
    # Arguments reach ~1000 rad, where one float32 ulp is 6e-5.
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_attention_impls_and_errors():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.standard_normal((2, 5, 3, 8)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((2, 7, 3, 8)), jnp.float32)
  v = jnp.asarray(rng.standard_normal((2, 7, 3, 8)), jnp.float32)
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  ref = np.einsum("bhqk,bkhd->bqhd", probs / probs.sum(-1, keepdims=True), v)
  mask = jnp.asarray(rng.random((2, 1, 5, 7)) > 0.3).at[..., 0].set(True)
  for impl in ("xla", "dot_product"):
    for upcast in (False, True):
      out = attention_lib.attention(q, k, v, impl=impl, upcast=upcast)
      np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(
        attention_lib.attention(q, k, v, impl=impl, mask=mask),
        attention_lib.attention(q, k, v, impl="xla", mask=mask), atol=1e-5)
  bf16 = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  out = attention_lib.attention(*bf16, impl="xla", upcast=True)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=3e-2)
  with pytest.raises(ValueError, match="xla"):
    attention_lib.attention(q, k, v, impl="flash")
  if jax.default_backend() != "gpu":
    with pytest.raises(ValueError, match="cudnn"):
      attention_lib.attention(*bf16, impl="cudnn")
  if jax.default_backend() != "tpu":
    with pytest.raises(ValueError, match="tpu_splash"):
      attention_lib.attention(q, k, v, impl="tpu_splash")


def test_sd21_config_builds_with_published_parameter_count():
  module = UNet2DConditionModel(**sd21.unet_config("base"))
  assert module.attention_head_dim == (5, 10, 20, 20)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0),
                          jax.ShapeDtypeStruct((1, 64, 64, 4), jnp.float32),
                          jax.ShapeDtypeStruct((1,), jnp.float32),
                          jax.ShapeDtypeStruct((1, 77, 1024), jnp.float32))
  # diffusers' stable-diffusion-2-1(-base) UNet has 865,910,724 parameters.
  assert sum(np.prod(s.shape) for s in jax.tree.leaves(shapes)) == 865_910_724


def test_remat_checkpoints_each_block():
  x, t, ctx = _inputs(SD1, (8, 8), batch=1)
  plain = UNet2DConditionModel(**SD1)
  remat = UNet2DConditionModel(**SD1, remat=True)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: jnp.asarray(0.1 * rng.standard_normal(a.shape), jnp.float32),
                        unet_param_shapes(plain, (8, 8)))
  loss = lambda m: lambda p: jnp.mean(m.apply({"params": p}, x, t, ctx, train=True) ** 2)
  # Gradient jaxprs only (no compile): one checkpoint per down / mid / up block when remat.
  count = lambda m: len(re.findall(r"\b(?:remat2|checkpoint)\[",
                                   str(jax.make_jaxpr(jax.grad(loss(m)))(params))))
  assert count(plain) == 0
  assert count(remat) == 2 * len(SD1["block_out_channels"]) + 1


def test_tpu_splash_wrapper_in_interpret_mode(monkeypatch):
  """Pads odd lengths (130 queries, 77 keys) to the kernel's blocks and masks padded keys."""
  splash = pytest.importorskip(
      "jax.experimental.pallas.ops.tpu.splash_attention.splash_attention_kernel")
  monkeypatch.setattr(splash, "make_splash_mha",
                      functools.partial(splash.make_splash_mha, interpret=True))
  monkeypatch.setattr(attention_lib.jax, "default_backend", lambda: "tpu")
  attention_lib._splash_kernel.cache_clear()  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.standard_normal((2, 130, 2, 64)), jnp.float32)
  k, v = (jnp.asarray(rng.standard_normal((2, 77, 2, 64)), jnp.float32) for _ in range(2))
  out = attention_lib.attention(q, k, v, impl="tpu_splash")
  attention_lib._splash_kernel.cache_clear()  # pylint: disable=protected-access
  monkeypatch.undo()
  np.testing.assert_allclose(out, attention_lib.attention(q, k, v, impl="xla"), atol=1e-5)
