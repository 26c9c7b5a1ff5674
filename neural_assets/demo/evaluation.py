"""Demo step 3: the trained model vs the copy-source-frame baseline and the VAE ceiling."""
from __future__ import annotations

import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from neural_assets.training import state_setup
from neural_assets.training.state_setup import Restored


def restore_latest(config: ml_collections.ConfigDict, train_dir: str) -> Restored:
  """The newest checkpoint in train_dir/checkpoints (FileNotFoundError if there is none)."""
  return state_setup.restore_for_eval(config, os.path.join(train_dir, "checkpoints"),
                                      hint=": train first (--minutes > 0)")


def copy_source_sample_fn(params, vae_params, batch, key):  # pylint: disable=unused-argument
  """The baseline as a 'sampler': the source frame itself, float [0, 1] like the model's output."""
  return batch["source_image"].astype(jnp.float32) / 255.0


def make_vae_reconstruction_fn(vae: Any):
  """A reference 'sampler': the target through the frozen VAE (encode mean, decode), [0, 1].

  The model generates in this VAE's latent space, so this is the best score it can reach.
  """
  from neural_assets.training import train_step as train_step_lib  # pylint: disable=g-import-not-at-top

  @jax.jit
  def reconstruct(params, vae_params, batch, key):  # pylint: disable=unused-argument
    latents = train_step_lib.encode_latents(vae, vae_params, batch["target_image"],
                                            jax.random.key(0), sample_posterior=False)
    return train_step_lib.decode_latents(vae, vae_params, latents)

  return reconstruct


def evaluate_model_and_baseline(config: ml_collections.ConfigDict, restored: Restored,
                                train_dir: str, num_keep: int) -> dict[str, Any]:
  """Scores the model and the copy-source-frame baseline with `eval_sampling.evaluate` (same
  eval pairs, same Evaluator from `config.evaluation`, image and object level).

  The model (DDIM + guidance, `eval_sampling.make_sample_fn`, EMA weights if
  `config.eval.use_ema`) writes its metrics to the training event files (tags `eval/...`) at its step; the baseline's
  and the VAE reconstruction's (the model's ceiling) go to the log only. Returns {'model',
  'baseline', 'vae': metrics without the 'eval/' prefix,
  'examples': the first `num_keep` eval examples plus 'sample' ([n, H, W, 3] in [0, 1]),
  'seconds': model evaluation time}.
  """
  # pylint: disable=g-import-not-at-top
  from clu import metric_writers
  from neural_assets.diffusion.ddim import DDIMSampler
  from neural_assets.training import eval_sampling
  # pylint: enable=g-import-not-at-top
  sampler = DDIMSampler.from_config(config.diffusion, config.sampler)
  model_sample_fn = eval_sampling.make_sample_fn(config, restored.model, restored.vae, sampler)
  kept: list[dict[str, np.ndarray]] = []

  def capturing_sample_fn(params, vae_params, batch, key):
    out = model_sample_fn(params, vae_params, batch, key)
    if sum(len(k["sample"]) for k in kept) < num_keep:
      kept.append({**jax.device_get(dict(batch)), "sample": np.asarray(jax.device_get(out))})
    return out

  start = time.time()
  writer = metric_writers.create_default_writer(train_dir, asynchronous=False)
  try:
    model = eval_sampling.evaluate(config, restored.model, restored.vae, restored.state,
                                   restored.mesh, writer, capturing_sample_fn)
  finally:
    writer.close()
  seconds = time.time() - start
  baseline = eval_sampling.evaluate(
      config, restored.model, restored.vae, restored.state, restored.mesh,
      metric_writers.LoggingWriter("copy_source_baseline"), copy_source_sample_fn)
  vae_recon = eval_sampling.evaluate(
      config, restored.model, restored.vae, restored.state, restored.mesh,
      metric_writers.LoggingWriter("vae_reconstruction"), make_vae_reconstruction_fn(restored.vae))
  model, baseline = _strip_eval_prefix(model), _strip_eval_prefix(baseline)
  # Padded copies of a final partial batch are not examples: keep at most image/count.
  count = min(num_keep, int(model["image/count"]))
  examples = {k: np.concatenate([b[k] for b in kept])[:count] for k in kept[0]}
  examples["vae_reconstruction"] = np.asarray(jax.device_get(make_vae_reconstruction_fn(
      restored.vae)(None, restored.state.frozen_params["vae"],
                    {"target_image": jnp.asarray(examples["target_image"])}, None)))
  return dict(model=model, baseline=baseline, vae=_strip_eval_prefix(vae_recon),
              examples=examples, seconds=seconds)


