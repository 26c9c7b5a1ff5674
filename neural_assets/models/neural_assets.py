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
  tokens, _ = model.apply({'params': p}, batch, no_drop, method=model.tokenize)
  latents = sampler.sample(denoise, p, tokens, key, (B, h, w, c))
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from neural_assets.diffusion.schedule import NoiseSchedule
from neural_assets.models.conditioning import AssetTokenizer, sample_drop_cond
from neural_assets.models.unet import UNet2DConditionModel


class NeuralAssetsModel(nn.Module):
  """`(noisy_latents [B,h,w,c], timesteps [B], batch, drop_cond [B]) -> [B,h,w,c]` model output."""
  config: Any

  def setup(self):
    c = self.config
    cross = c.unet.cross_attention_dim
    if cross != c.conditioning.context_dim:
      raise ValueError(f"conditioning.context_dim ({c.conditioning.context_dim}) must equal the "
                       f"UNet's cross_attention_dim ({cross}).")
    self.tokenizer = AssetTokenizer(c.conditioning, name="tokenizer")
    self.unet = UNet2DConditionModel(**dict(c.unet), name="unet")

  def tokenize(self, batch: Mapping[str, jax.Array], drop_cond: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """-> (tokens [B, (N+1)*4, D], token_mask [B, (N+1)*4]); see `AssetTokenizer`."""
    return self.tokenizer(batch, drop_cond, train)

  def denoise(self, latents: jax.Array, timesteps: jax.Array, tokens: jax.Array,
              train: bool = False) -> jax.Array:
    """UNet on given tokens: [B,h,w,c], [B] (or scalar), [B,L,D] -> [B,h,w,c]."""
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
                   drop_cond: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Denoising loss of one batch: MSE between the model output and the schedule's target.

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
  loss = jnp.mean(jnp.square(out.astype(jnp.float32) - target))
  metrics = dict(loss=loss, cfg_drop_fraction=jnp.mean(drop_cond.astype(jnp.float32)),
                 mean_timestep=jnp.mean(timesteps.astype(jnp.float32)))
  return loss, metrics
