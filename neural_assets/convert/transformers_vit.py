"""transformers ViT / DINOv2 checkpoint (config.json + model.safetensors) -> our Flax `ViT`.

Supported `model_type`s: 'vit' (`ViTModel`, e.g. facebook/dino-vitb8), 'dinov2' (`Dinov2Model`)
and 'dinov2_with_registers' (`Dinov2WithRegistersModel`). Parameter names are accepted in the
on-disk layout transformers writes (`encoder.layer.0.attention.attention.query.weight`) and in
transformers 5's in-memory names (`layers.0.attention.q_proj.weight`); a model prefix such as
`vit.` / `dinov2.` (from a *ForImageClassification checkpoint) is stripped. The pooler, the
classifier head and DINOv2's mask token are not part of our encoder and are skipped.

Usage:
  vit = load_transformers_vit("/ckpt/dino-vitb8")
  hidden = vit(pixels)   # [B, H, W, 3] ImageNet-normalised -> [B, 1 + N, 768]
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from neural_assets.convert import checkpoint_io
from neural_assets.models.vit import ViT

WEIGHTS_NAME = "model.safetensors"
MODEL_TYPES = ("vit", "dinov2", "dinov2_with_registers")
# Leading module names of task-head checkpoints wrapping the backbone.
_MODEL_PREFIXES = ("vit.", "dinov2.", "dinov2_with_registers.")
# Parameters of the PyTorch models that our encoder does not have.
_SKIPPED = re.compile(r"^(pooler\.|classifier\.|embeddings\.mask_token$)")
_LAYER = re.compile(r"^(?:encoder\.layers?|layers)\.(\d+)\.(.+)\.(weight|bias|lambda1)$")
# Per-layer module names (old on-disk | new in-memory) -> our path inside `layer_{i}`.
_LAYER_MODULES = {
    "layernorm_before": ("norm1",), "norm1": ("norm1",),
    "layernorm_after": ("norm2",), "norm2": ("norm2",),
    "attention.attention.query": ("attention", "query"), "attention.q_proj": ("attention", "query"),
    "attention.attention.key": ("attention", "key"), "attention.k_proj": ("attention", "key"),
    "attention.attention.value": ("attention", "value"), "attention.v_proj": ("attention", "value"),
    "attention.output.dense": ("attention", "out"), "attention.o_proj": ("attention", "out"),
    "intermediate.dense": ("mlp", "fc1"), "mlp.fc1": ("mlp", "fc1"),
    "output.dense": ("mlp", "fc2"), "mlp.fc2": ("mlp", "fc2"),
    "layer_scale1": ("layer_scale1",), "layer_scale2": ("layer_scale2",),
}


@dataclasses.dataclass(frozen=True)
class LoadedViT:
  """A converted encoder; calling it runs the jitted forward pass with `params`."""
  module: ViT
  params: Any
  config_fields: dict[str, Any]
  apply_fn: Callable[..., Any]

  def __call__(self, pixels: jax.Array) -> jax.Array:
    """pixels [B, H, W, 3] (normalised as the checkpoint expects) -> [B, 1 + R + N, D]."""
    return self.apply_fn(self.params, pixels)


def _int_field(config: Mapping[str, Any], key: str) -> int:
  value = config[key]
  if isinstance(value, (list, tuple)):
    if len(set(value)) != 1:
      raise checkpoint_io.CheckpointMismatchError(
          f"transformers ViT config {key}={value}: only square sizes are supported.")
    value = value[0]
  return int(value)


def vit_fields_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
  """transformers config.json dict -> our ViT's constructor fields."""
  model_type = config.get("model_type")
  if model_type not in MODEL_TYPES:
    raise checkpoint_io.CheckpointMismatchError(
        f"Unsupported transformers model_type {model_type!r}: expected one of {MODEL_TYPES}.")
  if config.get("hidden_act", "gelu") != "gelu":
    raise checkpoint_io.CheckpointMismatchError(
        f"hidden_act={config['hidden_act']!r} is not supported (our ViT uses exact GELU).")
  if config.get("use_swiglu_ffn", False):
    raise checkpoint_io.CheckpointMismatchError(
        "use_swiglu_ffn=True (DINOv2 giant) is not supported by our ViT.")
  hidden = int(config["hidden_size"])
  fields = dict(
      hidden_size=hidden,
      num_hidden_layers=int(config["num_hidden_layers"]),
      num_attention_heads=int(config["num_attention_heads"]),
      patch_size=_int_field(config, "patch_size"),
      image_size=_int_field(config, "image_size"),
      layer_norm_eps=float(config["layer_norm_eps"]),
      num_channels=int(config.get("num_channels", 3)),
      qkv_bias=bool(config.get("qkv_bias", True)),
  )
  if model_type == "vit":
    fields.update(kind="dino", intermediate_size=int(config["intermediate_size"]),
                  num_register_tokens=0, interpolate_antialias=False)
  else:
    # Dinov2 sizes its MLP by mlp_ratio; its config's intermediate_size is unused.
    fields.update(kind="dinov2", intermediate_size=int(hidden * config.get("mlp_ratio", 4)),
                  layerscale_value=float(config.get("layerscale_value", 1.0)),
                  num_register_tokens=int(config.get("num_register_tokens", 0))
                  if model_type == "dinov2_with_registers" else 0,
                  # Only Dinov2WithRegistersModel interpolates positions with antialiasing.
                  interpolate_antialias=model_type == "dinov2_with_registers")
  return fields