def _strip_eval_prefix(metrics: Mapping[str, float]) -> dict[str, float]:
  return {k[len("eval/"):] if k.startswith("eval/") else k: float(v) for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------
# Is the conditioning used? Denoising error with the true tokens vs another scene's.

TIMESTEP_BUCKETS = 4  # [0, 250), [250, 500), [500, 750), [750, 1000) for T = 1000.


def make_conditioning_error_fn(config: ml_collections.ConfigDict, model: Any, vae: Any,
                               num_buckets: int = TIMESTEP_BUCKETS):
  """Jitted `(params, vae_params, batch, key) -> [num_buckets, 3]` denoising MSEs.

  Per timestep bucket (equal slices of [0, T)), every example is noised at a timestep drawn in the
  bucket and denoised with (0) its own tokens, (1) another scene's tokens (the batch's tokens
  rolled by one example) and (2) the null context (all conditioning dropped, as CFG trains it);
  the MSE against the training target (epsilon or v) is averaged over the batch. Same noise and
  timesteps for the three, so only the tokens differ. The batch needs >= 2 examples.
  """
  # pylint: disable=g-import-not-at-top
  from neural_assets.diffusion.schedule import NoiseSchedule
  from neural_assets.models.asset_diffusion import NeuralAssetsModel
  from neural_assets.training import train_step as train_step_lib
  # pylint: enable=g-import-not-at-top
  schedule = NoiseSchedule.from_config(config.diffusion)
  edges = np.linspace(0, schedule.num_train_timesteps, num_buckets + 1).round().astype(int)

  bounds = jnp.asarray(edges, jnp.int32)

  @jax.jit
  def errors(params, vae_params, batch, key):
    latents = train_step_lib.encode_latents(vae, vae_params, batch["target_image"], key, False)
    size = latents.shape[0]
    cond, null = model.apply({"params": params}, batch,
                             method=NeuralAssetsModel.tokenize_cond_and_null)
    # The three token variants as one [3B] batch, and the buckets as a loop (`lax.map`): one
    # UNet in the compiled program instead of 12 unrolled copies (compile time was most of the
    # demo's token-swap step).
    tokens = jnp.concatenate([cond, jnp.roll(cond, 1, axis=0), null])  # [3B, L, D]

    def bucket(i):
      t_key, n_key = jax.random.split(jax.random.fold_in(key, i))
      t = jax.random.randint(t_key, (size,), bounds[i], bounds[i + 1], jnp.int32)
      noise = jax.random.normal(n_key, latents.shape, jnp.float32)
      noisy = schedule.add_noise(latents, noise, t)
      target = schedule.training_target(latents, noise, t)
      out = model.apply({"params": params}, jnp.tile(noisy, (3, 1, 1, 1)), jnp.tile(t, 3),
                        tokens, method=NeuralAssetsModel.denoise)
      squared = jnp.square(out.astype(jnp.float32) - jnp.tile(target, (3, 1, 1, 1)))
      return jnp.mean(squared.reshape(3, -1), axis=1)  # (true, swapped, null)

    return jax.lax.map(bucket, jnp.arange(num_buckets))  # [num_buckets, 3]

  errors.bucket_edges = edges
  return errors


def conditioning_errors(config: ml_collections.ConfigDict, model: Any, vae: Any, params: Any,
                        vae_params: Any, batches: list[Mapping[str, np.ndarray]],
                        error_fn: Any = None, seed: int = 0, repeats: int = 4
                        ) -> dict[str, Any]:
  """Token-swap test over `batches` (each >= 2 examples), `repeats` noise draws each.

  Returns {'buckets': [[t0, t1), ...], 'true', 'swapped', 'null': per-bucket mean MSEs,
  'swap_ratio': true / swapped per bucket, 'null_ratio': true / null per bucket,
  'mid_swap_ratio': true / swapped over the middle half of the buckets (t in [T/4, 3T/4))}.
  A ratio of 0.8 means the true tokens' error is 20% below the other one's.
  """
  error_fn = error_fn or make_conditioning_error_fn(config, model, vae)
  total = None
  for b, batch in enumerate(batches):
    for r in range(repeats):
      key = jax.random.fold_in(jax.random.key(seed), b * repeats + r)
      value = np.asarray(jax.device_get(error_fn(params, vae_params, dict(batch), key)))
      total = value if total is None else total + value
  mean = total / (len(batches) * repeats)  # [buckets, 3]
  edges = error_fn.bucket_edges
  num = len(edges) - 1
  mid = slice(num // 4, num - num // 4)
  return dict(
      buckets=[[int(edges[i]), int(edges[i + 1])] for i in range(num)],
      true=mean[:, 0].tolist(), swapped=mean[:, 1].tolist(), null=mean[:, 2].tolist(),
      swap_ratio=(mean[:, 0] / mean[:, 1]).tolist(), null_ratio=(mean[:, 0] / mean[:, 2]).tolist(),
      mid_swap_ratio=float(mean[mid, 0].sum() / mean[mid, 1].sum()))
