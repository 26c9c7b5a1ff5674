"""DINO / DINOv2 Vision Transformer image encoder in Flax linen (NHWC).

Matches transformers' `ViTModel` (DINO v1, `kind='dino'`) and `Dinov2Model` /
`Dinov2WithRegistersModel` (`kind='dinov2'`: layer scale, optional register tokens) up to the final
layernorm (no pooler). Field names are the transformers config keys.

  pixels [B, H, W, C] --patch conv--> [B, h, w, D], h = H // patch_size
  tokens = [CLS + pos_0, (registers), patches + pos_1..N] -> pre-LN blocks -> layernorm
  -> last_hidden_state [B, 1 + R + N, D]

Position embeddings are learned for an `image_size // patch_size` square grid; any other grid
gets them resized like transformers' `interpolate_pos_encoding=True` (PyTorch bicubic,
align_corners=False; antialiased for `Dinov2WithRegistersModel`), with the resampling weights built
here in numpy so that the result matches PyTorch numerically (jax.image.resize's cubic kernel and
border handling differ).

Parameter tree: `embeddings/{patch_embeddings, cls_token, position_embeddings, register_tokens}`,
`layer_{i}/{norm1, attention/{query, key, value, out}, layer_scale1, norm2, mlp/{fc1, fc2},
layer_scale2}`, `layernorm`. `neural_assets.convert.transformers_vit` maps checkpoints onto it.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from neural_assets.models import attention as attention_lib
from neural_assets.models.partitioning import constrain_batch

KINDS = ("dino", "dinov2")
# PyTorch's cubic convolution constants: plain bicubic uses A = -0.75, the antialiased kernel the
# PIL-compatible A = -0.5.
_CUBIC_A = -0.75
_CUBIC_A_ANTIALIAS = -0.5
# Taps of the cubic kernel (its support is [-2, 2]).
_CUBIC_TAPS = 4


def _cubic_kernel(x: np.ndarray, a: float) -> np.ndarray:
  x = np.abs(x)
  near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
  far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
  return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_resize_matrix(in_size: int, out_size: int, antialias: bool = False) -> np.ndarray:
  """[out_size, in_size] float32 weights of PyTorch's 1-D bicubic resize (align_corners=False).

  `antialias=False` is `F.interpolate(mode='bicubic')`: A=-0.75, out-of-range taps clamped to the
  border. `antialias=True` is `F.interpolate(mode='bicubic', antialias=True)`: A=-0.5, the kernel
  widened by the downscale factor, out-of-range taps dropped and the weights renormalised.
  """
  if in_size < 1 or out_size < 1:
    raise ValueError(f"bicubic_resize_matrix needs positive sizes, got {in_size} -> {out_size}.")
  scale = in_size / out_size
  weights = np.zeros((out_size, in_size), np.float64)
  for i in range(out_size):
    if antialias:
      support = (_CUBIC_TAPS / 2) * max(scale, 1.0)
      inv_scale = 1.0 / scale if scale >= 1.0 else 1.0
      center = scale * (i + 0.5)
      lo = max(int(center - support + 0.5), 0)
      hi = min(int(center + support + 0.5), in_size)
      taps = np.arange(lo, hi)
      w = _cubic_kernel((taps - center + 0.5) * inv_scale, _CUBIC_A_ANTIALIAS)
      total = w.sum()
      weights[i, taps] += w / total if total != 0 else w
    else:
      src = scale * (i + 0.5) - 0.5
      base = math.floor(src)
      t = src - base
      offsets = np.arange(-1, _CUBIC_TAPS - 1)
      w = _cubic_kernel(offsets - t, _CUBIC_A)
      np.add.at(weights[i], np.clip(base + offsets, 0, in_size - 1), w)
  return weights.astype(np.float32)


def interpolate_position_embeddings(pos: jax.Array, grid_hw: tuple[int, int],
                                    antialias: bool = False) -> jax.Array:
  """Resizes a square grid of patch position embeddings, as transformers does.

  Args:
    pos: [1 + G*G, D] (class position first, then a G x G grid row-major).
    grid_hw: (h, w) target patch grid.
    antialias: Dinov2WithRegisters resamples with antialiasing, ViT / Dinov2 without.

  Returns:
    [1 + h*w, D], computed in float32.
  """
  num_grid = pos.shape[0] - 1
  side = math.isqrt(num_grid)
  if side * side != num_grid:
    raise ValueError(f"Position embeddings of {num_grid} patches are not a square grid.")
  h, w = grid_hw
  if (h, w) == (side, side):
    return pos
  grid = einops.rearrange(pos[1:].astype(jnp.float32), "(y x) d -> y x d", y=side)
  wy = jnp.asarray(bicubic_resize_matrix(side, h, antialias))
  wx = jnp.asarray(bicubic_resize_matrix(side, w, antialias))
  grid = jnp.einsum("py,qx,yxd->pqd", wy, wx, grid, precision=jax.lax.Precision.HIGHEST)
  patches = einops.rearrange(grid, "h w d -> (h w) d").astype(pos.dtype)
  return jnp.concatenate([pos[:1], patches], axis=0)


def patch_feature_map(hidden: jax.Array, num_prefix: int, grid_hw: tuple[int, int]) -> jax.Array:
  """last_hidden_state [B, num_prefix + h*w, D] -> patch features [B, h, w, D] (drops CLS/regs)."""
  h, w = grid_hw
  if hidden.ndim != 3 or hidden.shape[1] != num_prefix + h * w:
    raise ValueError(f"patch_feature_map: hidden {hidden.shape} does not hold {num_prefix} prefix "
                     f"tokens + a {h}x{w} patch grid.")
  return einops.rearrange(hidden[:, num_prefix:], "b (h w) d -> b h w d", h=h, w=w)


class SelfAttention(nn.Module):
  """Multi-head self-attention: [B, L, D] -> [B, L, D]."""
  num_heads: int
  qkv_bias: bool = True
  dtype: Any = jnp.float32
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.shape[-1]
    split = lambda t: einops.rearrange(t, "b l (h k) -> b l h k", h=self.num_heads)
    q, k, v = (split(constrain_batch(
        nn.Dense(d, use_bias=self.qkv_bias, dtype=self.dtype, name=n)(x)))
               for n in ("query", "key", "value"))
    # transformers computes the softmax in float32.
    y = attention_lib.attention(q, k, v, impl=self.attention_impl, upcast=True)
    return constrain_batch(
        nn.Dense(d, dtype=self.dtype, name="out")(einops.rearrange(y, "b l h k -> b l (h k)")))


class LayerScale(nn.Module):
  """Per-channel scale (DINOv2): [..., D] -> [..., D]."""
  init_value: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    lam = self.param("lambda1", nn.initializers.constant(self.init_value), (x.shape[-1],))
    return x * lam.astype(x.dtype)


class Mlp(nn.Module):
  """fc1 -> exact GELU -> fc2: [B, L, D] -> [B, L, D]."""
  intermediate_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.Dense(self.intermediate_size, dtype=self.dtype, name="fc1")(x)
    return nn.Dense(x.shape[-1], dtype=self.dtype, name="fc2")(nn.gelu(h, approximate=False))


class Block(nn.Module):
  """Pre-LN transformer block, with DINOv2's layer scale when `layer_scale`: [B, L, D] -> same."""
  num_heads: int
  intermediate_size: int
  layer_norm_eps: float
  layer_scale: bool
  layerscale_value: float = 1.0
  qkv_bias: bool = True
  dtype: Any = jnp.float32
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    norm = functools.partial(nn.LayerNorm, epsilon=self.layer_norm_eps, dtype=self.dtype,
                             use_fast_variance=False)
    scale = ((lambda n: LayerScale(self.layerscale_value, name=n)) if self.layer_scale
             else (lambda n: lambda t: t))
    y = SelfAttention(self.num_heads, self.qkv_bias, self.dtype, self.attention_impl,
                      name="attention")(norm(name="norm1")(x))
    x = x + scale("layer_scale1")(y)
    y = Mlp(self.intermediate_size, self.dtype, name="mlp")(norm(name="norm2")(x))
    return constrain_batch(x + scale("layer_scale2")(y))


