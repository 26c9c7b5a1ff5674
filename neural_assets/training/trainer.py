"""The Neural Assets training loop, top to bottom: `train_and_evaluate(config, workdir)`.

    mesh + shardings  ->  model, VAE, optimizer  ->  state (resume | pretrained | random init)
    loop: next batch -> shard over (data, fsdp) -> jitted step -> report / images / checkpoint /
          evaluate (DDIM with guidance through the Evaluator) -> SIGTERM, time budget or the
          caller's `on_step`: save and stop

Workdir layout: `checkpoints/<step>/` (orbax), TensorBoard event files (process 0 only),
`config.json`. Re-running the same command resumes from the newest checkpoint.

What the loop calls lives beside it: `state_setup` (abstract state, resume or initialise,
restore for evaluation), `init_checkpoint` (`config.training.init_checkpoint`),
`eval_sampling` (image summaries, DDIM sampling, `evaluate`), `train_step` (the jitted step),
`checkpointing` (saving, SIGTERM), `multihost` (compile, then wait for every process).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Mapping, Optional

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from data_pipelines import pipeline
from neural_assets import config_checks
from neural_assets.diffusion.ddim import DDIMSampler
from neural_assets.models.vae import AutoencoderKL
from neural_assets.training import checkpointing
from neural_assets.training import eval_sampling
from neural_assets.training import init_checkpoint
from neural_assets.training import latent_cache as latent_cache_lib
from neural_assets.training import mesh as mesh_lib
from neural_assets.training import optimizer as optimizer_lib
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import state_setup
from neural_assets.training import train_step as train_step_lib
from neural_assets.training.multihost import CompileThenSync
from neural_assets.training.train_state import TrainState

# `on_step(step, scalars) -> stop`: called after every step; `scalars` holds the step's logged
# means ('train/loss', ..., 'data/...') on log steps (`training.log_every_steps` and the last
# step) and is empty between them. True: save a checkpoint at this step and stop, as SIGTERM does.
OnStep = Callable[[int, Mapping[str, float]], bool]


class TrainingDivergedError(RuntimeError):
  """Too many consecutive steps with a non-finite loss, gradient or update."""


# ---------------------------------------------------------------------------------------------
# Set-up helpers.


def check_data_dir(config: ml_collections.ConfigDict) -> None:
  data_dir = config.data.data_dir
  if not data_dir:
    raise ValueError("config.data.data_dir is empty: pass --config.data.data_dir=DIR (a "
                     "directory of ArrayRecord video records).")
  if not epath.Path(data_dir).exists():
    raise FileNotFoundError(f"config.data.data_dir={data_dir!r} does not exist.")


def _mean_metrics(history: list[Mapping[str, Any]]) -> dict[str, float]:
  fetched = jax.device_get(history)
  return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def _write_config(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
  if jax.process_index() == 0:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))


def build_latent_cache(config: ml_collections.ConfigDict, vae: AutoencoderKL,
                       state: TrainState) -> latent_cache_lib.LatentCache:
  """`training.cache_latents`: every training frame through the state's frozen VAE, as the step
  encodes targets (posterior mean, scaled), on this process's devices (each process holds the
  whole cache; `latent_cache` module docstring)."""
  start = time.monotonic()
  local_mesh = mesh_lib.create_mesh({"data": -1}, jax.local_devices())
  chunk = int(config.training.cache_latents_batch_size)
  if chunk % local_mesh.size:
    raise ValueError(f"training.cache_latents_batch_size={chunk} must be a multiple of the "
                     f"{local_mesh.size} local devices.")
  vae_params = jax.device_put(
      multihost_utils.process_allgather(state.frozen_params["vae"], tiled=True),
      sharding_lib.replicated(local_mesh))
  encode = jax.jit(lambda params, images: train_step_lib.encode_latents(
      vae, params, images, jax.random.key(0), sample_posterior=False))
  cache = latent_cache_lib.build(
      config,
      lambda images: encode(vae_params,
                            jax.device_put(images, sharding_lib.batch_sharding(local_mesh))),
      chunk, int(config.training.cache_latents_max_bytes))
  logging.info("Latent cache: %d frames of %d videos, %.1f MiB, %.1f s.", len(cache.latents),
               cache.num_videos, cache.latents.nbytes / 2 ** 20, time.monotonic() - start)
  return cache


def next_global_batch(train_iter: Iterator[Any], latent_cache: Optional[Any],
                      mesh: jax.sharding.Mesh) -> dict[str, Any]:
  """The next host batch, with its cached target latents when `latent_cache` is set, as one
  global batch sharded over `mesh`'s data axes."""
  batch = next(train_iter)
  if latent_cache is not None:
    batch = latent_cache.add_to(batch)
  return sharding_lib.shard_batch(batch, mesh)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       run_eval: bool = True, on_step: Optional[OnStep] = None) -> TrainState:
  """Trains (resuming from `workdir` if it holds a checkpoint) and evaluates periodically.

  `on_step` (see `OnStep`) sees every step and may stop the run; a stopped run saves the step
  it stopped at, so running again resumes exactly there.
  Returns the final state (on every process).
  """
  run_start = time.monotonic()  # `training.max_train_seconds` counts from here (set-up too).
  workdir = epath.Path(workdir)
  config_checks.check_config(config)
  check_data_dir(config)
  train_cfg = config.training
  # Nothing is written to `workdir` until the state is restored or initialised: a run refused
  # at start (another config's checkpoint, a corrupt one, a bad init_checkpoint) leaves it
  # exactly as it was, config.json included.
  checkpointer = checkpointing.Checkpointer(
      str(workdir / "checkpoints"), config.checkpoint.max_to_keep, config.checkpoint.async_save,
      config_json=config.to_json_best_effort())
  try:
    if checkpointer.latest_step() is None:
      init_checkpoint.check_init_checkpoint(config)  # Before the (slow) model set-up.
    mesh = mesh_lib.create_mesh(config.mesh)
    sharding_lib.check_batch_size(config.data.global_batch_size, mesh)
    model, vae = train_step_lib.build_models(config)
    setup = state_setup.setup_state(config, model, vae, mesh)
    logging.info("Mesh %s over %d devices (%d processes); parameters per group: %s",
                 dict(mesh.shape), mesh.devices.size, jax.process_count(),
                 optimizer_lib.group_sizes(setup.abstract_state.params, config.optimizer))
    train_iter = pipeline.make_train_iterator(config)
    state = state_setup.restore_or_initialize(config, setup, checkpointer, train_iter)
    latent_cache = (build_latent_cache(config, vae, state) if train_cfg.cache_latents
                    else None)
  except BaseException:
    checkpointer.close()
    raise
  workdir.mkdir(parents=True, exist_ok=True)
  _write_config(config, workdir)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  step = int(state.step)

  train_step = CompileThenSync(train_step_lib.make_train_step(
      config, model, vae, setup.tx, setup.schedules, setup.state_shardings,
      sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh)), "train_step")
  summary_fn = eval_sampling.make_summary_fn(config, model, vae, train_cfg.num_image_summaries,
                                             mesh)
  sampler = DDIMSampler.from_config(config.diffusion, config.sampler)
  sample_fn = eval_sampling.make_sample_fn(config, model, vae, sampler, mesh)
  evaluator = (eval_sampling.make_evaluator(config) if run_eval and config.eval.every_steps
               else None)

  hooks = []
  if jax.process_index() == 0:
    hooks.append(periodic_actions.ReportProgress(
        num_train_steps=train_cfg.num_train_steps, writer=writer,
        every_steps=train_cfg.log_every_steps, every_secs=None))
    if train_cfg.profile_every_steps:
      hooks.append(periodic_actions.Profile(
          logdir=str(workdir), num_profile_steps=train_cfg.profile_num_steps,
          profile_duration_ms=0,  # Stop after profile_num_steps steps, however short.
          every_steps=train_cfg.profile_every_steps, every_secs=None,
          first_profile=step + train_cfg.profile_every_steps))
  watcher = checkpointing.PreemptionWatcher().install()
  history, consecutive_nonfinite = [], 0
  logging.info("Training from step %d to %d.", step, train_cfg.num_train_steps)
  try:
    while step < train_cfg.num_train_steps:
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        batch = next_global_batch(train_iter, latent_cache, mesh)
        state, metrics = train_step(state, batch)
      step += 1
      history.append(metrics)
      for hook in hooks:
        hook(step)

      last = step == train_cfg.num_train_steps
      scalars = {}
      if step % train_cfg.log_every_steps == 0 or last:
        for nonfinite in jax.device_get([m["nonfinite"] for m in history]):
          consecutive_nonfinite = consecutive_nonfinite + 1 if nonfinite else 0
        scalars = {f"train/{k}": v for k, v in _mean_metrics(history).items()}
        scalars.update({f"data/{k}": v for k, v in train_iter.stats.items()})
        writer.write_scalars(step, scalars)
        history = []
        limit = train_cfg.max_consecutive_nonfinite
        if limit and consecutive_nonfinite >= limit:
          raise TrainingDivergedError(
              f"{consecutive_nonfinite} consecutive steps up to {step} had a non-finite loss, "
              f"gradient or update (limit config.training.max_consecutive_nonfinite={limit}); "
              "the last "
              "checkpoint was left untouched.")
      if train_cfg.image_summary_every_steps and (
          step % train_cfg.image_summary_every_steps == 0 or last):
        images = np.asarray(multihost_utils.process_allgather(
            summary_fn(state, batch), tiled=True))
        writer.write_images(step, {"train/source_target_vaerecon_x0": images})

      if (train_cfg.max_train_seconds and
          time.monotonic() - run_start > train_cfg.max_train_seconds):
        # Through the watcher, so that all processes stop at the same step.
        watcher.request_stop()
      if on_step is not None and on_step(step, scalars):
        watcher.request_stop()
      stop = watcher.should_stop()
      if step % config.checkpoint.every_steps == 0 or last or stop:
        checkpointer.save(step, state, train_iter.get_state())
      if stop:
        logging.warning("Stopping at step %d (SIGTERM, config.training.max_train_seconds or "
                        "on_step); checkpoint saved.", step)
        break
      if run_eval and config.eval.every_steps and (step % config.eval.every_steps == 0 or last):
        eval_sampling.evaluate(config, model, vae, state, mesh, writer, sample_fn, evaluator)
  finally:
    watcher.uninstall()
    checkpointer.close()  # Waits for pending async saves.
    writer.flush()
  return state


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """`--mode=eval`: evaluates the newest checkpoint in `workdir` once."""
  workdir = epath.Path(workdir)
  check_data_dir(config)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  restored = state_setup.restore_for_eval(config, str(workdir / "checkpoints"))
  return eval_sampling.evaluate(config, restored.model, restored.vae, restored.state,
                                restored.mesh, writer)
