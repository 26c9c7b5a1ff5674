"""The Neural Assets training loop, top to bottom: `train_and_evaluate(config, workdir)`.

    mesh + shardings  ->  model, VAE, optimizer  ->  state (resume | pretrained | random init)
    loop: next batch -> shard over (data, fsdp) -> jitted step -> report / images / checkpoint /
          evaluate (DDIM with guidance through the Evaluator) -> SIGTERM: save and stop

Workdir layout: `checkpoints/<step>/` (orbax), TensorBoard event files (process 0 only),
`config.json`. Re-running the same command resumes from the newest checkpoint.
"""
from __future__ import annotations

import functools
import time
from typing import Any, Mapping

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from data_pipelines import pipeline
from neural_assets import config_checks
from neural_assets.convert.checkpoint_io import CheckpointMismatchError
from neural_assets.diffusion.ddim import DDIMSampler
from neural_assets.diffusion.schedule import NoiseSchedule
from neural_assets.evaluation import evaluator as evaluator_lib
from neural_assets.models import partitioning
from neural_assets.models.neural_assets import NeuralAssetsModel
from neural_assets.models.vae import AutoencoderKL
from neural_assets.training import checkpointing
from neural_assets.training import latent_cache as latent_cache_lib
from neural_assets.training import mesh as mesh_lib
from neural_assets.training import optimizer as optimizer_lib
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import train_state as train_state_lib
from neural_assets.training import train_step as train_step_lib
from neural_assets.training.train_state import TrainState


class TrainingDivergedError(RuntimeError):
  """Too many consecutive steps with a non-finite loss, gradient or update."""


# ---------------------------------------------------------------------------------------------
# Set-up helpers.


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


@flax.struct.dataclass
class Setup:
  """What the loop and the evaluation need besides the state itself."""
  tx: Any = flax.struct.field(pytree_node=False)
  schedules: Any = flax.struct.field(pytree_node=False)
  abstract_state: Any = flax.struct.field(pytree_node=False)  # ShapeDtypeStructs with sharding.
  state_shardings: Any = flax.struct.field(pytree_node=False)
  init_fn: Any = flax.struct.field(pytree_node=False)  # rng -> TrainState (jitted, sharded).


def setup_state(config: ml_collections.ConfigDict, model: NeuralAssetsModel,
                vae: AutoencoderKL, mesh: jax.sharding.Mesh) -> Setup:
  """Optimizer, abstract state and its FSDP shardings; nothing is materialised."""
  rng = jax.random.key(config.training.seed)
  abstract_params, _ = jax.eval_shape(functools.partial(init_params, config, model, vae), rng)
  tx, schedules = optimizer_lib.make_optimizer(config.optimizer, abstract_params,
                                               config.training.num_train_steps)
  use_ema = config.optimizer.ema_decay > 0

  def init_state(rng):
    params, frozen = init_params(config, model, vae, rng)
    return train_state_lib.create(params, frozen, tx, rng, use_ema)

  abstract_state = jax.eval_shape(init_state, rng)
  shardings = sharding_lib.config_shardings(abstract_state, mesh, config.sharding)
  abstract_state = jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, shardings)
  return Setup(tx=tx, schedules=schedules, abstract_state=abstract_state,
               state_shardings=shardings, init_fn=jax.jit(init_state, out_shardings=shardings))


class InitCheckpointError(ValueError):
  """`config.training.init_checkpoint` is missing or is not a checkpoint training can start from."""


_INIT_EXPECTED = ("expected a converted initial checkpoint (the --out_dir of `python -m "
                  "neural_assets.convert`: an orbax PyTree with unet/, tokenizer/encoder, vae/) or "
                  "a training checkpoint (<workdir>/checkpoints/<step>, its checkpoints/ dir or "
                  "the workdir itself: the newest step is used)")


def _training_step_dirs(directory: epath.Path) -> list[epath.Path]:
  """Step directories (`<n>/state`) directly under `directory`, oldest first."""
  if not directory.is_dir():
    return []
  steps = [d for d in directory.iterdir() if d.name.isdigit() and (d / "state").is_dir()]
  return sorted(steps, key=lambda d: int(d.name))


