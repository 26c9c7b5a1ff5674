"""Stable Diffusion's conditional UNet (diffusers' `UNet2DConditionModel`, SD 1.x / 2.x family).

NHWC throughout. Fields are diffusers' `config.json` keys so a published config maps one to one
(`neural_assets.convert.diffusers_unet.unet_fields_from_diffusers_config`); `attention_impl`,
`dtype` and `remat` are ours. Submodule names mirror diffusers' parameter names with '.' before an
index replaced by '_' (`down_blocks.0.resnets.1.conv1` -> `down_blocks_0/resnets_1/conv1`), so the
checkpoint conversion is a rename plus a layout change.

Numerics that must match diffusers: GroupNorm / LayerNorm statistics in float32 with two-pass
variance; the sinusoidal timestep embedding of `get_timestep_embedding`; exact (erf) GELU in GEGLU;
nearest x2 upsampling then conv; stride-2 conv downsampling; skips concatenated after the hidden
state, consumed last-in first-out.

diffusers naming quirk: for SD configs `attention_head_dim` is the NUMBER OF HEADS per level (head
size = channels / heads) unless `num_attention_heads` is given; we follow diffusers exactly.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from neural_assets.models.attention import attention
from neural_assets.models.partitioning import constrain_batch

IntOrSeq = Union[int, Sequence[int]]
DOWN_BLOCK_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_BLOCK_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
# Fixed by diffusers' Transformer2DModel / BasicTransformerBlock, not by the UNet config.
TRANSFORMER_GROUP_NORM_EPS = 1e-6
TRANSFORMER_LAYER_NORM_EPS = 1e-5
GEGLU_MULT = 4


def _norm(module: nn.Module, x: jax.Array) -> jax.Array:
  """Applies a normalisation layer in float32 (as torch does under autocast), back to x's dtype."""
  return module(x.astype(jnp.float32)).astype(x.dtype)


def _group_norm(groups: int, eps: float, name: str) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=groups, epsilon=eps, dtype=jnp.float32,
                      use_fast_variance=False, name=name)


def _dropout(x, rate: float, train: bool):
  return nn.Dropout(rate)(x, deterministic=not train) if rate > 0 else x


def timestep_embedding(timesteps: jax.Array, dim: int, flip_sin_to_cos: bool,
                       freq_shift: float, max_period: float = 10000.0) -> jax.Array:
  """diffusers' `get_timestep_embedding`: [B] -> [B, dim] float32 sinusoids."""
  half = dim // 2
  exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
  args = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
  sin, cos = jnp.sin(args), jnp.cos(args)
  emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def upsample_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Nearest-neighbour resize [B, h, w, C] -> [B, *size, C] with torch's index rule."""
  b, h, w, c = x.shape
  if size == (2 * h, 2 * w):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  rows = jnp.minimum(jnp.floor(jnp.arange(size[0]) * (h / size[0])).astype(jnp.int32), h - 1)
  cols = jnp.minimum(jnp.floor(jnp.arange(size[1]) * (w / size[1])).astype(jnp.int32), w - 1)
  return x[:, rows][:, :, cols]


class ResnetBlock2D(nn.Module):
  """GroupNorm-SiLU-conv x2 with the time embedding added in between. [B,H,W,Ci] -> [B,H,W,Co]."""
  out_channels: int
  groups: int
  eps: float
  output_scale_factor: float = 1.0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, temb, train: bool = False):
    conv = lambda c, k, name: nn.Conv(c, (k, k), padding=k // 2, dtype=self.dtype, name=name)
    h = nn.silu(_norm(_group_norm(self.groups, self.eps, "norm1"), x))
    h = conv(self.out_channels, 3, "conv1")(h)
    t = nn.Dense(self.out_channels, dtype=self.dtype, name="time_emb_proj")(nn.silu(temb))
    h = h + t[:, None, None, :]
    h = nn.silu(_norm(_group_norm(self.groups, self.eps, "norm2"), h))
    h = conv(self.out_channels, 3, "conv2")(_dropout(h, self.dropout, train))
    if x.shape[-1] != self.out_channels:
      x = conv(self.out_channels, 1, "conv_shortcut")(x)
    return constrain_batch((x + h) / self.output_scale_factor)


class Attention(nn.Module):
  """diffusers `Attention`: to_q/k/v (no bias), heads, to_out_0. [B,Lq,C] x [B,Lk,D] -> [B,Lq,C]."""
  heads: int
  head_dim: int
  upcast: bool
  impl: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, context=None):
    context = x if context is None else context
    inner = self.heads * self.head_dim
    proj = lambda name: nn.Dense(inner, use_bias=False, dtype=self.dtype, name=name)
    split = lambda t: einops.rearrange(t, "b l (h d) -> b l h d", h=self.heads)
    q, k, v = (split(constrain_batch(proj(name)(inputs)))
               for name, inputs in (("to_q", x), ("to_k", context), ("to_v", context)))
    out = constrain_batch(attention(q, k, v, impl=self.impl, upcast=self.upcast))
    return constrain_batch(nn.Dense(x.shape[-1], dtype=self.dtype, name="to_out_0")(
        einops.rearrange(out, "b l h d -> b l (h d)")))


