"""Smoke test: the whole method at toy size (32x32 images, tiny UNet / VAE / ViT), CPU in seconds.

Same code path as the paper's configs (tokenizer with DINO-style ViT, RoIAlign, pose MLPs,
background token, CFG dropout, SD-style UNet and VAE, DDIM with guidance); only the sizes shrink.
Used by the tests and CI. Data: synthetic scenes, e.g.
  python -m data_pipelines.synthetic --out_dir /tmp/synth --resolution 32 --num_frames 4 \
      --num_videos 8 --split train
  python -m data_pipelines.synthetic --out_dir /tmp/synth --resolution 32 --num_frames 4 \
      --num_videos 4 --split eval --seed 1
  python -m neural_assets.main --config=configs/smoke.py --workdir=/tmp/smoke \
      --config.data.data_dir=/tmp/synth
"""
import ml_collections

from configs import common
from configs import conditioning
from configs import sampler
from configs import sd21
from data_pipelines import data_config


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  sd = sd21.get_config("base")

  unet = sd.unet
  unet.update(dict(
      sample_size=8,
      down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
      block_out_channels=(32, 64),
      layers_per_block=1,
      attention_head_dim=(2, 4),
      cross_attention_dim=32,
      norm_num_groups=8,
  ))
  vae = sd.vae
  vae.update(dict(
      down_block_types=("DownEncoderBlock2D",) * 3,
      up_block_types=("UpDecoderBlock2D",) * 3,
      block_out_channels=(16, 32, 32),  # 3 levels: 32x32 images -> 8x8 latents.
      layers_per_block=1,
      norm_num_groups=8,
  ))
  cond = conditioning.get_config("vits8", max_objects=4)
  cond.encoder.update(dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, image_size=32, input_size=32))
  cond.update(dict(token_dim=16, context_dim=32, pose_hidden_dim=32))
  # No latent-position channels, as the paper configs (configs/paper_base.py).
  config.model = ml_collections.ConfigDict(dict(unet=unet, vae=vae, conditioning=cond,
                                                latent_coordinates=False,
                                                latent_coordinate_bands=0))
  config.diffusion = sd.diffusion
  config.sampler = sampler.get_config()
  config.sampler.num_inference_steps = 4

  config.data = data_config.default_data_config()
  config.data.update(dict(resolution=(32, 32), global_batch_size=8, eval_global_batch_size=4,
                          read_threads=1, read_buffer_size=2))

  common.add_common(config)
  config.optimizer.update(dict(warmup_steps=2, lr=1e-3, new_layers_lr=1e-3))
  config.training.update(dict(num_train_steps=6, log_every_steps=2,
                              image_summary_every_steps=6, num_image_summaries=2))
  config.checkpoint.update(dict(every_steps=3, max_to_keep=2))
  config.eval.update(dict(every_steps=6, num_batches=1))
  config.sharding.min_size_to_shard = 0
  return config
