"""Demo step 3: the trained model vs the copy-source-frame baseline and the VAE ceiling."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


@dataclasses.dataclass
class Restored:
  """A trained model ready for sampling."""
  model: Any
  vae: Any
  state: Any
  mesh: Any
  step: int


def restore_latest(config: ml_collections.ConfigDict, train_dir: str) -> Restored:
  """The newest checkpoint in train_dir/checkpoints (FileNotFoundError if there is none)."""
  # pylint: disable=g-import-not-at-top
  from neural_assets.training import checkpointing
  from neural_assets.training import mesh as mesh_lib
  from neural_assets.training import train_step as train_step_lib
  from neural_assets.training import trainer
  # pylint: enable=g-import-not-at-top
  mesh = mesh_lib.create_mesh(config.mesh)
  model, vae = train_step_lib.build_models(config)
  setup = trainer.setup_state(config, model, vae, mesh)
  checkpointer = checkpointing.Checkpointer(os.path.join(train_dir, "checkpoints"),
                                            config.checkpoint.max_to_keep, async_save=False)
  try:
    if checkpointer.latest_step() is None:
      raise FileNotFoundError(f"No checkpoint in {train_dir}/checkpoints: train first "
                              "(--minutes > 0).")
    state = trainer.restore_or_initialize(config, setup, checkpointer, None)
  finally:
    checkpointer.close()
  return Restored(model=model, vae=vae, state=state, mesh=mesh, step=int(state.step))


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
  """Scores the model and the copy-source-frame baseline with `trainer.evaluate` (same eval
  pairs, same Evaluator from `config.evaluation`, image and object level).

  The model (DDIM + guidance, `trainer.make_sample_fn`, EMA weights if `config.eval.use_ema`)
  writes its metrics to the training event files (tags `eval/...`) at its step; the baseline's
  and the VAE reconstruction's (the model's ceiling) go to the log only. Returns {'model',
  'baseline', 'vae': metrics without the 'eval/' prefix,
  'examples': the first `num_keep` eval examples plus 'sample' ([n, H, W, 3] in [0, 1]),
  'seconds': model evaluation time}.
  """
  # pylint: disable=g-import-not-at-top
  from clu import metric_writers
  from neural_assets.diffusion.ddim import DDIMSampler
  from neural_assets.training import trainer
  # pylint: enable=g-import-not-at-top
  sampler = DDIMSampler.from_config(config.diffusion, config.sampler)
  model_sample_fn = trainer.make_sample_fn(config, restored.model, restored.vae, sampler)
  kept: list[dict[str, np.ndarray]] = []

  def capturing_sample_fn(params, vae_params, batch, key):
    out = model_sample_fn(params, vae_params, batch, key)
    if sum(len(k["sample"]) for k in kept) < num_keep:
      kept.append({**jax.device_get(dict(batch)), "sample": np.asarray(jax.device_get(out))})
    return out

  start = time.time()
  writer = metric_writers.create_default_writer(train_dir, asynchronous=False)
  try:
    model = trainer.evaluate(config, restored.model, restored.vae, restored.state, restored.mesh,
                             writer, capturing_sample_fn)
  finally:
    writer.close()
  seconds = time.time() - start
  baseline = trainer.evaluate(config, restored.model, restored.vae, restored.state,
                              restored.mesh, metric_writers.LoggingWriter("copy_source_baseline"),
                              copy_source_sample_fn)
  vae_recon = trainer.evaluate(config, restored.model, restored.vae, restored.state,
                               restored.mesh, metric_writers.LoggingWriter("vae_reconstruction"),
                               make_vae_reconstruction_fn(restored.vae))
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