def resolve_init_checkpoint(path: str) -> tuple[str, epath.Path]:
  """What `config.training.init_checkpoint` points at: ('converted' | 'training', directory).

  'training' resolves a workdir or its checkpoints/ dir to the newest step directory. Cheap (a
  few directory listings), so it runs before any model is built.
  Raises:
    InitCheckpointError: the path does not exist, or holds no checkpoint of either kind.
  """
  where = epath.Path(path).absolute()
  if not where.exists():
    raise InitCheckpointError(f"config.training.init_checkpoint={path!r} does not exist; "
                              f"{_INIT_EXPECTED}.")
  if (where / "state").is_dir():
    return "training", where
  for candidate in (where, where / "checkpoints"):
    steps = _training_step_dirs(candidate)
    if steps:
      logging.info("init_checkpoint %s is a training run; initialising from its newest "
                   "checkpoint %s.", path, steps[-1])
      return "training", steps[-1]
  if not (where / "_METADATA").exists() and not (where / "manifest.ocdbt").exists():
    found = sorted(p.name for p in where.iterdir())[:10] if where.is_dir() else "a file"
    raise InitCheckpointError(f"config.training.init_checkpoint={path!r} is not a checkpoint "
                              f"(it holds {found}); {_INIT_EXPECTED}.")
  return "converted", where


def _tree_metadata(directory: epath.Path) -> Any:
  """The tree of array metadata of the orbax PyTree checkpoint in `directory`."""
  saved = ocp.PyTreeCheckpointer().metadata(directory)
  saved = getattr(saved, "item_metadata", saved)
  return getattr(saved, "tree", saved)


def load_pretrained(state: TrainState, path: str, setup: Setup,
                    use_ema: bool) -> TrainState:
  """Overwrites the parts of `state` found in the checkpoint at `path`.

  `path` is either
  - a converted checkpoint (from `python -m neural_assets.convert`): an orbax PyTree of
    {'unet', 'tokenizer': {'encoder'}, 'vae'}; model parts it lacks (the tokenizer's new layers)
    keep their initialisation (logged); or
  - a training checkpoint (a step dir, a checkpoints/ dir or a workdir: the newest step): its
    trained `params` and `frozen_params['vae']` are loaded (not its optimizer state or step: this
    is a new run starting from those weights).
  Each leaf goes to params['unet' | 'tokenizer'] or frozen_params['vae'] at the same path, read
  directly into its sharding. Any leaf whose path or shape this model does not have raises
  CheckpointMismatchError.
  Raises:
    InitCheckpointError: `path` is missing or is neither kind of checkpoint.
  """
  kind, source = resolve_init_checkpoint(path)
  abstract = setup.abstract_state
  targets = {"unet": abstract.params["unet"], "tokenizer": abstract.params["tokenizer"],
             "vae": abstract.frozen_params["vae"]}
  flat_targets = flax.traverse_util.flatten_dict(targets, sep="/")
  try:
    tree = _tree_metadata(source / "state" if kind == "training" else source)
    if kind == "training":
      tree = {**dict(tree["params"]), "vae": dict(tree["frozen_params"])["vae"]}
    flat_saved = flax.traverse_util.flatten_dict(dict(tree), sep="/")
    for meta in flat_saved.values():
      tuple(meta.shape)  # Every leaf must be an array.
  except Exception as e:  # pylint: disable=broad-except
    raise InitCheckpointError(
        f"config.training.init_checkpoint={path!r}: {source} looks like a {kind} checkpoint but "
        f"its contents could not be read as one ({type(e).__name__}: {e}); "
        f"{_INIT_EXPECTED}.") from e
  problems = []
  for name, meta in sorted(flat_saved.items()):
    if name not in flat_targets:
      problems.append(f"{name} {tuple(meta.shape)} has no place in the model")
    elif tuple(meta.shape) != tuple(flat_targets[name].shape):
      problems.append(f"{name} has shape {tuple(meta.shape)} in the checkpoint but "
                      f"{tuple(flat_targets[name].shape)} in the model built from the config")
  if problems:
    raise CheckpointMismatchError(
        f"Initial checkpoint {path} ({kind}) does not match the model config:\n  " +
        "\n  ".join(problems[:8]) + (f"\n  ... {len(problems) - 8} more" if len(problems) > 8
                                     else ""))
  target = flax.traverse_util.unflatten_dict({k: flat_targets[k] for k in flat_saved}, sep="/")
  if kind == "training":
    item = {"params": {k: v for k, v in target.items() if k != "vae"},
            "frozen_params": {"vae": target["vae"]}}
    restore_args = jax.tree_util.tree_map(lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding),
                                          item)
    restored = ocp.PyTreeCheckpointer().restore(
        source / "state", args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                      partial_restore=True))
    checkpointing.verify_partial(source, restored)
    loaded = {**restored["params"], "vae": restored["frozen_params"]["vae"]}
  else:
    loaded = ocp.StandardCheckpointer().restore(source, target)
  loaded = flax.traverse_util.flatten_dict(loaded, sep="/")
  kept = sorted({k.split("/")[0] + ("/" + k.split("/")[1] if k.startswith("tokenizer") else "")
                 for k in flat_targets if k not in loaded})
  logging.info("Loaded %d arrays from %s (%s checkpoint); left at initialisation: %s",
               len(loaded), source, kind, kept or "nothing")
  flat_params = flax.traverse_util.flatten_dict(state.params, sep="/")
  flat_frozen = flax.traverse_util.flatten_dict(state.frozen_params, sep="/")
  for name, value in loaded.items():
    if name.startswith("vae/"):
      flat_frozen[name] = value
    else:
      flat_params[name] = value
  params = flax.traverse_util.unflatten_dict(flat_params, sep="/")
  frozen = flax.traverse_util.unflatten_dict(flat_frozen, sep="/")

  @functools.partial(jax.jit, out_shardings=setup.state_shardings)
  def rebuild(params, frozen, rng):
    return train_state_lib.create(params, frozen, setup.tx, jax.random.wrap_key_data(rng),
                                  use_ema)
  return rebuild(params, frozen, state.rng)