class Embeddings(nn.Module):
  """Patch conv + CLS + (interpolated) positions + registers: [B, H, W, C] -> [B, 1+R+N, D]."""
  hidden_size: int
  patch_size: int
  image_size: int
  num_register_tokens: int = 0
  interpolate_antialias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pixels: jax.Array) -> jax.Array:
    p, d = self.patch_size, self.hidden_size
    patches = nn.Conv(d, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                      name="patch_embeddings")(pixels)
    b, h, w, _ = patches.shape
    side = self.image_size // p
    init = nn.initializers.truncated_normal(0.02)
    cls = self.param("cls_token", init, (1, 1, d))
    pos = self.param("position_embeddings", init, (1, 1 + side * side, d))
    pos = interpolate_position_embeddings(pos[0], (h, w), self.interpolate_antialias)
    patches = einops.rearrange(patches, "b h w d -> b (h w) d") + pos[1:].astype(self.dtype)
    tokens = [jnp.broadcast_to((cls[0] + pos[:1]).astype(self.dtype), (b, 1, d))]
    if self.num_register_tokens:
      regs = self.param("register_tokens", init, (1, self.num_register_tokens, d))
      tokens.append(jnp.broadcast_to(regs.astype(self.dtype), (b, self.num_register_tokens, d)))
    return jnp.concatenate(tokens + [patches], axis=1)