def _convert_leaf(path: tuple[str, ...], kind: str, value: np.ndarray):
  if kind == "lambda1":
    return path + ("lambda1",), value
  if kind == "bias":
    return path + ("bias",), value
  if value.ndim == 1:
    return path + ("scale",), value
  if value.ndim == 2:
    return path + ("kernel",), checkpoint_io.torch_linear_to_flax(value)
  return path + ("kernel",), checkpoint_io.torch_conv_to_flax(value)


def convert_state_dict(state: Mapping[str, np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
  """transformers ViT / Dinov2 state dict -> {Flax path: array} in Flax layouts."""
  out = {}
  for raw_name, value in state.items():
    name = raw_name
    for prefix in _MODEL_PREFIXES:
      if name.startswith(prefix):
        name = name[len(prefix):]
        break
    if _SKIPPED.match(name):
      continue
    layer = _LAYER.match(name)
    if name in ("embeddings.cls_token", "embeddings.position_embeddings",
                "embeddings.register_tokens"):
      path, leaf = ("embeddings", name.split(".")[1]), value
    elif name.startswith("embeddings.patch_embeddings.projection."):
      path, leaf = _convert_leaf(("embeddings", "patch_embeddings"), name.rsplit(".", 1)[1], value)
    elif name.startswith("layernorm."):
      path, leaf = _convert_leaf(("layernorm",), name.rsplit(".", 1)[1], value)
    elif layer and layer.group(2) in _LAYER_MODULES:
      path, leaf = _convert_leaf((f"layer_{layer.group(1)}",) + _LAYER_MODULES[layer.group(2)],
                                 layer.group(3), value)
    else:
      raise checkpoint_io.CheckpointMismatchError(
          f"transformers ViT: checkpoint parameter {raw_name} {tuple(value.shape)} has no place in "
          "our ViT.")
    out[path] = leaf
  return out


def load_transformers_vit(directory: str, *, dtype: Any = jnp.float32,
                          attention_impl: str = "xla") -> LoadedViT:
  """Reads a transformers ViT / Dinov2 folder (config.json + model.safetensors) into our ViT.

  Args:
    directory: the checkpoint folder (as written by `save_pretrained`).
    dtype: computation dtype (parameters stay float32).
    attention_impl: attention kernel (see models/attention.py).

  Raises:
    CheckpointMismatchError: unknown model_type, unsupported option, or a parameter that does not
      fit the model built from config.json (the first one is named).
  """
  config = checkpoint_io.read_json(os.path.join(directory, "config.json"))
  fields = vit_fields_from_config(config)
  module = ViT(**fields, dtype=dtype, attention_impl=attention_impl)
  probe = jnp.zeros((1, module.image_size, module.image_size, module.num_channels), jnp.float32)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), probe)["params"]
  # Zero-stride numpy leaves: fill_params reads shapes / dtypes without allocating the model.
  template = jax.tree_util.tree_map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape),
                                    shapes)
  state = checkpoint_io.read_safetensors(directory, WEIGHTS_NAME)
  params = checkpoint_io.fill_params(template, convert_state_dict(state),
                                     f"transformers {config['model_type']} {directory}")
  params = jax.tree_util.tree_map(jnp.asarray, params)
  apply_fn = jax.jit(lambda p, x: module.apply({"params": p}, x))
  return LoadedViT(module=module, params=params, config_fields=fields, apply_fn=apply_fn)