def check_init_checkpoint(config: ml_collections.ConfigDict) -> None:
  """Fails fast (before any model is built) on an init_checkpoint that is not there."""
  if config.training.init_checkpoint:
    resolve_init_checkpoint(config.training.init_checkpoint)


def check_data_dir(config: ml_collections.ConfigDict) -> None:
  data_dir = config.data.data_dir
  if not data_dir:
    raise ValueError("config.data.data_dir is empty: pass --config.data.data_dir=DIR (a "
                     "directory of ArrayRecord video records).")
  if not epath.Path(data_dir).exists():
    raise FileNotFoundError(f"config.data.data_dir={data_dir!r} does not exist.")


def restore_or_initialize(config: ml_collections.ConfigDict, setup: Setup,
                          checkpointer: checkpointing.Checkpointer,
                          train_iter: Any) -> TrainState:
  """Resumes from the newest checkpoint, else initialises (optionally from pretrained weights).

  `train_iter` None (evaluation): the checkpoint's data-iterator state is not read.
  """
  latest = checkpointer.latest_step()
  if latest is not None:
    state, data_state = checkpointer.restore(latest, setup.abstract_state,
                                             with_data=train_iter is not None)
    if train_iter is not None:
      train_iter.set_state(data_state)
    logging.info("Resumed from checkpoint step %d in %s.", latest, checkpointer.directory)
    return state
  state = setup.init_fn(jax.random.key(config.training.seed))
  if config.training.init_checkpoint:
    state = load_pretrained(state, config.training.init_checkpoint, setup,
                            config.optimizer.ema_decay > 0)
  return state


class CompileThenSync:
  """Wraps a jitted function: compiles it on the first call, then waits for every process.

  A process that finishes compiling first would otherwise wait inside the first cross-process
  collective, and CPU (gloo) collectives give up after 30 s; the coordination-service barrier
  here waits as long as compilation takes. Later calls run the compiled executable directly, so
  arguments must keep their shapes and shardings (the loop's batches do).
  """
  _count = 0

  def __init__(self, fn: Any, name: str, timeout_s: int = 3600):
    self._fn, self._name, self._timeout_s = fn, name, timeout_s
    self._compiled = None

  def __call__(self, *args):
    if self._compiled is None:
      self._compiled = self._fn.lower(*args).compile()
      if jax.process_count() > 1:
        CompileThenSync._count += 1
        ocp.multihost.get_barrier_sync_fn()(
            key=f"neural_assets_{self._name}_{CompileThenSync._count}",
            timeout_ms=self._timeout_s * 1000)
    return self._compiled(*args)


# ---------------------------------------------------------------------------------------------
# Summaries and evaluation.


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


def _denoise(model: NeuralAssetsModel, params: Any, latents: jax.Array, timesteps: jax.Array,
             tokens: jax.Array) -> jax.Array:
  return model.apply({"params": params}, latents, timesteps, tokens,
                     method=NeuralAssetsModel.denoise)


