"""diffusers `AutoencoderKL` checkpoint (config.json + diffusion_pytorch_model.safetensors) -> Flax.

Our `AutoencoderKL` mirrors diffusers' module names, so the conversion is a rename: numeric
PyTorch path components join the name before them (`down_blocks.0` -> `down_blocks_0`,
`to_out.0` -> `to_out_0`), `weight` becomes `kernel` (convs [O, I, kh, kw] -> [kh, kw, I, O],
linears [O, I] -> [I, O]) or `scale` (norms). Checkpoints from before diffusers renamed the
attention layers (`query` / `key` / `value` / `proj_attn`, possibly stored as 1x1 convs) are
accepted too.

Usage:
  vae = load_diffusers_vae("/ckpt/stable-diffusion-2-1-base/vae")  # or the pipeline root
  mean = vae.encode(images)          # [B, H, W, 3] in [-1, 1] -> [B, H/8, W/8, 4]
  images = vae.decode(mean)          # unscaled latents; multiply by vae.scaling_factor for a UNet
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
from neural_assets.models.vae import AutoencoderKL

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# config.json keys that do not change the forward pass (diffusers bookkeeping, pipeline hints).
_IGNORED_CONFIG_KEYS = ("force_upcast", "latents_mean", "latents_std")
# Pre-0.14 diffusers attention names -> current ones.
_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


@dataclasses.dataclass(frozen=True)
class LoadedVAE:
  """A converted VAE: `encode` / `decode` are jitted closures over `params`."""
  module: AutoencoderKL
  params: Any
  encode_fn: Callable[..., Any]
  decode_fn: Callable[..., Any]

  @property
  def scaling_factor(self) -> float:
    return self.module.scaling_factor

  def encode(self, images: jax.Array) -> jax.Array:
    """[B, H, W, 3] in [-1, 1] -> latent mean [B, h, w, C] (unscaled)."""
    return self.encode_fn(self.params, images)[0]

  def encode_moments(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[B, H, W, 3] in [-1, 1] -> (mean, logvar), each [B, h, w, C]."""
    return self.encode_fn(self.params, images)

  def decode(self, latents: jax.Array) -> jax.Array:
    """Unscaled latents [B, h, w, C] -> images [B, H, W, 3] (about [-1, 1])."""
    return self.decode_fn(self.params, latents)


def module_from_config(config: Mapping[str, Any], **overrides) -> AutoencoderKL:
  """Builds our AutoencoderKL from a diffusers config.json dict; unknown keys raise."""
  fields = {f.name for f in dataclasses.fields(AutoencoderKL)} - {"parent", "name"}
  kwargs = {}
  for key, value in config.items():
    if key.startswith("_") or key in _IGNORED_CONFIG_KEYS:
      continue
    if key not in fields:
      raise checkpoint_io.CheckpointMismatchError(
          f"diffusers VAE config key {key!r}={value!r} is not supported by our AutoencoderKL.")
    kwargs[key] = tuple(value) if isinstance(value, list) else value
  kwargs.update(overrides)
  return AutoencoderKL(**kwargs)


def _flax_path(torch_name: str) -> tuple[tuple[str, ...], str]:
  parts = torch_name.split(".")
  for old, new in _LEGACY_ATTENTION.items():
    if len(parts) >= 2 and parts[-2] == old:
      parts = parts[:-2] + new.split(".") + parts[-1:]
      break
  path = []
  for part in parts[:-1]:
    if re.fullmatch(r"\d+", part) and path:
      path[-1] = f"{path[-1]}_{part}"
    else:
      path.append(part)
  return tuple(path), parts[-1]


def convert_state_dict(state: Mapping[str, np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
  """diffusers AutoencoderKL state dict -> {Flax path: array} in Flax layouts."""
  out = {}
  for name, value in state.items():
    path, leaf = _flax_path(name)
    if leaf == "bias":
      out[path + ("bias",)] = value
    elif leaf == "weight" and value.ndim == 1:
      out[path + ("scale",)] = value
    elif leaf == "weight" and value.ndim == 2:
      out[path + ("kernel",)] = checkpoint_io.torch_linear_to_flax(value)
    elif leaf == "weight" and value.ndim == 4 and path[-1].startswith(("to_q", "to_k", "to_v",
                                                                        "to_out")):
      # Old checkpoints store the attention projections as 1x1 convs.
      out[path + ("kernel",)] = checkpoint_io.torch_linear_to_flax(value[:, :, 0, 0])
    elif leaf == "weight" and value.ndim == 4:
      out[path + ("kernel",)] = checkpoint_io.torch_conv_to_flax(value)
    else:
      raise checkpoint_io.CheckpointMismatchError(
          f"diffusers VAE: cannot convert parameter {name} of shape {value.shape}.")
  return out


def checkpoint_io_template(variables: Any) -> Any:
  """`eval_shape` output -> zero-stride numpy leaves that fill_params can read shape / dtype of,
  without allocating the model."""
  return jax.tree_util.tree_map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape),
                                variables["params"])


def _resolve_directory(directory: str) -> str:
  """Accepts the VAE folder itself or a diffusers pipeline root holding `vae/`."""
  if not os.path.exists(os.path.join(directory, "config.json")):
    sub = os.path.join(directory, "vae")
    if os.path.exists(os.path.join(sub, "config.json")):
      return sub
    raise FileNotFoundError(f"No config.json in {directory} (nor in {sub}): expected a diffusers "
                            "AutoencoderKL folder.")
  return directory


def load_diffusers_vae(directory: str, *, dtype: Any = jnp.float32,
                       attention_impl: str = "xla") -> LoadedVAE:
  """Reads a diffusers AutoencoderKL folder into our Flax AutoencoderKL.

  Args:
    directory: folder with config.json and diffusion_pytorch_model.safetensors, or a pipeline
      root containing it as `vae/`.
    dtype: computation dtype (parameters stay float32).
    attention_impl: kernel for the mid-block attention (see models/attention.py).

  Raises:
    CheckpointMismatchError: the config or a parameter does not fit our AutoencoderKL.
  """
  directory = _resolve_directory(directory)
  config = checkpoint_io.read_json(os.path.join(directory, "config.json"))
  class_name = config.get("_class_name", "AutoencoderKL")
  if class_name != "AutoencoderKL":
    raise checkpoint_io.CheckpointMismatchError(
        f"{directory} holds a diffusers {class_name}, not an AutoencoderKL.")
  module = module_from_config(config, dtype=dtype, attention_impl=attention_impl)
  probe = jnp.zeros((1, 8 * module.downsample_factor, 8 * module.downsample_factor,
                     module.in_channels), jnp.float32)
  template = checkpoint_io_template(jax.eval_shape(module.init, jax.random.PRNGKey(0), probe))
  state = checkpoint_io.read_safetensors(directory, WEIGHTS_NAME)
  params = checkpoint_io.fill_params(template, convert_state_dict(state),
                                     f"diffusers VAE {directory}")
  params = jax.tree_util.tree_map(jnp.asarray, params)
  encode_fn = jax.jit(lambda p, x: module.apply({"params": p}, x, method=AutoencoderKL.encode))
  decode_fn = jax.jit(lambda p, z: module.apply({"params": p}, z, method=AutoencoderKL.decode))
  return LoadedVAE(module=module, params=params, encode_fn=encode_fn, decode_fn=decode_fn)
