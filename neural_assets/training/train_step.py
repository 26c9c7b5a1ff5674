"""One training step, jitted with explicit shardings: encode target, noise, CFG drop, loss, update.

    latents = scaling_factor * VAE.encode(target_image in [-1, 1])   (frozen; posterior sample
                                                                      or mean, by config)
    t ~ U[0, T), noise ~ N(0, I), drop_cond ~ Bernoulli(cfg_drop_prob)   (fold_in(rng, step))
    loss = |model(x_t, t, batch, drop_cond) - target(eps or v)|^2     (models.asset_diffusion)
    grads -> optax (frozen groups zeroed, clip, AdamW per group) -> params

Numerics: parameters are float32 master weights; `config.training.compute_dtype='bfloat16'`
builds the UNet, the visual encoder and the VAE with bf16 compute (`dtype`), so activations and matmuls run in bf16
while gradients land on the float32 parameters.

A non-finite loss or gradient norm, or an update that leaves NaN/Inf in the params, optimizer state
or EMA, skips the update when `config.training.skip_nonfinite` (the params, optimizer state and
EMA stay as they were; the step counter still advances so the data and RNG move on);
`nonfinite_steps` in the state and the `nonfinite` metric count it.
"""
from __future__ import annotations

import copy
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from neural_assets.diffusion.schedule import NoiseSchedule
from neural_assets.models import partitioning
from neural_assets.models.asset_diffusion import NeuralAssetsModel, diffusion_loss
from neural_assets.models.vae import AutoencoderKL
from neural_assets.training import latent_cache
from neural_assets.training import optimizer as optimizer_lib
from neural_assets.training import train_state as train_state_lib
from neural_assets.training.train_state import TrainState

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
  name = config.training.compute_dtype
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"config.training.compute_dtype={name!r}: expected one of "
                     f"{sorted(COMPUTE_DTYPES)}.")
  return COMPUTE_DTYPES[name]


def build_models(config: ml_collections.ConfigDict) -> tuple[NeuralAssetsModel, AutoencoderKL]:
  """(trainable model, frozen VAE) with the configured compute dtype (params stay float32)."""
  dtype = compute_dtype(config)
  model_config = copy.deepcopy(config.model)
  with model_config.unlocked():
    model_config.unet.dtype = dtype
    model_config.conditioning.encoder.dtype = dtype  # the visual encoder (ViT.from_config)
  vae = AutoencoderKL(**dict(config.model.vae), dtype=dtype)
  return NeuralAssetsModel(model_config), vae


def dummy_batch(config: ml_collections.ConfigDict, batch_size: int) -> dict[str, jax.Array]:
  """An all-zero frame-pair batch (DESIGN.md) of the configured shapes, for initialisation."""
  height, width = config.data.resolution
  n = config.model.conditioning.max_objects
  image = jnp.zeros((batch_size, height, width, 3), jnp.uint8)
  return dict(
      source_image=image, target_image=image,
      source_boxes=jnp.zeros((batch_size, n, 4), jnp.float32),
      target_boxes=jnp.zeros((batch_size, n, 4), jnp.float32),
      target_corners=jnp.zeros((batch_size, n, 8, 3), jnp.float32),
      slot_mask=jnp.zeros((batch_size, n), bool),
      relative_pose=jnp.broadcast_to(jnp.eye(4, dtype=jnp.float32), (batch_size, 4, 4)),
  )


def latent_shape(config: ml_collections.ConfigDict, vae: AutoencoderKL,
                 batch_size: int) -> tuple[int, int, int, int]:
  """[B, H / f, W / f, C] of the VAE latents of `config.data.resolution` images."""
  height, width = config.data.resolution
  factor = vae.downsample_factor
  if height % factor or width % factor:
    raise ValueError(f"config.data.resolution {(height, width)} is not divisible by the VAE "
                     f"downsampling factor {factor}.")
  return (batch_size, height // factor, width // factor, vae.latent_channels)


def init_params(config: ml_collections.ConfigDict, model: NeuralAssetsModel, vae: AutoencoderKL,
                rng: jax.Array) -> tuple[Any, Any]:
  """Random (trainable params, frozen params) = ({'tokenizer', 'unet'}, {'vae'})."""
  model_key, vae_key = jax.random.split(rng)
  batch = dummy_batch(config, 1)
  latents = jnp.zeros(latent_shape(config, vae, 1), jnp.float32)
  params = model.init(model_key, latents, jnp.zeros((1,), jnp.int32), batch,
                      jnp.zeros((1,), bool))["params"]
  height, width = config.data.resolution
  vae_params = vae.init(vae_key, jnp.zeros((1, height, width, 3), jnp.float32))["params"]
  return params, {"vae": vae_params}


def _denoise(model: NeuralAssetsModel, params: Any, latents: jax.Array, timesteps: jax.Array,
             tokens: jax.Array) -> jax.Array:
  return model.apply({"params": params}, latents, timesteps, tokens,
                     method=NeuralAssetsModel.denoise)


def denoiser(model: NeuralAssetsModel) -> Callable[..., jax.Array]:
  """`(params, latents [B,h,w,c], timesteps [B], tokens [B,L,D]) -> prediction [B,h,w,c]`, the
  sampler's denoiser. Make it once per model and keep it: it is the sampler's static argument,
  so the same object reuses the sampler's compilation."""
  return functools.partial(_denoise, model)


def images_to_vae_input(images: jax.Array) -> jax.Array:
  """uint8 [B, H, W, 3] (or float in [0, 1]) -> float32 in [-1, 1]."""
  if images.dtype == jnp.uint8:
    images = images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32) * 2.0 - 1.0


def vae_output_to_images(x: jax.Array) -> jax.Array:
  """VAE output in [-1, 1] -> float32 [0, 1]."""
  return jnp.clip((x.astype(jnp.float32) + 1.0) / 2.0, 0.0, 1.0)


