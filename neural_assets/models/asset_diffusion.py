"""The trainable Neural Assets model: asset tokenizer + SD UNet, and its diffusion loss.

Parameter tree: `{'tokenizer': {'encoder': <ViT>, 'appearance_encoder', 'pose_encoder',
'background_encoder', 'asset_projection'}, 'unet': <UNet>}` (DESIGN.md). The VAE is frozen and
kept apart: `diffusion_loss` takes target latents already encoded and multiplied by the VAE's
`scaling_factor`.

`config` is `config.model`, holding `conditioning` (configs/conditioning.py) and `unet`
(configs/sd21.py, diffusers' field names).

Sampling: tokenize once, then hand the UNet to the DDIM sampler through a denoise function built
once (it is a static jit argument, so a new lambda per call would recompile):

  denoise = lambda p, x, t, ctx: model.apply({'params': p}, x, t, ctx, method=model.denoise)
  cond, null = model.apply({'params': p}, batch, method=model.tokenize_cond_and_null)
  latents = sampler.sample(denoise, p, cond, key, (B, h, w, c), null)

The null (unconditional) context is whatever CFG dropout trained (`conditioning.null_condition`:
learned f(0) or zeros), never assumed.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from neural_assets.diffusion.schedule import NoiseSchedule
from neural_assets.geometry import boxes_union_mask
from neural_assets.models.conditioning import AssetTokenizer, fourier_features
from neural_assets.models.conditioning import sample_drop_cond
from neural_assets.models.unet import UNet2DConditionModel


def coordinate_channels(config: Any) -> int:
  """UNet input channels that `model.latent_coordinates` / `latent_coordinate_bands` add."""
  if not config.latent_coordinates:
    return 0
  return 2 + 4 * int(config.latent_coordinate_bands)


class NeuralAssetsModel(nn.Module):
  """`(noisy_latents [B,h,w,c], timesteps [B], batch, drop_cond [B]) -> [B,h,w,c]` model output."""
  config: Any

  def setup(self):
    c = self.config
    cross = c.unet.cross_attention_dim
    if cross != c.conditioning.context_dim:
      raise ValueError(f"conditioning.context_dim ({c.conditioning.context_dim}) must equal the "
                       f"UNet's cross_attention_dim ({cross}).")
    extra = coordinate_channels(c)
    if extra and c.unet.in_channels != c.unet.out_channels + extra:
      raise ValueError(f"model.latent_coordinates adds {extra} input channels: unet.in_channels "
                       f"must be out_channels + {extra} = {c.unet.out_channels + extra}, got "
                       f"{c.unet.in_channels}.")
    if c.latent_coordinate_bands and not c.latent_coordinates:
      raise ValueError("model.latent_coordinate_bands needs model.latent_coordinates = True.")
    self.tokenizer = AssetTokenizer(c.conditioning, name="tokenizer")
    self.unet = UNet2DConditionModel(**dict(c.unet), name="unet")

  def tokenize(self, batch: Mapping[str, jax.Array], drop_cond: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """-> (tokens [B, (N+1)*4, D], token_mask [B, (N+1)*4]); see `AssetTokenizer`."""
    return self.tokenizer(batch, drop_cond, train)

  def tokenize_cond_and_null(self, batch: Mapping[str, jax.Array]
                             ) -> tuple[jax.Array, jax.Array]:
    """-> (conditional tokens, null tokens), both [B, (N+1)*4, D]: the batch tokenized as is and
    with every example dropped, the unconditional context classifier-free guidance needs."""
    batch_size = batch["slot_mask"].shape[0]
    cond, _ = self.tokenizer(batch, jnp.zeros((batch_size,), bool))
    null, _ = self.tokenizer(batch, jnp.ones((batch_size,), bool))
    return cond, null

  def denoise(self, latents: jax.Array, timesteps: jax.Array, tokens: jax.Array,
              train: bool = False) -> jax.Array:
    """UNet on given tokens: [B,h,w,c], [B] (or scalar), [B,L,D] -> [B,h,w,c].

    `config.latent_coordinates` (off in the paper configs): the (y, x) position in [-1, 1] joins
    the latents as 2 input channels, so cross-attention queries know where they are from the
    first block on; a small UNet otherwise learns position only from the zero padding, deep in
    its coarsest levels, and places objects from their pose tokens slowly.
    `config.latent_coordinate_bands` K > 0 adds sin / cos of pi 2^k (k < K) of the pixel centre
    in the pose tokens' units ((v, u) in [0, 1]; 4 K more channels): the pose MLP sees the same
    Fourier features of the box corners (`conditioning.pose_fourier_bands`), and with both
    sides in one basis a query-key dot product is a shift-invariant kernel of (pixel - corner),
    the match that placing an object needs, rather than a function the UNet must build.
    """
    if self.config.latent_coordinates:
      batch, height, width, _ = latents.shape
      grid = jnp.stack(jnp.meshgrid(jnp.linspace(-1.0, 1.0, height),
                                    jnp.linspace(-1.0, 1.0, width), indexing="ij"), axis=-1)
      bands = int(self.config.latent_coordinate_bands)
      if bands:
        # Pixel centres in the pipeline's normalised image units, as the box corners.
        centres = jnp.stack(jnp.meshgrid((jnp.arange(height) + 0.5) / height,
                                         (jnp.arange(width) + 0.5) / width, indexing="ij"), -1)
        grid = jnp.concatenate([grid, fourier_features(centres, bands)[..., 2:]], axis=-1)
      latents = jnp.concatenate(
          [latents, jnp.broadcast_to(grid.astype(latents.dtype), (batch, height, width,
                                                                  grid.shape[-1]))], axis=-1)
    return self.unet(latents, timesteps, tokens, train)

  def __call__(self, noisy_latents: jax.Array, timesteps: jax.Array,
               batch: Mapping[str, jax.Array], drop_cond: jax.Array,
               train: bool = False) -> jax.Array:
    tokens, _ = self.tokenize(batch, drop_cond, train)
    return self.denoise(noisy_latents, timesteps, tokens, train)


def diffusion_loss(params: Any, model: NeuralAssetsModel, batch: Mapping[str, jax.Array],
                   latents: jax.Array, key: jax.Array, schedule: NoiseSchedule,
                   cfg_drop_prob: float, train: bool = True,
                   rngs: Mapping[str, jax.Array] | None = None,
                   noise: jax.Array | None = None, timesteps: jax.Array | None = None,
                   drop_cond: jax.Array | None = None, min_snr_gamma: float = 0.0,
                   object_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Denoising loss of one batch: MSE between the model output and the schedule's target.

  With `min_snr_gamma` > 0 each example's MSE is weighted by the Min-SNR-gamma rule (Hang et al.
  2023): min(SNR(t), gamma) / SNR(t) for epsilon prediction, min(SNR, gamma) / (SNR + 1) for v,
  min(SNR, gamma) for sample prediction (SNR = a_t / (1 - a_t)); 0 = the plain mean (the release).
  With `object_weight` w > 0 the squared error of each latent pixel inside a slotted object's
  target box (`target_boxes`, `slot_mask`; pixel centres, as `geometry.boxes_union_mask`)
  weighs 1 + w, elsewhere 1 (the mean is still over all pixels): the tokens' job is the objects,
  which cover a small part of the image. 0 = unweighted (the release).

  Args:
    params: the model's `params` collection ({'tokenizer', 'unet'}).
    model: the `NeuralAssetsModel` (unbound).
    batch: frame-pair batch (DESIGN.md); `target_image` is not read (see `latents`).
    latents: [B, h, w, c] VAE latents of the target image, scaling_factor applied.
    key: PRNG key for the noise, the timesteps (uniform in [0, T)) and the CFG dropout.
    schedule: the noise schedule; its `prediction_type` picks the target (epsilon or v).
    cfg_drop_prob: probability per example of dropping all conditioning (0.1 in the paper).
    train: passed to the model (dropout layers, if any).
    rngs: extra flax rngs for `apply` (e.g. {'dropout': key}).
    noise, timesteps, drop_cond: optional overrides of the sampled values ([B,h,w,c], [B], [B]).

  Returns:
    (scalar float32 loss, metrics {'loss', 'cfg_drop_fraction', 'mean_timestep'}).
  """
  batch_size = latents.shape[0]
  noise_key, t_key, drop_key = jax.random.split(key, 3)
  if noise is None:
    noise = jax.random.normal(noise_key, latents.shape, jnp.float32)
  if timesteps is None:
    timesteps = schedule.sample_timesteps(t_key, batch_size)
  if drop_cond is None:
    drop_cond = sample_drop_cond(drop_key, batch_size, cfg_drop_prob)
  latents = latents.astype(jnp.float32)
  noisy = schedule.add_noise(latents, noise, timesteps)
  out = model.apply({"params": params}, noisy, timesteps, batch, drop_cond, train,
                    rngs=dict(rngs or {}))
  target = schedule.training_target(latents, noise, timesteps)
  squared = jnp.square(out.astype(jnp.float32) - target)  # [B, h, w, c]
  if object_weight > 0:
    inside = boxes_union_mask(batch["target_boxes"], batch["slot_mask"],
                             latents.shape[1], latents.shape[2])  # [B, h, w]
    squared = squared * (1.0 + object_weight * inside.astype(jnp.float32))[..., None]
  per_example = jnp.mean(squared, axis=tuple(range(1, latents.ndim)))
  if min_snr_gamma > 0:
    per_example = per_example * min_snr_weight(schedule, timesteps, min_snr_gamma)
  loss = jnp.mean(per_example)
  metrics = dict(loss=loss, cfg_drop_fraction=jnp.mean(drop_cond.astype(jnp.float32)),
                 mean_timestep=jnp.mean(timesteps.astype(jnp.float32)))
  return loss, metrics


def min_snr_weight(schedule: NoiseSchedule, timesteps: jax.Array, gamma: float) -> jax.Array:
  """[B] Min-SNR-gamma loss weights for the schedule's prediction type (see `diffusion_loss`)."""
  acp = jnp.asarray(schedule.alphas_cumprod)[timesteps]
  snr = acp / (1.0 - acp)
  clipped = jnp.minimum(snr, gamma)
  if schedule.prediction_type == "epsilon":
    return clipped / snr
  if schedule.prediction_type == "v_prediction":
    return clipped / (snr + 1.0)
  return clipped