class GEGLU(nn.Module):
  """[.., C] -> [.., inner]: a * gelu(gate) with exact (erf) GELU like torch's default."""
  inner: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    a, gate = jnp.split(nn.Dense(2 * self.inner, dtype=self.dtype, name="proj")(x), 2, axis=-1)
    return a * nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = GEGLU(GEGLU_MULT * x.shape[-1], dtype=self.dtype, name="net_0")(x)
    return nn.Dense(x.shape[-1], dtype=self.dtype, name="net_2")(h)


class BasicTransformerBlock(nn.Module):
  """Pre-LN self-attention, cross-attention and GEGLU MLP, each residual. [B,L,C] -> [B,L,C]."""
  heads: int
  head_dim: int
  only_cross_attention: bool
  upcast: bool
  impl: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, context):
    ln = lambda name: nn.LayerNorm(epsilon=TRANSFORMER_LAYER_NORM_EPS, dtype=jnp.float32,
                                   use_fast_variance=False, name=name)
    attn = lambda name: Attention(self.heads, self.head_dim, self.upcast, self.impl,
                                  dtype=self.dtype, name=name)
    h = _norm(ln("norm1"), x)
    x = x + attn("attn1")(h, context if self.only_cross_attention else None)
    x = x + attn("attn2")(_norm(ln("norm2"), x), context)
    return x + FeedForward(dtype=self.dtype, name="ff")(_norm(ln("norm3"), x))


class Transformer2DModel(nn.Module):
  """Spatial transformer: GroupNorm, proj_in, N blocks, proj_out, residual. [B,H,W,C] -> same.

  No dropout: diffusers' UNet passes its `dropout` to the resnets only.
  """
  heads: int
  num_layers: int
  groups: int
  use_linear_projection: bool
  only_cross_attention: bool
  upcast: bool
  impl: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, context):
    b, hh, ww, c = x.shape
    if c % self.heads:
      raise ValueError(f"{c} channels do not split into {self.heads} attention heads.")
    if self.use_linear_projection:
      proj = lambda name: nn.Dense(c, dtype=self.dtype, name=name)
    else:
      proj = lambda name: nn.Conv(c, (1, 1), dtype=self.dtype, name=name)
    h = _norm(_group_norm(self.groups, TRANSFORMER_GROUP_NORM_EPS, "norm"), x)
    h = constrain_batch(einops.rearrange(proj("proj_in")(h), "b h w c -> b (h w) c"))
    for i in range(self.num_layers):
      h = BasicTransformerBlock(self.heads, c // self.heads, self.only_cross_attention,
                                self.upcast, self.impl, dtype=self.dtype,
                                name=f"transformer_blocks_{i}")(h, context)
      h = constrain_batch(h)
    h = proj("proj_out")(einops.rearrange(h, "b (h w) c -> b h w c", h=hh, w=ww))
    return constrain_batch(h + x)


class _BlockFields(nn.Module):
  """Fields shared by the down, mid and up blocks."""
  out_channels: int
  num_layers: int
  has_attention: bool
  heads: int
  transformer_layers: int
  groups: int
  eps: float
  use_linear_projection: bool
  only_cross_attention: bool
  upcast: bool
  impl: str
  dropout: float = 0.0
  dtype: Any = jnp.float32

  def resnet(self, i, scale=1.0):
    return ResnetBlock2D(self.out_channels, self.groups, self.eps, scale, self.dropout,
                         dtype=self.dtype, name=f"resnets_{i}")

  def transformer(self, i):
    return Transformer2DModel(self.heads, self.transformer_layers, self.groups,
                              self.use_linear_projection, self.only_cross_attention, self.upcast,
                              self.impl, dtype=self.dtype, name=f"attentions_{i}")


class _Downsample(nn.Module):
  out_channels: int
  padding: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.Conv(self.out_channels, (3, 3), strides=(2, 2), padding=self.padding,
                   dtype=self.dtype, name="conv")(x)


