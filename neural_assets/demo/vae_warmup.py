"""Demo step 1b: the toy VAE fitted as an autoencoder (the frozen VAE must reconstruct)."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from neural_assets.demo.settings import demo_settings

def pretrain_vae(config: ml_collections.ConfigDict, out_dir: str, seconds: float, *,
                 batch_size: int = 8, lr: float = 2e-3, kl_weight: float = 1e-6,
                 max_steps: int = 100_000, num_stat_batches: int = 4) -> dict[str, Any]:
  """Trains the config's VAE as an autoencoder on the training frames for `seconds`.

  The paper starts from Stable Diffusion's pretrained VAE; no weights can be downloaded here and
  a randomly initialised frozen VAE decodes every latent to noise, so the demo first fits its
  small VAE (MSE reconstruction of a posterior sample + `kl_weight` * KL, as SD's VAE without
  the perceptual and GAN terms) on the synthetic frames. The latent scaling factor is then set
  as SD's was: 1 / std of the latent means over `num_stat_batches` batches.

  Writes out_dir/checkpoint (orbax {'vae': params}, the layout `config.training.init_checkpoint`
  reads) and out_dir/vae.json; returns the JSON's content: steps, seconds, scaling_factor and the
  reconstruction PSNR (dB, [0, 1] images) on the eval split's first batch.
  """
  # pylint: disable=g-import-not-at-top
  import optax
  import orbax.checkpoint as ocp
  from data_pipelines import pipeline
  from neural_assets.evaluation import image_metrics
  from neural_assets.models.vae import AutoencoderKL
  from neural_assets.training import mesh as mesh_lib
  from neural_assets.training import sharding as sharding_lib
  from neural_assets.training import train_step as train_step_lib
  # pylint: enable=g-import-not-at-top
  _, vae = train_step_lib.build_models(config)
  height, width = config.data.resolution
  params = vae.init(jax.random.key(config.training.seed), jnp.zeros((1, height, width, 3)))[
      "params"]
  tx = optax.adam(lr)
  opt_state = tx.init(params)

  def loss_fn(params, images, key):
    x = train_step_lib.images_to_vae_input(images)
    mean, logvar = vae.apply({"params": params}, x, method=AutoencoderKL.encode)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    recon = vae.apply({"params": params}, z, method=AutoencoderKL.decode)
    mse = jnp.mean(jnp.square(recon - x))
    kl = 0.5 * jnp.mean(jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=-1))
    return mse + kl_weight * kl, mse

  @jax.jit
  def step(params, opt_state, images, key):
    (_, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, images, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, mse

  @jax.jit
  def encode_decode(params, images):
    mean, _ = vae.apply({"params": params}, train_step_lib.images_to_vae_input(images),
                        method=AutoencoderKL.encode)
    recon = vae.apply({"params": params}, mean, method=AutoencoderKL.decode)
    return mean, train_step_lib.vae_output_to_images(recon)

  # Data-parallel over every local device when they split the batch (one CPU device per core:
  # `host_devices`), as the trainer's step; else on the default device.
  mesh = mesh_lib.create_mesh({"data": -1})
  shard = jax.process_count() == 1 and batch_size % mesh.size == 0
  if shard:
    params, opt_state = jax.device_put((params, opt_state), sharding_lib.replicated(mesh))
  train_iter = pipeline.make_train_iterator(config)
  key = jax.random.key(config.training.seed + 1)
  start, steps, mse = time.time(), 0, float("nan")
  while steps < max_steps and (steps == 0 or time.time() - start < seconds):
    batch = next(train_iter)
    images = np.concatenate([batch["source_image"], batch["target_image"]])[:batch_size]
    if shard:
      images = sharding_lib.shard_batch(images, mesh)
    params, opt_state, mse = step(params, opt_state, images, jax.random.fold_in(key, steps))
    steps += 1
    if steps % 50 == 0:
      logging.info("VAE warm-up step %d: reconstruction MSE %.5f ([-1, 1] images), %.0f s.",
                   steps, float(mse), time.time() - start)
  means = [encode_decode(params, next(train_iter)["target_image"])[0]
           for _ in range(num_stat_batches)]
  latent_std = float(jnp.std(jnp.concatenate(means)))
  eval_images = next(iter(pipeline.make_eval_iterator(config)))["target_image"]
  _, recon = encode_decode(params, eval_images)
  psnr = float(jnp.mean(image_metrics.psnr(recon, jnp.asarray(eval_images) / 255.0, 1.0)))
  os.makedirs(out_dir, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(out_dir, "checkpoint"), {"vae": params}, force=True)
  checkpointer.wait_until_finished()
  info = dict(steps=steps, seconds=time.time() - start, scaling_factor=1.0 / latent_std,
              eval_recon_psnr=psnr, last_train_mse=float(mse))
  with open(os.path.join(out_dir, "vae.json"), "w") as f:
    json.dump(info, f, indent=2)
  logging.info("VAE warm-up done: %s", info)
  return info


def ensure_vae(config: ml_collections.ConfigDict, vae_dir: str, seconds: float
               ) -> Optional[dict[str, Any]]:
  """Warm VAE info from vae_dir/vae.json, training it first (`pretrain_vae`) if missing and
  seconds > 0; None when there is none and seconds == 0."""
  info_path = os.path.join(vae_dir, "vae.json")
  if os.path.exists(info_path):
    with open(info_path) as f:
      return json.load(f)
  if seconds <= 0:
    return None
  knobs = demo_settings(config)
  return pretrain_vae(config, vae_dir, seconds, batch_size=knobs.vae_batch_size, lr=knobs.vae_lr)
