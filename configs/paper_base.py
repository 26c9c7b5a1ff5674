"""The paper's model and training setting (SD-2.1 base at 256x256 + DINO ViT-B/8), shared by the
MOVi-E, Objectron and Waymo configs, which set the dataset-specific parts.

Where each value comes from, tagged in the comments:
- (release): the value in the authors' partial code release (google-deepmind/neural_assets,
  JAX/Flax: the conditioning encoder, the diffusion wrapper, MOVi preprocessing and a one-batch
  loss notebook; no training loop, sampler, evaluation or weights);
- (paper): stated in the paper (Wu et al., "Neural Assets: 3D-Aware Multi-Object Scene Synthesis
  with Image Diffusion Models", NeurIPS 2024, arXiv 2406.09292) or by its authors in the public
  review discussion;
- (open): published in neither: our choice (or a common one), exposed here so that a run can
  change it by config.
"""
import ml_collections

from configs import common
from configs import conditioning
from configs import sampler
from configs import sd21
from data_pipelines import data_config


def get_config(max_objects: int, resolution: int = 256) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  sd = sd21.get_config("base")  # SD-2.1 base, epsilon prediction (release).
  unet = sd.unet
  # 256x256 images -> 32x32 latents (paper); sample_size only documents the input size.
  unet.sample_size = resolution // 8
  config.model = ml_collections.ConfigDict(dict(
      unet=unet, vae=sd.vae,
      conditioning=conditioning.get_config("vitb8", max_objects=max_objects),
      # (open) No latent-position input channels (the release's UNet input is the 4 latent
      # channels): True adds (y, x) in front of the UNet, latent_coordinate_bands K > 0 their
      # Fourier features (4 K more); unet.in_channels must count them (configs/synthetic.py).
      latent_coordinates=False,
      latent_coordinate_bands=0))
  config.diffusion = sd.diffusion
  config.sampler = sampler.get_config()  # DDIM 50 steps, guidance 2.0 (open).

  config.data = data_config.default_data_config()
  config.data.resolution = (resolution, resolution)
  config.data.global_batch_size = 64  # (open) the paper does not publish its batch size.
  config.data.eval_global_batch_size = 32
  config.data.worker_count = 8
  # The release's conditioning data. keep_all_objects: every object of the video is a slot
  # candidate, visible or not (the 2D filters and the 3D size rule are off), but an object with
  # a degenerate target 3D box (and, with invalid_3d_boxes "drop" below, one behind the camera
  # or off screen) gets no slot, and only the max_objects largest keep one (all keys:
  # data_pipelines/data_config.py). The background token's image paints out every object
  # visible in the source (slotted or not).
  config.data.keep_all_objects = True
  config.data.paint_all_source_objects = True
  # (open) Except objects whose target 3D box is behind the camera or off screen: no slot
  # ("keep" is the MOVi-E release: their raw projections, |u|, |v| up to ~1e6 where a corner
  # is near the camera plane). The pose encoder then reads, per slot, (u, v, depth) of corners
  # 0, 1, 2, 4 with no normalisation or scale (pose_fourier_bands=0): u, v normalised to the
  # crop (on screen in [0, 1]; a kept box overlaps the screen and every corner has depth >
  # data.min_depth, so |u - c_u| <= f_u |x_cam| / min_depth), depth raw in the dataset's
  # units (each config's comment; DESIGN.md "Pose inputs"). The background token's camera MLP
  # reads the relative pose's translation raw, in the same units.
  config.data.invalid_3d_boxes = "drop"
  config.data.eval_min_gap = 1  # Eval pairs never have target = source.

  common.add_common(config)
  # AdamW, 5e-5 for UNet + DINO, 1e-3 for new layers, 1000 warmup steps, clip 1.0 (open:
  # third-party readings; common.optimizer_config()).
  config.training.num_train_steps = 200_000  # (open)
  config.training.compute_dtype = "bfloat16"  # (open) float32 master weights either way.
  # EMA of the weights (open: the release has no training loop); evaluation scores the EMA
  # weights (config.eval.use_ema).
  config.optimizer.ema_decay = 0.9999
  # Data parallel by default: SD-2.1 UNet + ViT-B/8 with float32 AdamW state fit one 80 GB
  # accelerator. `--config.mesh.fsdp=8` (or -1 with --config.mesh.data=1) splits parameters and
  # optimizer state; benchmarks/train_step.py prints the per-device bytes for 8 and 256 devices.
  config.checkpoint.every_steps = 5000
  config.eval.every_steps = 10_000
  config.eval.num_batches = 16
  return config