def encode_latents(vae: AutoencoderKL, vae_params: Any, images: jax.Array, key: jax.Array,
                   sample_posterior: bool) -> jax.Array:
  """Target images -> scaled latents [B, h, w, c] (no gradient: the VAE is frozen)."""
  mean, logvar = vae.apply({"params": vae_params}, images_to_vae_input(images),
                           method=AutoencoderKL.encode)
  mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
  z = mean
  if sample_posterior:
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, jnp.float32)
  return jax.lax.stop_gradient(z * vae.scaling_factor)


def decode_latents(vae: AutoencoderKL, vae_params: Any, latents: jax.Array) -> jax.Array:
  """Scaled latents [B, h, w, c] -> images float32 [0, 1] [B, H, W, 3]."""
  x = vae.apply({"params": vae_params}, latents / vae.scaling_factor,
                method=AutoencoderKL.decode)
  return vae_output_to_images(x)


def _trainable_mask(params: Any, config: ml_collections.ConfigDict) -> Any:
  labels = optimizer_lib.param_labels(params, config.optimizer.pretrained_prefixes,
                                      config.optimizer.frozen_prefixes)
  return jax.tree_util.tree_map(lambda label: label != "frozen", labels)


def _all_finite(tree: Any) -> jax.Array:
  """True when every floating-point leaf of `tree` is free of NaN/Inf (scalar bool)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_train_step(config: ml_collections.ConfigDict, model: NeuralAssetsModel,
                    vae: AutoencoderKL, tx: optax.GradientTransformation,
                    schedules: Mapping[str, optax.Schedule], state_shardings: Any,
                    batch_shardings: Any, metric_sharding: Any
                    ) -> Callable[[TrainState, Mapping[str, jax.Array]],
                                  tuple[TrainState, dict[str, jax.Array]]]:
  """Returns `step(state, batch) -> (state, metrics)`, jitted with the given shardings.

  Args:
    config: the experiment config.
    model, vae: from `build_models`.
    tx, schedules: from `optimizer.make_optimizer`.
    state_shardings: TrainState of NamedShardings (in and out: the step keeps the layout).
    batch_shardings: dict of NamedShardings matching the batch (leading dim over data x fsdp).
    metric_sharding: replicated sharding for the scalar metrics.
  The input state is donated: do not reuse it after the call.
  """
  schedule = NoiseSchedule.from_config(config.diffusion)
  cfg_drop_prob = float(config.model.conditioning.cfg_drop_prob)
  skip_nonfinite = bool(config.training.skip_nonfinite)
  ema_decay_fn = optimizer_lib.ema_decay_schedule(float(config.optimizer.ema_decay),
                                                  float(config.optimizer.ema_warmup))
  sample_posterior = bool(config.training.vae_sample_posterior)
  min_snr_gamma = float(config.training.loss_min_snr_gamma)
  object_weight = float(config.training.loss_object_weight)

  def step(state: TrainState, batch: Mapping[str, jax.Array]):
    key = train_state_lib.step_rng(state)
    vae_key, loss_key, dropout_key = jax.random.split(key, 3)
    if latent_cache.LATENTS_KEY in batch:  # `training.cache_latents`: encoded once, up front.
      latents = batch[latent_cache.LATENTS_KEY]
    else:
      latents = encode_latents(vae, state.frozen_params["vae"], batch["target_image"], vae_key,
                               sample_posterior)

    def loss_fn(params):
      return diffusion_loss(params, model, batch, latents, loss_key, schedule, cfg_drop_prob,
                            train=True, rngs={"dropout": dropout_key},
                            min_snr_gamma=min_snr_gamma, object_weight=object_weight)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    trainable = _trainable_mask(grads, config)
    grad_norm = optax.global_norm(jax.tree_util.tree_map(
        lambda g, m: g if m else jnp.zeros((), g.dtype), grads, trainable))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = state.ema_params
    ema_decay = ema_decay_fn(state.step)
    if ema_params is not None:
      ema_params = train_state_lib.update_ema(ema_params, params, ema_decay)
    # A finite loss and gradient can still give NaN/Inf weights (e.g. a corrupt optimizer
    # moment, an update overflowing a huge weight): check what the update produced as well.
    finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm) &
              _all_finite((params, opt_state, ema_params)))
    if skip_nonfinite:
      # One conditional over the whole update, not a `where` per leaf: per-leaf selects on a
      # predicate that reads every leaf make XLA's instruction fusion quadratic (a smoke-size
      # step took > 5 min and > 10 GB to compile on CPU; 10 s with the conditional).
      params, opt_state, ema_params = jax.lax.cond(
          finite, lambda new, old: new, lambda new, old: old,
          (params, opt_state, ema_params), (state.params, state.opt_state, state.ema_params))
    nonfinite_steps = state.nonfinite_steps + (~finite).astype(jnp.int32)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              ema_params=ema_params, nonfinite_steps=nonfinite_steps)
    metrics = dict(metrics)
    metrics.update(
        grad_norm=grad_norm,
        param_norm=optax.global_norm(params),
        nonfinite=(~finite).astype(jnp.float32),
        nonfinite_steps=nonfinite_steps,
        **({"ema_decay": ema_decay} if ema_params is not None else {}),
        **{f"lr/{group}": schedule_fn(state.step) for group, schedule_fn in schedules.items()})
    return new_state, metrics

  # The models' activation hints (`models/partitioning.py`) read the mesh while tracing.
  step = partitioning.with_mesh_hints(step, metric_sharding.mesh)
  return jax.jit(step, in_shardings=(state_shardings, batch_shardings),
                 out_shardings=(state_shardings, metric_sharding), donate_argnums=(0,))
