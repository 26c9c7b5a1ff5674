"""The demo's toy Neural Assets model (`bash demo.sh`): 64x64 synthetic scenes, small enough to
learn object control in about 15 minutes on 2 CPU cores, from scratch (no pretrained SD / DINO).

Same method and code path as the paper configs (release conditioning: every object slotted,
learned null context, adaptive RoIAlign); what is toy-sized, and why:
- scenes (`synthetic`): 2-3 large objects sliding fast on a one-colour ground, the camera nearly
  still, so source and target differ mostly where objects move: the copy-source-frame baseline
  is wrong exactly where the tokens must act. Each object has one body colour and a marked
  front (texture "front"), is elongated along it (1.3-1.8x) and spins 6-17 degrees per frame,
  so a turn changes its pixels (a plain cylinder's yaw did not: the rotate edit could not be
  seen); sizes vary across objects. Depth motion and tumbling are left to the 3D preset
  (configs/synthetic_3d.py, `bash demo.sh --preset=3d`), which has the budget to learn them;
- a small UNet (16x16x4 latents) and ViT, a high learning rate and a short EMA, because the
  budget is ~1-2k steps; 20 DDIM steps at sampling, `trailing` timesteps (the first step at
  t = 999, where the start noise is: `leading` starts at t = 951 and asks the model to find 7%
  signal in pure noise);
- x0 ("sample") prediction instead of SD's epsilon, with the plain (unweighted) x0 loss:
  measured by benchmarks/learning_curve.py on this setup, after 300 steps the epsilon model's
  samples scored 12.4 dB (image PSNR) and its token-swap error ratio was 0.99 (tokens ignored),
  the x0 model's 17.5 dB and 0.57. Min-SNR-5 weighting (weight min(SNR, 5) for x0) scales the
  high-noise timesteps, where the layout of the scene is decided, by 0.005-0.1: without it the
  token-swap ratio at 500 steps fell from 0.48 to 0.24 and image PSNR rose 0.3 dB;
- the UNet is told where each latent pixel is (`model.latent_coordinates`: (y, x) and, with
  `latent_coordinate_bands`, their Fourier features: 18 extra input channels) and the pose MLP
  gets Fourier features of the box corners in the same basis (`conditioning.pose_fourier_bands`):
  a shallow UNet otherwise only learns position from its padding, and placing objects from
  their pose tokens is exactly a function of position;
- the loss weighs the latent pixels inside the objects' target boxes 4x
  (`training.loss_object_weight` 3): the objects cover a small part of the image, and they are
  what the tokens control. `benchmarks/learning_curve.py` on the same data and VAE: object PSNR
  13.17 / 14.99 at 800 / 1600 steps against 12.25 / 13.86 unweighted (image PSNR 18.23 / 19.85
  against 18.83 / 20.62: still above copy-source's 18.78);
- training pairs have a frame gap >= 1, as the evaluation pairs (gap 0 rewards copying);
- speed, because examples seen are what the budget buys: the frozen VAE's latents of all 4,096
  training frames are computed once (`training.cache_latents`, ~10 s) instead of at every step,
  and the demo splits the host into one XLA CPU device per core (`demo.cpu_devices`,
  data-parallel): ~255 ms per step instead of ~315 on 2 cores; and malloc gets transparent huge
  pages (`demo.malloc_hugepages`; XLA's per-step temporaries otherwise fault in ~60k fresh pages
  per step): 244 ms instead of 282 for the step that encodes its targets
  (`benchmarks/train_step.py`, 2 devices, with and without the tunable).

  python -m neural_assets.demo --workdir=/tmp/na_demo            # data, VAE, training, report
  python -m benchmarks.learning_curve --minutes 10                # the curve of this config
"""
import ml_collections

from configs import common
from configs import conditioning
from configs import sampler
from configs import sd21
from data_pipelines import data_config