def make_sample_fn(config: ml_collections.ConfigDict, model: NeuralAssetsModel,
                   vae: AutoencoderKL, sampler: DDIMSampler,
                   mesh: jax.sharding.Mesh | None = None):
  """Jitted (params, vae_params, batch, key) -> generated target images [B, H, W, 3] in [0, 1].

  DDIM with classifier-free guidance (`config.sampler.guidance_scale`; the unconditional context
  is the batch tokenized with every example dropped: the null context CFG dropout trained,
  `config.model.conditioning.null_condition`). With `mesh`, activations keep the batch split
  over its batch axes (`models/partitioning.py`).
  """
  denoise_fn = functools.partial(_denoise, model)  # One object: the sampler's jit cache key.

  @jax.jit
  @functools.partial(partitioning.with_mesh_hints, mesh=mesh)
  def sample(params, vae_params, batch, key):
    batch_size = batch["source_image"].shape[0]
    tokens, null_tokens = model.apply({"params": params}, batch,
                                      method=NeuralAssetsModel.tokenize_cond_and_null)
    latents = sampler.sample(denoise_fn, params, tokens, key,
                             latent_shape(config, vae, batch_size), null_tokens)
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
  evaluator.reset()
  params, weights = train_state_lib.eval_weights(state, config.eval.use_ema)
  host_batch = sharding_lib.check_batch_size(config.data.eval_global_batch_size, mesh)
  eval_iter = pipeline.make_eval_iterator(config)
  key = jax.random.key(config.eval.seed)
  start = time.time()
  num_batches = 0
  for index, batch in enumerate(eval_iter):
    if 0 <= config.eval.num_batches <= index:
      break
    batch, valid = pad_batch(batch, host_batch)
    generated = sample_fn(params, state.frozen_params["vae"],
                          sharding_lib.shard_batch(batch, mesh), jax.random.fold_in(key, index))
    # This process's rows of the generations: the inverse of shard_batch, no cross-host copy.
    generated = np.asarray(multihost_utils.global_array_to_host_local_array(
        generated, mesh, jax.sharding.PartitionSpec(mesh_lib.batch_axes(mesh))))
    keep = np.asarray(valid, bool)
    evaluator.update(generated[keep], batch["target_image"][keep],
                     batch["target_boxes"][keep], batch["slot_mask"][keep])
    if num_batches == 0:
      n = min(config.training.num_image_summaries, int(keep.sum()))
      panels = np.concatenate([batch["source_image"][keep][:n] / 255.0,
                               batch["target_image"][keep][:n] / 255.0,
                               generated[keep][:n]], axis=2)
      writer.write_images(step, {"eval/source_target_generated": panels})
    num_batches += 1
  if num_batches == 0:
    raise ValueError(f"The eval split {config.data.eval_files!r} in {config.data.data_dir!r} "
                     "yielded no batch.")
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


# ---------------------------------------------------------------------------------------------
# The loop.


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       run_eval: bool = True) -> TrainState:
  """Trains (resuming from `workdir` if it holds a checkpoint) and evaluates periodically.

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
      check_init_checkpoint(config)  # Before the (slow) model set-up.
    mesh = mesh_lib.create_mesh(config.mesh)
    sharding_lib.check_batch_size(config.data.global_batch_size, mesh)
    model, vae = train_step_lib.build_models(config)
    setup = setup_state(config, model, vae, mesh)
    logging.info("Mesh %s over %d devices (%d processes); parameters per group: %s",
                 dict(mesh.shape), mesh.devices.size, jax.process_count(),
                 optimizer_lib.group_sizes(setup.abstract_state.params, config.optimizer))
    train_iter = pipeline.make_train_iterator(config)
    state = restore_or_initialize(config, setup, checkpointer, train_iter)
    latent_cache = (build_latent_cache(config, vae, state) if train_cfg.get("cache_latents")
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
  summary_fn = make_summary_fn(config, model, vae, train_cfg.num_image_summaries, mesh)
  sampler = DDIMSampler.from_config(config.diffusion, config.sampler)
  sample_fn = make_sample_fn(config, model, vae, sampler, mesh)
  evaluator = make_evaluator(config) if run_eval and config.eval.every_steps else None

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
        batch = next(train_iter)
        if latent_cache is not None:
          batch = latent_cache.add_to(batch)
        batch = sharding_lib.shard_batch(batch, mesh)
        state, metrics = train_step(state, batch)
      step += 1
      history.append(metrics)
      for hook in hooks:
        hook(step)

      last = step == train_cfg.num_train_steps
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
      stop = watcher.should_stop()
      if step % config.checkpoint.every_steps == 0 or last or stop:
        checkpointer.save(step, state, train_iter.get_state())
      if stop:
        logging.warning("Stopping at step %d (SIGTERM or config.training.max_train_seconds); "
                        "checkpoint saved.", step)
        break
      if run_eval and config.eval.every_steps and (step % config.eval.every_steps == 0 or last):
        evaluate(config, model, vae, state, mesh, writer, sample_fn, evaluator)
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
  mesh = mesh_lib.create_mesh(config.mesh)
  model, vae = train_step_lib.build_models(config)
  setup = setup_state(config, model, vae, mesh)
  checkpointer = checkpointing.Checkpointer(str(workdir / "checkpoints"),
                                            config.checkpoint.max_to_keep, async_save=False)
  if checkpointer.latest_step() is None:
    raise FileNotFoundError(f"No checkpoint to evaluate in {workdir / 'checkpoints'}.")
  state = restore_or_initialize(config, setup, checkpointer, None)
  checkpointer.close()
  return evaluate(config, model, vae, state, mesh, writer)
