"""What the loop renders: training image summaries, and evaluation (DDIM with classifier-free
guidance, scored by the Evaluator).

  make_summary_fn(...)   (state, batch) -> source | target | VAE recon | one-step x0 panels
  make_sample_fn(...)    (params, vae_params, batch, key) -> generated targets in [0, 1]
  eval_batches(config)   the eval split's host batches, `config.eval.num_batches` of them
  score_eval_split(...)  feed every eval batch's generations into an Evaluator
  evaluate(...)          generate every eval batch, score, write and return the metrics
"""
from __future__ import annotations

import functools
import itertools
import time
from typing import Any, Iterator, Mapping

from absl import logging
from clu import metric_writers
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines import pipeline
from neural_assets.diffusion.ddim import DDIMSampler
from neural_assets.diffusion.schedule import NoiseSchedule
from neural_assets.evaluation import evaluator as evaluator_lib
from neural_assets.models import partitioning
from neural_assets.models.asset_diffusion import NeuralAssetsModel
from neural_assets.models.vae import AutoencoderKL
from neural_assets.training import mesh as mesh_lib
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import train_state as train_state_lib
from neural_assets.training import train_step as train_step_lib
from neural_assets.training.multihost import CompileThenSync
from neural_assets.training.train_state import TrainState


def make_summary_fn(config: ml_collections.ConfigDict, model: NeuralAssetsModel,
                    vae: AutoencoderKL, num_images: int, mesh: jax.sharding.Mesh | None = None):
  """Jitted (state, batch) -> [n, H, 4W, 3] in [0, 1]: source | target | VAE recon | one-step x0.

  The last panel is the model's x0 estimate from the target noised to the middle of the
  schedule, conditioned on the source: a cheap view of what the model has learnt.
  """
  schedule = NoiseSchedule.from_config(config.diffusion)
  t_mid = schedule.num_train_timesteps // 2

  @jax.jit
  @functools.partial(partitioning.with_mesh_hints, mesh=mesh)
  def summary(state: TrainState, batch: Mapping[str, jax.Array]) -> jax.Array:
    batch = jax.tree_util.tree_map(lambda x: x[:num_images], dict(batch))
    vae_params = state.frozen_params["vae"]
    latents = train_step_lib.encode_latents(vae, vae_params, batch["target_image"],
                                            jax.random.key(0), sample_posterior=False)
    t = jnp.full((latents.shape[0],), t_mid, jnp.int32)
    noise = jax.random.normal(jax.random.key(1), latents.shape, jnp.float32)
    noisy = schedule.add_noise(latents, noise, t)
    out = model.apply({"params": state.params}, noisy, t, batch,
                      jnp.zeros((latents.shape[0],), bool))
    x0, _ = schedule.predict_x0_and_eps(out.astype(jnp.float32), noisy, t)
    to_unit = lambda im: im.astype(jnp.float32) / 255.0
    panels = [to_unit(batch["source_image"]), to_unit(batch["target_image"]),
              train_step_lib.decode_latents(vae, vae_params, latents),
              train_step_lib.decode_latents(vae, vae_params, x0)]
    return jnp.concatenate(panels, axis=2)

  return CompileThenSync(summary, "summary")


def make_sample_fn(config: ml_collections.ConfigDict, model: NeuralAssetsModel,
                   vae: AutoencoderKL, sampler: DDIMSampler,
                   mesh: jax.sharding.Mesh | None = None):
  """Jitted (params, vae_params, batch, key) -> generated target images [B, H, W, 3] in [0, 1].

  DDIM with classifier-free guidance (`config.sampler.guidance_scale`; the unconditional context
  is the batch tokenized with every example dropped: the null context CFG dropout trained,
  `config.model.conditioning.null_condition`). With `mesh`, activations keep the batch split
  over its batch axes (`models/partitioning.py`).
  """
  denoise_fn = train_step_lib.denoiser(model)

  @jax.jit
  @functools.partial(partitioning.with_mesh_hints, mesh=mesh)
  def sample(params, vae_params, batch, key):
    batch_size = batch["source_image"].shape[0]
    tokens, null_tokens = model.apply({"params": params}, batch,
                                      method=NeuralAssetsModel.tokenize_cond_and_null)
    latents = sampler.sample(denoise_fn, params, tokens, key,
                             train_step_lib.latent_shape(config, vae, batch_size), null_tokens)
    return train_step_lib.decode_latents(vae, vae_params, latents)

  return CompileThenSync(sample, "sample")


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> tuple[dict[str, np.ndarray],
                                                                     np.ndarray]:
  """Pads a (final, partial) host batch to `size` by repeating its last example; returns
  (batch, valid [size] bool)."""
  n = len(next(iter(batch.values())))
  if n > size:
    raise ValueError(f"Batch of {n} is larger than the expected {size}.")
  valid = np.arange(size) < n
  if n == size:
    return dict(batch), valid
  index = np.minimum(np.arange(size), n - 1)
  return {k: np.asarray(v)[index] for k, v in batch.items()}, valid