MAX_OBJECTS = 3


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  sd = sd21.get_config("base")
  unet = sd.unet
  unet.update(dict(
      in_channels=22,  # 4 latent channels + (y, x) + 4 x 4 Fourier: model.latent_coordinates.
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
  cond = conditioning.get_config("vits8", max_objects=MAX_OBJECTS)
  cond.encoder.update(dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=128, image_size=64, input_size=64))
  cond.update(dict(token_dim=32, context_dim=64, pose_hidden_dim=64, pose_fourier_bands=4))
  config.model = ml_collections.ConfigDict(dict(unet=unet, vae=vae, conditioning=cond,
                                                latent_coordinates=True,
                                                latent_coordinate_bands=4))
  config.diffusion = sd.diffusion
  config.diffusion.prediction_type = "sample"  # x0: learns the conditioning far faster here.
  config.sampler = sampler.get_config()
  config.sampler.num_inference_steps = 20
  config.sampler.timestep_spacing = "trailing"
  # Guidance extrapolates x0 away from the conditional mean, which costs PSNR; the model uses its
  # tokens strongly without it (token-swap test), so only a little.
  config.sampler.guidance_scale = 1.5

  # What the demo renders (neural_assets/demo/data.py; SceneConfig fields under `scene`).
  config.synthetic = ml_collections.ConfigDict(dict(
      num_train_videos=512, num_eval_videos=32, num_frames=8,
      min_objects=2, max_objects=MAX_OBJECTS,
      scene=dict(patterns=("front",), ground_pattern="solid", min_color=0.0,
                 min_size=0.9, max_size=1.8, aspect_range=(1.3, 1.8),
                 scale_range=(0.75, 1.33), spawn_radius=2.0, dynamic_prob=0.0,
                 still_prob=0.0, max_speed=0.8, min_spin=0.1, max_spin=0.3,
                 camera_speed=0.1, camera_distance=(7.0, 9.0)),
  ))
  # The demo's own knobs (neural_assets/demo): VAE warm-up minutes, batch and learning rate;
  # cpu_devices: XLA CPU devices the host is split into for data parallelism (0 = one per core,
  # 1 = XLA's single device; neural_assets/demo/host_devices.py).
  # malloc_hugepages: restart with glibc's transparent-huge-page tunable (faster CPU steps;
  # neural_assets/demo/malloc_hugepages.py).
  # minutes: the default --minutes (VAE warm-up + training; data, evaluation, edits and the
  # edit-fidelity benchmark add ~3 min: ~15 in all on 2 cores); fidelity_scenes: the default
  # --num_fidelity_scenes (the benchmark's own default is 32: here fewer, to fit the budget).
  config.demo = ml_collections.ConfigDict(dict(vae_minutes=2.5, vae_batch_size=16, vae_lr=2e-3,
                                               cpu_devices=0, malloc_hugepages=True,
                                               minutes=12.0, fidelity_scenes=8))

  config.data = data_config.default_data_config()
  config.data.update(dict(resolution=(64, 64), global_batch_size=16, eval_global_batch_size=32,
                          min_gap=1, max_gap=7, worker_count=0, read_threads=2,
                          # Every object a slot candidate, visible or not; invalid 3D boxes
                          # (below) drop and at most max_objects keep a slot (data_config.py).
                          keep_all_objects=True, paint_all_source_objects=True, eval_min_gap=1,
                          # Objects behind the camera or off screen get no slot (bounded pose
                          # inputs; "keep": the MOVi-E release). Depth is in generator units,
                          # raw: the camera is 7-9 (3D preset: 4-10) units from its look-at point.
                          invalid_3d_boxes="drop"))

  common.add_common(config)
  # No pretrained VAE exists at this size and a random frozen one decodes every sample to noise:
  # `python -m neural_assets.demo` first fits this VAE as an autoencoder (config.demo) and
  # passes it in as `training.init_checkpoint`; run that (or set init_checkpoint) before training.
  config.optimizer.update(dict(lr=2e-3, new_layers_lr=2e-3, warmup_steps=100, decay="constant",
                               ema_decay=0.995))
  # No image summaries: compiling them costs the demo's budget; the report shows samples.
  config.training.update(dict(num_train_steps=100_000, log_every_steps=50,
                              image_summary_every_steps=0, vae_sample_posterior=False,
                              loss_min_snr_gamma=0.0, loss_object_weight=3.0,
                              cache_latents=True))
  config.checkpoint.update(dict(every_steps=500, max_to_keep=2))
  config.eval.update(dict(every_steps=0, num_batches=1))
  config.sharding.min_size_to_shard = 0
  return config
