"""The Stable Diffusion variational autoencoder (diffusers `AutoencoderKL`) in Flax linen, NHWC.

Architecture and parameter names follow diffusers' `AutoencoderKL` as used by SD 1.x / 2.x, so a
diffusers checkpoint maps onto this tree by a mechanical rename (`neural_assets.convert.
diffusers_vae`): `encoder.down_blocks.0.resnets.1.conv1.weight` ->
`encoder/down_blocks_0/resnets_1/conv1/kernel`.

  Encoder: conv_in -> DownEncoderBlock2D x len(block_out_channels) (resnets, then a stride-2 conv
           except after the last) -> mid block (resnet, 1-head self-attention, resnet) ->
           GroupNorm, SiLU, conv_out to 2 * latent_channels (mean and log-variance).
  Decoder: conv_in -> mid block -> UpDecoderBlock2D x len(block_out_channels) (layers_per_block + 1
           resnets, then nearest 2x + conv except after the last) -> GroupNorm, SiLU, conv_out.

Images are `[B, H, W, 3]` in [-1, 1]; latents are `[B, H / 2^(n-1), W / 2^(n-1), latent_channels]`
with n = len(block_out_channels). `scaling_factor` is a field so that it travels with the config,
but it is applied by callers (`z = mean * scaling_factor` before the UNet, `z / scaling_factor`
before `decode`), as in diffusers.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from neural_assets.models import attention as attention_lib
from neural_assets.models.partitioning import constrain_batch

# diffusers hard-codes these inside Encoder / Decoder; they are not config keys.
_NORM_EPS = 1e-6
# DiagonalGaussianDistribution clamps the log-variance to this range.
_LOGVAR_RANGE = (-30.0, 20.0)


def _conv(features: int, kernel: int, dtype, name: str, strides: int = 1,
          padding: Any = "SAME") -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides), padding=padding,
                 dtype=dtype, name=name)


def _group_norm(groups: int, dtype, name: str) -> nn.GroupNorm:
  # Two-pass variance: E[x^2] - E[x]^2 loses digits against PyTorch's GroupNorm.
  return nn.GroupNorm(num_groups=groups, epsilon=_NORM_EPS, dtype=dtype,
                      use_fast_variance=False, name=name)


class ResnetBlock2D(nn.Module):
  """diffusers `ResnetBlock2D` without time embedding: [B, H, W, Cin] -> [B, H, W, out_channels]."""
  out_channels: int
  groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.silu(_group_norm(self.groups, self.dtype, "norm1")(x))
    h = _conv(self.out_channels, 3, self.dtype, "conv1")(h)
    h = nn.silu(_group_norm(self.groups, self.dtype, "norm2")(h))
    h = _conv(self.out_channels, 3, self.dtype, "conv2")(h)
    if x.shape[-1] != self.out_channels:
      x = _conv(self.out_channels, 1, self.dtype, "conv_shortcut")(x)
    return constrain_batch(x + h)


class AttentionBlock(nn.Module):
  """Single-head spatial self-attention with GroupNorm and residual: [B, H, W, C] -> same.

  diffusers builds it with heads = C // attention_head_dim = 1 and a float32 softmax.
  """
  groups: int
  dtype: Any = jnp.float32
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    y = _group_norm(self.groups, self.dtype, "group_norm")(x)
    y = einops.rearrange(y, "b h w c -> b (h w) c")
    q, k, v = (constrain_batch(nn.Dense(c, dtype=self.dtype, name=n)(y))
               for n in ("to_q", "to_k", "to_v"))
    heads = lambda t: einops.rearrange(t, "b l c -> b l 1 c")
    y = attention_lib.attention(heads(q), heads(k), heads(v), impl=self.attention_impl,
                                upcast=True)
    y = nn.Dense(c, dtype=self.dtype, name="to_out_0")(einops.rearrange(y, "b l 1 c -> b l c"))
    return constrain_batch(
        x + einops.rearrange(y, "b (h w) c -> b h w c", h=h, w=w).astype(x.dtype))


class MidBlock(nn.Module):
  """diffusers `UNetMidBlock2D` without time embedding: resnet, [attention, resnet]."""
  groups: int
  add_attention: bool = True
  dtype: Any = jnp.float32
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    x = ResnetBlock2D(c, self.groups, self.dtype, name="resnets_0")(x)
    if self.add_attention:
      x = AttentionBlock(self.groups, self.dtype, self.attention_impl, name="attentions_0")(x)
    return ResnetBlock2D(c, self.groups, self.dtype, name="resnets_1")(x)


class Downsample2D(nn.Module):
  """Stride-2 3x3 conv after padding one zero row / column at the bottom / right (diffusers'
  `padding=0` variant): [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), C]."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    return _conv(x.shape[-1], 3, self.dtype, "conv", strides=2, padding="VALID")(x)


