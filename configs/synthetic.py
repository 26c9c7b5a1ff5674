"""A small Neural Assets model on the synthetic scenes (data_pipelines/synthetic.py) at 64x64 that
trains in about 15 minutes on 2 CPU cores and learns visibly (boxes move, colours stay).

  python -m data_pipelines.synthetic --out_dir /tmp/synth64 --resolution 64 --num_frames 8 \
      --num_videos 256 --split train --num_workers 2
  python -m data_pipelines.synthetic --out_dir /tmp/synth64 --resolution 64 --num_frames 8 \
      --num_videos 16 --split eval --seed 1
  python -m neural_assets.main --config=configs/synthetic.py --workdir=/tmp/na_synth \
      --config.data.data_dir=/tmp/synth64
"""
import ml_collections

from configs import common
from configs import conditioning
from configs import sampler
from configs import sd21
from data_pipelines import pipeline


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  sd = sd21.get_config("base")
  unet = sd.unet
  unet.update(dict(
      sample_size=16,
      down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
      block_out_channels=(32, 64, 64),
      layers_per_block=1,
      attention_head_dim=(2, 4, 4),
      cross_attention_dim=64,
      norm_num_groups=8,
  ))
  vae = sd.vae
  vae.update(dict(
      down_block_types=("DownEncoderBlock2D",) * 3,
      up_block_types=("UpDecoderBlock2D",) * 3,
      block_out_channels=(16, 32, 32),  # 64x64 images -> 16x16 latents.
      layers_per_block=1,
      norm_num_groups=8,
  ))
  # Synthetic scenes hold 3-6 objects (SceneConfig defaults).
  cond = conditioning.get_config("vits8", max_objects=6)
  cond.encoder.update(dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=128, image_size=64, input_size=64))
  cond.update(dict(token_dim=32, context_dim=64, pose_hidden_dim=64))
  config.model = ml_collections.ConfigDict(dict(unet=unet, vae=vae, conditioning=cond))
  config.diffusion = sd.diffusion
  config.sampler = sampler.get_config()
  config.sampler.num_inference_steps = 25

  config.data = pipeline.default_data_config()
  config.data.update(dict(resolution=(64, 64), global_batch_size=16, eval_global_batch_size=16,
                          min_gap=0, max_gap=7, worker_count=0, read_threads=2))

  common.add_common(config)
  # No pretrained VAE exists at this size and a random frozen one decodes every sample to noise:
  # `python -m neural_assets.demo` first fits this VAE as an autoencoder for a few minutes and
  # passes it in as `training.init_checkpoint`; run that (or set init_checkpoint) before training.
  config.optimizer.update(dict(lr=5e-4, new_layers_lr=1e-3, warmup_steps=100, decay="cosine",
                               end_lr_factor=0.1))
  config.training.update(dict(num_train_steps=2000, log_every_steps=50,
                              image_summary_every_steps=500))
  config.checkpoint.update(dict(every_steps=500, max_to_keep=2))
  config.eval.update(dict(every_steps=1000, num_batches=1))
  config.sharding.min_size_to_shard = 0
  return config
