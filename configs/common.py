"""Training, evaluation, checkpoint, mesh and optimizer sections shared by every experiment config.

Each experiment config (`configs/movi_e.py`, `configs/smoke.py`, ...) calls these builders and
overrides what differs. Values tagged (open) are published neither in the paper nor in the
authors' code release (tags: configs/paper_base.py); they are third-party readings or common
choices, exposed here so that a run can change them.
"""
import ml_collections

from neural_assets.evaluation import evaluator


def mesh_config() -> ml_collections.ConfigDict:
  # 'data' takes whatever devices are left; fsdp > 1 splits parameters and optimizer state.
  return ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))


def sharding_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      # (regex, spec) pairs, first match wins; unmatched arrays: the default FSDP rule
      # (neural_assets/training/sharding.py).
      rules=(),
      # Default rule: split a parameter over several of its dimensions (fsdp's prime factors
      # each on a dimension they divide), so that e.g. 320-channel kernels shard 256 ways;
      # False: one dimension divisible by the whole fsdp size, else replicated.
      split_dims=True,
      # Arrays smaller than this stay replicated (biases, norms): gathering them costs more
      # than the memory they would save.
      min_size_to_shard=2 ** 14,
  ))


def optimizer_config() -> ml_collections.ConfigDict:
  """AdamW as read from the authors' setting (open: not in the paper or the release)."""
  return ml_collections.ConfigDict(dict(
      lr=5e-5,  # (open) UNet and visual encoder (pre-trained parts).
      new_layers_lr=1e-3,  # (open) token MLPs and projections (new layers).
      pretrained_prefixes=("unet", "tokenizer/encoder"),
      frozen_prefixes=(),  # e.g. ("tokenizer/encoder",) to freeze DINO (paper: fine-tuned).
      warmup_steps=1000,  # (open)
      # Steps at the peak after warm-up before `decay` starts (warmup-stable-decay: anneal at the
      # end of a fixed budget); 0: decay right after warm-up.
      hold_steps=0,
      decay="constant",  # (open) 'cosine' | 'linear' | 'constant'.
      decay_steps=0,  # 0: decay until training ends.
      end_lr_factor=0.0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=0.01,  # (open) optax / PyTorch AdamW default.
      clip_grad_norm=1.0,  # (open)
      ema_decay=0.0,  # 0: no EMA of the weights (the paper configs use 0.9999).
      # EMA decay at update t: min(ema_decay, (1 + t) / (ema_warmup + t)) (0: constant decay), so
      # the EMA forgets the initialisation early (training/optimizer.py, ema_decay_schedule).
      ema_warmup=10.0,
  ))


def training_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      num_train_steps=100_000,  # (open)
      seed=42,
      # Parameters stay float32 (master weights); 'bfloat16' runs the forward/backward in bf16.
      compute_dtype="float32",
      # Skip the update (keep params and optimizer state) when the loss or a gradient is NaN/Inf,
      # and count it; False applies the update anyway.
      skip_nonfinite=True,
      # Encode targets with a sample of the VAE posterior (as diffusers' SD training) or its mean.
      vae_sample_posterior=True,
      # Min-SNR-gamma loss weighting (Hang et al. 2023); 0: plain MSE (the release).
      loss_min_snr_gamma=0.0,
      # Extra loss weight of the latent pixels inside slotted objects' target boxes (weight
      # 1 + this there, 1 elsewhere); 0: plain MSE (the release).
      loss_object_weight=0.0,
      # Encode every training frame with the frozen VAE once, before the first step, and look
      # the targets' latents up instead of encoding them at every step (small datasets only:
      # neural_assets/training/latent_cache.py; needs vae_sample_posterior=False). The cache
      # refuses to build beyond cache_latents_max_bytes; frames are encoded
      # cache_latents_batch_size at a time (a multiple of the local device count).
      cache_latents=False,
      cache_latents_max_bytes=2 ** 31,
      cache_latents_batch_size=64,
      # Stop with an error after this many consecutive skipped steps (0: never).
      max_consecutive_nonfinite=20,
      # Wall-clock budget of one run of train_and_evaluate in seconds, its set-up (models,
      # restore, latent cache) and compilation included (0: none): the loop stops, saves a
      # checkpoint and returns (evaluation included when due), as on SIGTERM.
      max_train_seconds=0.0,
      log_every_steps=50,
      image_summary_every_steps=1000,
      num_image_summaries=4,
      profile_every_steps=0,  # 0: no profiling; else a short trace every this many steps.
      profile_num_steps=5,
      # Path to an orbax checkpoint written by `python -m neural_assets.convert` holding
      # {'unet', 'tokenizer': {'encoder'}, 'vae'}; empty: random initialisation.
      init_checkpoint="",
  ))


def checkpoint_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      every_steps=1000,
      max_to_keep=3,
      async_save=True,
  ))


def eval_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      every_steps=5000,  # 0: no periodic evaluation during training.
      # Batches per evaluation (-1: the whole eval split); batch size: data.eval_global_batch_size.
      num_batches=8,
      seed=0,
      use_ema=True,  # Score the EMA weights when they exist (False: the raw weights).
  ))


def evaluation_config() -> ml_collections.ConfigDict:
  """The Evaluator's metrics (`neural_assets/evaluation/evaluator.py`); network metrics (LPIPS,
  FID, DINO) switch on when their weight paths are set."""
  config = evaluator.default_config()
  config.image_range = (0.0, 1.0)  # The trainer hands over decoded images clipped to [0, 1].
  return config


def add_common(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds the shared sections to `config` (in place) and returns it."""
  config.mesh = mesh_config()
  config.sharding = sharding_config()
  config.optimizer = optimizer_config()
  config.training = training_config()
  config.checkpoint = checkpoint_config()
  config.eval = eval_config()
  config.evaluation = evaluation_config()
  return config