class Upsample2D(nn.Module):
  """Nearest-neighbour 2x then 3x3 conv: [B, H, W, C] -> [B, 2H, 2W, C]."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return _conv(x.shape[-1], 3, self.dtype, "conv")(x)


class DownEncoderBlock2D(nn.Module):
  """`num_layers` resnets then an optional stride-2 downsample: [B, H, W, Cin] -> [B, H', W', C]."""
  out_channels: int
  num_layers: int
  groups: int
  add_downsample: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for j in range(self.num_layers):
      x = ResnetBlock2D(self.out_channels, self.groups, self.dtype, name=f"resnets_{j}")(x)
    if self.add_downsample:
      x = Downsample2D(self.dtype, name="downsamplers_0")(x)
    return x


class UpDecoderBlock2D(nn.Module):
  """`num_layers` resnets then an optional 2x upsample: [B, h, w, Cin] -> [B, h', w', C]."""
  out_channels: int
  num_layers: int
  groups: int
  add_upsample: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for j in range(self.num_layers):
      x = ResnetBlock2D(self.out_channels, self.groups, self.dtype, name=f"resnets_{j}")(x)
    if self.add_upsample:
      x = Upsample2D(self.dtype, name="upsamplers_0")(x)
    return x


class Encoder(nn.Module):
  """[B, H, W, in_channels] -> [B, h, w, 2 * latent_channels] (mean and log-variance moments)."""
  block_out_channels: Sequence[int]
  layers_per_block: int
  latent_channels: int
  norm_num_groups: int
  mid_block_add_attention: bool = True
  dtype: Any = jnp.float32
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    groups, dtype = self.norm_num_groups, self.dtype
    x = _conv(self.block_out_channels[0], 3, dtype, "conv_in")(x)
    last = len(self.block_out_channels) - 1
    for i, channels in enumerate(self.block_out_channels):
      x = DownEncoderBlock2D(channels, self.layers_per_block, groups, i != last, dtype,
                             name=f"down_blocks_{i}")(x)
    x = MidBlock(groups, self.mid_block_add_attention, dtype, self.attention_impl,
                 name="mid_block")(x)
    x = nn.silu(_group_norm(groups, dtype, "conv_norm_out")(x))
    return _conv(2 * self.latent_channels, 3, dtype, "conv_out")(x)


class Decoder(nn.Module):
  """[B, h, w, latent_channels] -> [B, H, W, out_channels]."""
  block_out_channels: Sequence[int]
  layers_per_block: int
  out_channels: int
  norm_num_groups: int
  mid_block_add_attention: bool = True
  dtype: Any = jnp.float32
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    groups, dtype = self.norm_num_groups, self.dtype
    x = _conv(self.block_out_channels[-1], 3, dtype, "conv_in")(z)
    x = MidBlock(groups, self.mid_block_add_attention, dtype, self.attention_impl,
                 name="mid_block")(x)
    reversed_channels = list(reversed(self.block_out_channels))
    last = len(reversed_channels) - 1
    for i, channels in enumerate(reversed_channels):
      # The decoder has one resnet more per block than the encoder (diffusers' layers + 1).
      x = UpDecoderBlock2D(channels, self.layers_per_block + 1, groups, i != last, dtype,
                           name=f"up_blocks_{i}")(x)
    x = nn.silu(_group_norm(groups, dtype, "conv_norm_out")(x))
    return _conv(self.out_channels, 3, dtype, "conv_out")(x)


class AutoencoderKL(nn.Module):
  """diffusers `AutoencoderKL` (SD 1.x / 2.x). Fields are diffusers' `config.json` keys.

  `encode(x [B, H, W, in_channels] in [-1, 1]) -> (mean, logvar)`, each `[B, h, w, latent]`;
  `decode(z [B, h, w, latent]) -> [B, H, W, out_channels]`; `__call__(x)` = decode(mean), used to
  initialise every parameter at once.
  """
  in_channels: int = 3
  out_channels: int = 3
  down_block_types: Sequence[str] = ("DownEncoderBlock2D",)
  up_block_types: Sequence[str] = ("UpDecoderBlock2D",)
  block_out_channels: Sequence[int] = (64,)
  layers_per_block: int = 1
  act_fn: str = "silu"
  latent_channels: int = 4
  norm_num_groups: int = 32
  sample_size: Any = 32
  scaling_factor: float = 0.18215
  shift_factor: Optional[float] = None
  use_quant_conv: bool = True
  use_post_quant_conv: bool = True
  mid_block_add_attention: bool = True
  dtype: Any = jnp.float32
  attention_impl: str = "xla"

  def setup(self):
    n = len(self.block_out_channels)
    if tuple(self.down_block_types) != ("DownEncoderBlock2D",) * n:
      raise ValueError(f"AutoencoderKL supports only DownEncoderBlock2D blocks, one per entry of "
                       f"block_out_channels ({n}); got down_block_types={self.down_block_types}.")
    if tuple(self.up_block_types) != ("UpDecoderBlock2D",) * n:
      raise ValueError(f"AutoencoderKL supports only UpDecoderBlock2D blocks, one per entry of "
                       f"block_out_channels ({n}); got up_block_types={self.up_block_types}.")
    if self.act_fn != "silu":
      raise ValueError(f"AutoencoderKL supports act_fn='silu' only, got {self.act_fn!r}.")
    bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
    if bad:
      raise ValueError(f"block_out_channels {bad} are not divisible by norm_num_groups="
                       f"{self.norm_num_groups}.")
    common = dict(block_out_channels=tuple(self.block_out_channels),
                  layers_per_block=self.layers_per_block, norm_num_groups=self.norm_num_groups,
                  mid_block_add_attention=self.mid_block_add_attention, dtype=self.dtype,
                  attention_impl=self.attention_impl)
    self.encoder = Encoder(latent_channels=self.latent_channels, **common)
    self.decoder = Decoder(out_channels=self.out_channels, **common)
    if self.use_quant_conv:
      self.quant_conv = _conv(2 * self.latent_channels, 1, self.dtype, "quant_conv")
    if self.use_post_quant_conv:
      self.post_quant_conv = _conv(self.latent_channels, 1, self.dtype, "post_quant_conv")

  @property
  def downsample_factor(self) -> int:
    return 2 ** (len(self.block_out_channels) - 1)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[B, H, W, in_channels] in [-1, 1] -> (mean, logvar), each [B, h, w, latent_channels]."""
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"AutoencoderKL.encode expects [B, H, W, {self.in_channels}] images, got "
                       f"shape {x.shape}.")
    moments = self.encoder(x.astype(self.dtype))
    if self.use_quant_conv:
      moments = self.quant_conv(moments)
    moments = moments.astype(jnp.float32)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, *_LOGVAR_RANGE)

  def decode(self, z: jax.Array) -> jax.Array:
    """[B, h, w, latent_channels] (unscaled latents) -> [B, H, W, out_channels], float32."""
    if z.ndim != 4 or z.shape[-1] != self.latent_channels:
      raise ValueError(f"AutoencoderKL.decode expects [B, h, w, {self.latent_channels}] latents, "
                       f"got shape {z.shape}.")
    z = z.astype(self.dtype)
    if self.use_post_quant_conv:
      z = self.post_quant_conv(z)
    return self.decoder(z).astype(jnp.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    mean, _ = self.encode(x)
    return self.decode(mean)