class ViT(nn.Module):
  """DINO (`kind='dino'`) / DINOv2 (`kind='dinov2'`) ViT: pixels [B, H, W, C] -> [B, 1+R+N, D].

  `pixels` are normalised as the checkpoint expects (ImageNet mean / std for DINO). H and W need
  not equal `image_size`: N = (H // patch_size) * (W // patch_size) and the position embeddings
  are interpolated. `interpolate_antialias` is True only for transformers'
  `Dinov2WithRegistersModel`, whose interpolation is antialiased.
  """
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  patch_size: int = 16
  image_size: int = 224
  layer_norm_eps: float = 1e-12
  num_register_tokens: int = 0
  kind: str = "dino"
  num_channels: int = 3
  qkv_bias: bool = True
  layerscale_value: float = 1.0
  interpolate_antialias: bool = False
  dtype: Any = jnp.float32
  attention_impl: str = "xla"

  @classmethod
  def from_config(cls, config: Mapping[str, Any], **overrides) -> "ViT":
    """Builds a ViT from a config (e.g. `configs/dino.py`), ignoring keys that are not fields
    (preprocessing settings such as image_mean live in the same config)."""
    names = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    return cls(**{k: v for k, v in dict(config).items() if k in names}, **overrides)

  @property
  def num_prefix_tokens(self) -> int:
    """CLS + registers, the tokens before the patches in the output."""
    return 1 + self.num_register_tokens

  def grid_size(self, height: int, width: int) -> tuple[int, int]:
    """Patch grid (h, w) for an H x W input."""
    return height // self.patch_size, width // self.patch_size

  @nn.compact
  def __call__(self, pixels: jax.Array) -> jax.Array:
    if self.kind not in KINDS:
      raise ValueError(f"Unknown ViT kind {self.kind!r}: expected one of {KINDS}.")
    if self.kind == "dino" and self.num_register_tokens:
      raise ValueError("DINO v1 ViTs have no register tokens; use kind='dinov2'.")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                       f"{self.num_attention_heads}.")
    if pixels.ndim != 4 or pixels.shape[-1] != self.num_channels:
      raise ValueError(f"ViT expects pixels [B, H, W, {self.num_channels}], got {pixels.shape}.")
    if min(pixels.shape[1:3]) < self.patch_size:
      raise ValueError(f"ViT input {pixels.shape[1:3]} is smaller than one {self.patch_size}px "
                       "patch.")
    x = Embeddings(self.hidden_size, self.patch_size, self.image_size, self.num_register_tokens,
                   self.interpolate_antialias, self.dtype, name="embeddings")(
                       pixels.astype(self.dtype))
    for i in range(self.num_hidden_layers):
      x = Block(self.num_attention_heads, self.intermediate_size, self.layer_norm_eps,
                layer_scale=self.kind == "dinov2", layerscale_value=self.layerscale_value,
                qkv_bias=self.qkv_bias, dtype=self.dtype, attention_impl=self.attention_impl,
                name=f"layer_{i}")(x)
    return nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, use_fast_variance=False,
                        name="layernorm")(x)
