"""diffusers `UNet2DConditionModel` directory (config.json + safetensors) -> our Flax UNet.

Parameter names map by one rule: split the PyTorch name on '.', glue each integer index onto the
name before it with '_', and rename the leaf (`weight` -> `kernel` for convs / linears, `scale`
for norms). Layouts: conv [O, I, kh, kw] -> [kh, kw, I, O], linear [O, I] -> [I, O].
Example: `down_blocks.1.attentions.0.proj_in.weight` -> `down_blocks_1/attentions_0/proj_in/kernel`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from neural_assets.convert.checkpoint_io import (fill_params, read_json, read_safetensors,
                                                 torch_conv_to_flax, torch_linear_to_flax)
from neural_assets.models.unet import UNet2DConditionModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"

# diffusers config keys that become UNet2DConditionModel fields of the same name.
_FIELD_KEYS = (
    "sample_size", "in_channels", "out_channels", "down_block_types", "up_block_types",
    "block_out_channels", "layers_per_block", "attention_head_dim", "num_attention_heads",
    "cross_attention_dim", "use_linear_projection", "only_cross_attention",
    "mid_block_only_cross_attention", "upcast_attention", "norm_num_groups", "norm_eps",
    "flip_sin_to_cos", "freq_shift", "transformer_layers_per_block", "downsample_padding",
    "mid_block_scale_factor", "dropout",
)
# Keys for features we do not implement: accepted only at the value that switches them off.
_FIXED_KEYS = {
    "center_input_sample": (False,),
    "mid_block_type": ("UNetMidBlock2DCrossAttn",),
    "act_fn": ("silu", "swish"),
    "dual_cross_attention": (False,),
    "class_embed_type": (None,),
    "addition_embed_type": (None,),
    "addition_time_embed_dim": (None,),
    "num_class_embeds": (None,),
    "resnet_time_scale_shift": ("default",),
    "resnet_skip_time_act": (False,),
    "resnet_out_scale_factor": (1, 1.0),
    "time_embedding_type": ("positional",),
    "time_embedding_dim": (None,),
    "time_embedding_act_fn": (None,),
    "timestep_post_act": (None,),
    "time_cond_proj_dim": (None,),
    "conv_in_kernel": (3,),
    "conv_out_kernel": (3,),
    "projection_class_embeddings_input_dim": (None,),
    "attention_type": ("default",),
    "class_embeddings_concat": (False,),
    "cross_attention_norm": (None,),
    "encoder_hid_dim": (None,),
    "encoder_hid_dim_type": (None,),
    "reverse_transformer_layers_per_block": (None,),
}
# Keys that only parameterise features switched off above.
_IGNORED_KEYS = ("addition_embed_type_num_heads",)


def _tuples(value):
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def unet_fields_from_diffusers_config(config: Mapping[str, Any]) -> dict[str, Any]:
  """diffusers UNet `config.json` dict -> `UNet2DConditionModel` keyword arguments.

  Raises ValueError naming the key for any value we do not implement (never ignores it).
  """
  fields = {}
  for key, value in config.items():
    value = _tuples(value)
    if key.startswith("_") or key in _IGNORED_KEYS:
      continue
    if key in _FIELD_KEYS:
      fields[key] = value
    elif key in _FIXED_KEYS:
      if value not in _FIXED_KEYS[key]:
        raise ValueError(f"diffusers UNet config {key}={value!r} is not supported (only "
                         f"{_FIXED_KEYS[key]}).")
    else:
      raise ValueError(f"diffusers UNet config key {key!r} (= {value!r}) is not supported.")
  tlpb = fields.get("transformer_layers_per_block", 1)
  if isinstance(tlpb, tuple) and any(isinstance(t, tuple) for t in tlpb):
    raise ValueError("diffusers UNet config transformer_layers_per_block with per-layer lists "
                     f"({tlpb}) is not supported.")
  return fields


def _flax_path(name: str, ndim: int) -> tuple[str, ...]:
  parts = name.split(".")
  *modules, leaf = parts
  path = []
  for p in modules:
    if p.isdigit() and path:
      path[-1] = f"{path[-1]}_{p}"
    else:
      path.append(p)
  if leaf == "bias":
    return tuple(path) + ("bias",)
  if leaf == "weight":
    return tuple(path) + ("scale" if ndim == 1 else "kernel",)
  raise ValueError(f"Unexpected parameter name {name!r} in a diffusers UNet checkpoint.")


def convert_unet_state_dict(state_dict: Mapping[str, np.ndarray]
                            ) -> dict[tuple[str, ...], np.ndarray]:
  """PyTorch state dict (name -> array) -> {Flax path: array in Flax layout}."""
  out = {}
  for name, w in state_dict.items():
    if w.ndim == 4:
      w = torch_conv_to_flax(w)
    elif w.ndim == 2:
      w = torch_linear_to_flax(w)
    out[_flax_path(name, w.ndim)] = w
  return out


def unet_param_shapes(module: UNet2DConditionModel, sample_hw: tuple[int, int] = (16, 16),
                      context_len: int = 8) -> Any:
  """The module's parameter tree as zero-memory float32 arrays of the right shapes."""
  n_down = len(module.block_out_channels) - 1
  h, w = (max(s, 2 ** n_down) for s in sample_hw)
  cross = module.cross_attention_dim
  cross = cross if isinstance(cross, int) else cross[0]
  shapes = jax.eval_shape(
      module.init, jax.random.PRNGKey(0),
      jax.ShapeDtypeStruct((1, h, w, module.in_channels), jnp.float32),
      jax.ShapeDtypeStruct((1,), jnp.float32),
      jax.ShapeDtypeStruct((1, context_len, cross), jnp.float32))["params"]
  return jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), shapes)


@dataclasses.dataclass
class LoadedUNet:
  """`unet(x [B,H,W,C], t [B], context [B,L,D]) -> [B,H,W,C]` with `.module` and `.params`."""
  module: UNet2DConditionModel
  params: Any
  config: dict[str, Any]
  _apply: Callable[..., jax.Array] = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    self._apply = jax.jit(lambda p, x, t, c: self.module.apply({"params": p}, x, t, c))

  def __call__(self, x, t, context):
    return self._apply(self.params, x, t, context)


def load_diffusers_unet(directory: str, dtype: Any = jnp.float32, attention_impl: str = "xla",
                        **overrides) -> LoadedUNet:
  """Loads `directory/{config.json, diffusion_pytorch_model.safetensors}` (e.g. an SD `unet/`).

  `overrides` set other UNet2DConditionModel fields (e.g. remat=True). Raises
  CheckpointMismatchError naming the first parameter that does not fit the config.
  """
  config = read_json(os.path.join(directory, CONFIG_FILE))
  fields = unet_fields_from_diffusers_config(config)
  module = UNet2DConditionModel(**fields, dtype=dtype, attention_impl=attention_impl, **overrides)
  converted = convert_unet_state_dict(read_safetensors(directory, WEIGHTS_FILE))
  params = fill_params(unet_param_shapes(module), converted, f"diffusers UNet in {directory}")
  return LoadedUNet(module, jax.tree.map(jnp.asarray, params), config)