def make_evaluator(config: ml_collections.ConfigDict) -> evaluator_lib.Evaluator:
  """The metrics of `config.evaluation`; generated images arrive in [0, 1]."""
  low, high = config.evaluation.image_range
  if (low, high) != (0.0, 1.0):
    raise ValueError(f"config.evaluation.image_range must be (0.0, 1.0): the trainer hands the "
                     f"Evaluator clipped [0, 1] images, got {(low, high)}.")
  return evaluator_lib.Evaluator(config.evaluation)


def eval_batches(config: ml_collections.ConfigDict) -> Iterator[dict[str, np.ndarray]]:
  """This process's host batches of the eval split, in order: the first
  `config.eval.num_batches` (all of them when it is negative). The iterator is made here, not
  at the first batch."""
  batches = pipeline.make_eval_iterator(config)
  limit = int(config.eval.num_batches)
  return itertools.islice(batches, limit) if limit >= 0 else iter(batches)


def score_eval_split(config: ml_collections.ConfigDict, params: Any, vae_params: Any,
                     mesh: jax.sharding.Mesh, sample_fn: Any, evaluator: Any,
                     first_batch: Any = None) -> int:
  """Feeds `sample_fn(params, vae_params, batch, key)`'s images of every eval batch of this
  process (`eval_batches`, the final one padded; key `config.eval.seed` folded with the batch
  index) into `evaluator` after resetting it; `first_batch(batch, generated, keep)` sees the
  first one. Returns the number of batches (ValueError when there is none)."""
  evaluator.reset()
  host_batch = sharding_lib.check_batch_size(config.data.eval_global_batch_size, mesh)
  key = jax.random.key(config.eval.seed)
  num_batches = 0
  for index, batch in enumerate(eval_batches(config)):
    batch, valid = pad_batch(batch, host_batch)
    generated = sample_fn(params, vae_params, sharding_lib.shard_batch(batch, mesh),
                          jax.random.fold_in(key, index))
    # This process's rows of the generations: the inverse of shard_batch, no cross-host copy.
    generated = np.asarray(multihost_utils.global_array_to_host_local_array(
        generated, mesh, jax.sharding.PartitionSpec(mesh_lib.batch_axes(mesh))))
    keep = np.asarray(valid, bool)
    evaluator.update(generated[keep], batch["target_image"][keep],
                     batch["target_boxes"][keep], batch["slot_mask"][keep])
    if num_batches == 0 and first_batch is not None:
      first_batch(batch, generated, keep)
    num_batches += 1
  if num_batches == 0:
    raise ValueError(f"The eval split {config.data.eval_files!r} in {config.data.data_dir!r} "
                     "yielded no batch.")
  return num_batches


def evaluate(config: ml_collections.ConfigDict, model: NeuralAssetsModel, vae: AutoencoderKL,
             state: TrainState, mesh: jax.sharding.Mesh, writer: metric_writers.MetricWriter,
             sample_fn: Any = None, evaluator: Any = None) -> dict[str, float]:
  """Generates the eval split's targets with DDIM + guidance and scores them (Evaluator).

  Each process scores only its own shard of the eval set (its rows of every batch: the images
  it fed in and its part of the generations); the Evaluator then adds up the metric sums, counts
  and FID statistics of all processes (`result(all_processes=True)`), so every process returns
  the same numbers, those of one process over all examples. Only process 0's writer writes them
  (its image panels show its own examples).
  """
  step = int(state.step)
  sampler = DDIMSampler.from_config(config.diffusion, config.sampler)
  sample_fn = sample_fn or make_sample_fn(config, model, vae, sampler, mesh)
  evaluator = evaluator or make_evaluator(config)
  params, weights = train_state_lib.eval_weights(state, config.eval.use_ema)
  start = time.time()

  def write_panels(batch, generated, keep):
    n = min(config.training.num_image_summaries, int(keep.sum()))
    panels = np.concatenate([batch["source_image"][keep][:n] / 255.0,
                             batch["target_image"][keep][:n] / 255.0,
                             generated[keep][:n]], axis=2)
    writer.write_images(step, {"eval/source_target_generated": panels})

  num_batches = score_eval_split(config, params, state.frozen_params["vae"], mesh, sample_fn,
                                 evaluator, first_batch=write_panels)
  results = {f"eval/{k}": float(v)
             for k, v in evaluator.result(all_processes=True).items()}
  results["eval/seconds"] = time.time() - start
  results["eval/num_batches"] = float(num_batches)
  # Scalars only in the writer: 1 when the EMA weights were scored, 0 for the raw ones.
  results["eval/ema_weights"] = float(weights == "ema")
  writer.write_scalars(step, results)
  writer.flush()
  logging.info("Evaluation at step %d (%s weights): %s", step, weights, results)
  return results
