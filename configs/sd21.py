"""Architecture of Stable Diffusion 2.1 (UNet + VAE) as published by Stability AI.

Values are those of the `config.json` files of `stabilityai/stable-diffusion-2-1-base` (512px,
epsilon prediction) and `stabilityai/stable-diffusion-2-1` (768px, v-prediction). Field names are
diffusers' config keys so that a converted checkpoint's `config.json` and these configs can be
compared key by key.

Usage: `python -m ... --config=configs/sd21.py:base` or `sd21.get_config('768')`.
"""
import ml_collections

# Every `get_config` variant (tests/test_configs.py builds each).
VARIANTS = ("base", "768")


def unet_config(variant: str = "base") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"Unknown SD-2.1 variant {variant!r}: expected 'base' or '768'.")
  return ml_collections.ConfigDict(dict(
      sample_size=64 if variant == "base" else 96,
      in_channels=4,
      out_channels=4,
      down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                        "CrossAttnDownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                      "CrossAttnUpBlock2D"),
      block_out_channels=(320, 640, 1280, 1280),
      layers_per_block=2,
      attention_head_dim=(5, 10, 20, 20),
      cross_attention_dim=1024,
      use_linear_projection=True,
      upcast_attention=(variant == "768"),
      norm_num_groups=32,
      norm_eps=1e-5,
      flip_sin_to_cos=True,
      freq_shift=0,
      transformer_layers_per_block=1,
      attention_impl="xla",
  ))


def vae_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      in_channels=3,
      out_channels=3,
      down_block_types=("DownEncoderBlock2D",) * 4,
      up_block_types=("UpDecoderBlock2D",) * 4,
      block_out_channels=(128, 256, 512, 512),
      layers_per_block=2,
      latent_channels=4,
      norm_num_groups=32,
      scaling_factor=0.18215,
  ))


def get_config(variant: str = "base") -> ml_collections.ConfigDict:
  """SD-2.1 model architecture: `unet`, `vae` and the matching noise schedule."""
  return ml_collections.ConfigDict(dict(
      unet=unet_config(variant),
      vae=vae_config(),
      diffusion=dict(
          num_train_timesteps=1000,
          beta_start=0.00085,
          beta_end=0.012,
          beta_schedule="scaled_linear",
          prediction_type="epsilon" if variant == "base" else "v_prediction",
      ),
  ))