class _Upsample(nn.Module):
  out_channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, size):
    x = upsample_nearest(x, size)
    return nn.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype, name="conv")(x)


class DownBlock2D(_BlockFields):
  """(Cross-attention) down block: [B,H,W,Ci] -> ([B,H/2,W/2,Co], skips, one per layer + down)."""
  add_downsample: bool = True
  downsample_padding: int = 1

  @nn.compact
  def __call__(self, x, temb, context, train: bool = False):
    skips = []
    for i in range(self.num_layers):
      x = self.resnet(i)(x, temb, train)
      if self.has_attention:
        x = self.transformer(i)(x, context)
      skips.append(x)
    if self.add_downsample:
      p = self.downsample_padding
      # padding=0 means diffusers pads right/bottom by one before the stride-2 conv.
      pad = ((p, p), (p, p)) if p else ((0, 1), (0, 1))
      x = _Downsample(self.out_channels, pad, self.dtype, name="downsamplers_0")(x)
      skips.append(x)
    return x, tuple(skips)


class MidBlock2DCrossAttn(_BlockFields):
  """resnet, then (transformer, resnet) x num_layers. [B,H,W,C] -> [B,H,W,C]."""
  output_scale_factor: float = 1.0

  @nn.compact
  def __call__(self, x, temb, context, train: bool = False):
    x = self.resnet(0, self.output_scale_factor)(x, temb, train)
    for i in range(self.num_layers):
      x = self.transformer(i)(x, context)
      x = self.resnet(i + 1, self.output_scale_factor)(x, temb, train)
    return x


class UpBlock2D(_BlockFields):
  """(Cross-attention) up block consuming `num_layers` skips (last first), then upsampling."""
  add_upsample: bool = True

  @nn.compact
  def __call__(self, x, skips, temb, context, train: bool = False, upsample_size=None):
    skips = list(skips)
    for i in range(self.num_layers):
      x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = self.resnet(i)(x, temb, train)
      if self.has_attention:
        x = self.transformer(i)(x, context)
    if self.add_upsample:
      size = upsample_size or (2 * x.shape[1], 2 * x.shape[2])
      x = _Upsample(self.out_channels, self.dtype, name="upsamplers_0")(x, tuple(size))
    return x


class TimestepEmbedding(nn.Module):
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.silu(nn.Dense(self.dim, dtype=self.dtype, name="linear_1")(x))
    return nn.Dense(self.dim, dtype=self.dtype, name="linear_2")(x)


def _per_level(value, n: int, key: str) -> tuple:
  if isinstance(value, (int, float, bool)) or value is None:
    return (value,) * n
  value = tuple(value)
  if len(value) != n:
    raise ValueError(f"UNet config {key}={value} must be one value or one per level ({n}).")
  return value


class UNet2DConditionModel(nn.Module):
  """`(sample [B,H,W,Cin], timesteps [B], encoder_hidden_states [B,L,D]) -> [B,H,W,Cout]` float32.

  Parameters are float32; `dtype` is the compute dtype (norms and softmax-with-upcast stay
  float32). `remat` checkpoints each down / mid / up block. `train=True` enables the resnets'
  dropout (pass a 'dropout' rng when `dropout > 0`).
  """
  sample_size: Optional[int] = None
  in_channels: int = 4
  out_channels: int = 4
  down_block_types: Sequence[str] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                     "CrossAttnDownBlock2D", "DownBlock2D")
  up_block_types: Sequence[str] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                   "CrossAttnUpBlock2D")
  block_out_channels: Sequence[int] = (320, 640, 1280, 1280)
  layers_per_block: IntOrSeq = 2
  attention_head_dim: IntOrSeq = 8
  num_attention_heads: Optional[IntOrSeq] = None
  cross_attention_dim: IntOrSeq = 1280
  use_linear_projection: bool = False
  only_cross_attention: Union[bool, Sequence[bool]] = False
  mid_block_only_cross_attention: Optional[bool] = None
  upcast_attention: bool = False
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  flip_sin_to_cos: bool = True
  freq_shift: float = 0
  transformer_layers_per_block: IntOrSeq = 1
  downsample_padding: int = 1
  mid_block_scale_factor: float = 1.0
  dropout: float = 0.0
  attention_impl: str = "xla"
  dtype: Any = jnp.float32
  remat: bool = False

  def _check(self):
    n = len(self.block_out_channels)
    if len(self.down_block_types) != n or len(self.up_block_types) != n:
      raise ValueError(f"UNet config: down_block_types {self.down_block_types}, up_block_types "
                       f"{self.up_block_types} and block_out_channels {self.block_out_channels} "
                       "must have the same length.")
    for key, types, known in (("down_block_types", self.down_block_types, DOWN_BLOCK_TYPES),
                              ("up_block_types", self.up_block_types, UP_BLOCK_TYPES)):
      for t in types:
        if t not in known:
          raise ValueError(f"UNet config {key}: unsupported block type {t!r}; expected {known}.")

  @nn.compact
  def __call__(self, sample, timesteps, encoder_hidden_states, train: bool = False):
    self._check()
    n = len(self.block_out_channels)
    if sample.ndim != 4 or sample.shape[-1] != self.in_channels:
      raise ValueError(f"sample must be [B, H, W, {self.in_channels}] (NHWC), got {sample.shape}.")
    heads = _per_level(self.num_attention_heads or self.attention_head_dim, n, "attention_heads")
    layers = _per_level(self.layers_per_block, n, "layers_per_block")
    t_layers = _per_level(self.transformer_layers_per_block, n, "transformer_layers_per_block")
    cross_dims = _per_level(self.cross_attention_dim, n, "cross_attention_dim")
    only_cross = _per_level(self.only_cross_attention, n, "only_cross_attention")
    mid_only_cross = (self.mid_block_only_cross_attention
                      if self.mid_block_only_cross_attention is not None
                      else (self.only_cross_attention
                            if isinstance(self.only_cross_attention, bool) else False))
    if encoder_hidden_states.ndim != 3 or any(
        d != encoder_hidden_states.shape[-1] for d in cross_dims):
      raise ValueError(f"encoder_hidden_states must be [B, L, cross_attention_dim={cross_dims}], "
                       f"got {encoder_hidden_states.shape}.")
    b = sample.shape[0]
    timesteps = jnp.broadcast_to(jnp.asarray(timesteps), (b,))
    context = encoder_hidden_states.astype(self.dtype)
    common = dict(groups=self.norm_num_groups, eps=self.norm_eps,
                  use_linear_projection=self.use_linear_projection,
                  upcast=self.upcast_attention, impl=self.attention_impl, dropout=self.dropout,
                  dtype=self.dtype)
    wrap = lambda cls, static: nn.remat(cls, static_argnums=static) if self.remat else cls

    temb = timestep_embedding(timesteps, self.block_out_channels[0], self.flip_sin_to_cos,
                              self.freq_shift).astype(self.dtype)
    temb = TimestepEmbedding(4 * self.block_out_channels[0], dtype=self.dtype,
                             name="time_embedding")(temb)
    x = nn.Conv(self.block_out_channels[0], (3, 3), padding=1, dtype=self.dtype,
                name="conv_in")(sample.astype(self.dtype))

    skips = [x]
    for i, (kind, ch) in enumerate(zip(self.down_block_types, self.block_out_channels)):
      block = wrap(DownBlock2D, (4,))(
          ch, layers[i], kind == "CrossAttnDownBlock2D", heads[i], t_layers[i],
          only_cross_attention=only_cross[i], add_downsample=i < n - 1,
          downsample_padding=self.downsample_padding, name=f"down_blocks_{i}", **common)
      x, block_skips = block(x, temb, context, train)
      skips.extend(block_skips)

    x = wrap(MidBlock2DCrossAttn, (4,))(
        self.block_out_channels[-1], 1, True, heads[-1], t_layers[-1],
        only_cross_attention=mid_only_cross, output_scale_factor=self.mid_block_scale_factor,
        name="mid_block", **common)(x, temb, context, train)

    rev = lambda seq: tuple(reversed(seq))
    for i, (kind, ch) in enumerate(zip(self.up_block_types, rev(self.block_out_channels))):
      num = rev(layers)[i] + 1
      block_skips, skips = tuple(skips[-num:]), skips[:-num]
      last = i == n - 1
      size = None if last else tuple(skips[-1].shape[1:3])
      x = wrap(UpBlock2D, (5, 6))(
          ch, num, kind == "CrossAttnUpBlock2D", rev(heads)[i], rev(t_layers)[i],
          only_cross_attention=rev(only_cross)[i], add_upsample=not last,
          name=f"up_blocks_{i}", **common)(x, block_skips, temb, context, train, size)

    x = nn.silu(_norm(_group_norm(self.norm_num_groups, self.norm_eps, "conv_norm_out"), x))
    x = nn.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype, name="conv_out")(x)
    return x.astype(jnp.float32)
