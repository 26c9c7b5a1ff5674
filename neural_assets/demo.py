r"""The embedded demo: synthetic data, bounded training, evaluation vs a baseline, edits, report.

  python -m neural_assets.demo --workdir=./workdir/demo [--minutes=15] \
      [--config=configs/synthetic.py] [--config.optimizer.lr=1e-4] [--num_train_videos=64]

Steps (each skipped when its output already exists, so re-running resumes):
  1. WORKDIR/data: synthetic MOVi-E-like videos (`data_pipelines/synthetic.py` CLI), train and
     eval splits; sizes from `config.synthetic` (see `data_spec`) unless a flag overrides them.
  1b. WORKDIR/vae: the config's small VAE fitted as an autoencoder on the synthetic frames for
     `--vae_minutes` (part of the budget; once per workdir): the paper starts from SD's trained
     VAE, and a random frozen VAE decodes every sample to noise.
  2. WORKDIR/train: `trainer.train_and_evaluate` for the rest of `--minutes` of wall-clock
     (`config.training.max_train_seconds`; a SIGTERM backstop makes the trainer save and stop if
     it overruns), resuming from the newest checkpoint. A tqdm bar shows time, step and loss.
  3. Evaluation of the newest checkpoint on the eval split with the trainer's `evaluate` (DDIM +
     guidance through the Evaluator, image and object level), and of the copy-source-frame
     baseline (the source frame returned unchanged as the prediction) and of the target through
     the VAE (the ceiling), through the very same code.
  4. Each edit type of `neural_assets.editing` on a few eval scenes.
  5. WORKDIR/report/index.html (`neural_assets.report`) and WORKDIR/report/results.json.

Eval pairs use `--eval_min_gap` (default 1): with a gap of 0 the source *is* the target and the
copy baseline's PSNR is infinite.
"""
from __future__ import annotations

import copy
import dataclasses
import glob
import json
import logging as py_logging
import os
import platform
import re
import signal
import threading
import time
from typing import Any, Mapping, Optional

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from neural_assets import cli_validation
from neural_assets import report as report_lib

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "configs", "synthetic.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Experiment config (default: configs/synthetic.py).",
    lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", "./workdir/demo",
                               "Demo directory: data/, train/, report/ go here.")
_MINUTES = flags.DEFINE_float(
    "minutes", 15.0, "Training wall-clock budget of this run, in minutes (0: no training, only "
    "evaluate the newest checkpoint and write the report).")
_NUM_TRAIN_VIDEOS = flags.DEFINE_integer("num_train_videos", None,
                                         "Override config.synthetic.num_train_videos.")
_NUM_EVAL_VIDEOS = flags.DEFINE_integer("num_eval_videos", None,
                                        "Override config.synthetic.num_eval_videos.")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", None, "Override config.synthetic.num_frames.")
_DATA_WORKERS = flags.DEFINE_integer("data_workers", 1, "Processes rendering synthetic videos.")
_NUM_EDIT_SCENES = flags.DEFINE_integer("num_edit_scenes", 3,
                                        "Eval scenes shown per edit type (0: no edits).")
_NUM_SHOWN = flags.DEFINE_integer("num_shown", 4, "Eval examples in the reconstruction grid.")
_EVAL_MIN_GAP = flags.DEFINE_integer(
    "eval_min_gap", 1, "Minimum frame gap of the evaluation pairs (see the module docstring).")
_VAE_MINUTES = flags.DEFINE_float(
    "vae_minutes", 3.0, "Part of --minutes spent first warming up the VAE on the synthetic frames "
    "(once per workdir; 0: keep a randomly initialised VAE, whose samples are noise).")
_BACKSTOP_SECONDS = flags.DEFINE_float(
    "backstop_seconds", 120.0, "Grace after the budget before the demo sends itself SIGTERM "
    "(the trainer then saves and stops); <0 disables.")

# Numbers are checked at parse time (NaN / inf included), naming the flag and the valid range.
_FLAG_RANGES = (("minutes", "a finite number", 0), ("vae_minutes", "a finite number", 0),
                ("backstop_seconds", "a finite number", None),
                ("num_train_videos", "an integer", 1), ("num_eval_videos", "an integer", 1),
                ("num_frames", "an integer", 2), ("data_workers", "an integer", 1),
                ("num_edit_scenes", "an integer", 0), ("num_shown", "an integer", 1),
                ("eval_min_gap", "an integer", 0))
for _name, _kind, _low in _FLAG_RANGES:
  flags.register_validator(_name, *cli_validation.absl_validator(_name, _kind, _low))

_BACKSTOP_REPEAT_SECONDS = 5.0

# config.synthetic keys -> defaults when the config has no such section.
SYNTHETIC_DEFAULTS = dict(num_train_videos=256, num_eval_videos=16, num_frames=8, min_objects=3,
                          max_objects=6, train_seed=0, eval_seed=1, image_format="png",
                          records_per_shard=256)


# ---------------------------------------------------------------------------------------------
# 1. Data.


def data_spec(config: ml_collections.ConfigDict, **overrides: Optional[int]) -> dict[str, Any]:
  """What to generate: `config.synthetic` (else SYNTHETIC_DEFAULTS), overridden by non-None
  keyword arguments; the resolution is the larger side of `config.data.resolution` (the
  pipeline resizes)."""
  section = dict(config.synthetic) if "synthetic" in config else {}
  unknown = set(section) - set(SYNTHETIC_DEFAULTS)
  if unknown:
    raise ValueError(f"Unknown config.synthetic keys {sorted(unknown)}; known: "
                     f"{sorted(SYNTHETIC_DEFAULTS)}.")
  spec = {**SYNTHETIC_DEFAULTS, **section}
  spec.update({k: v for k, v in overrides.items() if v is not None})
  spec["resolution"] = int(max(config.data.resolution))
  for key in ("num_train_videos", "num_eval_videos", "num_frames"):
    if int(spec[key]) < 1:
      raise ValueError(f"Synthetic data: {key} must be >= 1, got {spec[key]}.")
  return spec


def ensure_data(data_dir: str, spec: Mapping[str, Any], num_workers: int = 1) -> float:
  """Generates the train and eval splits into `data_dir` unless a finished dataset with the same
  spec is there (marker file `spec.json`, written last). Returns the seconds spent."""
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  marker = os.path.join(data_dir, "spec.json")
  if os.path.exists(marker):
    with open(marker) as f:
      if json.load(f) == dict(spec):
        logging.info("Synthetic data already in %s.", data_dir)
        return 0.0
    logging.warning("Synthetic data in %s has another spec; regenerating it.", data_dir)
    os.remove(marker)
  for path in glob.glob(os.path.join(data_dir, "*.array_record*")):
    os.remove(path)
  start = time.time()
  for split, count, seed in (("train", spec["num_train_videos"], spec["train_seed"]),
                             ("eval", spec["num_eval_videos"], spec["eval_seed"])):
    logging.info("Rendering %d synthetic %s videos into %s ...", count, split, data_dir)
    synthetic.main([
        "--out_dir", data_dir, "--split", split, "--num_videos", str(count),
        "--seed", str(seed), "--resolution", str(spec["resolution"]),
        "--num_frames", str(spec["num_frames"]), "--min_objects", str(spec["min_objects"]),
        "--max_objects", str(spec["max_objects"]), "--image_format", spec["image_format"],
        "--records_per_shard", str(spec["records_per_shard"]), "--num_workers", str(num_workers)])
  with open(marker, "w") as f:
    json.dump(dict(spec), f, indent=2)
  return time.time() - start


# ---------------------------------------------------------------------------------------------
# 1b. VAE warm-up: the frozen VAE must reconstruct, or every sample decodes to noise.


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

  train_iter = pipeline.make_train_iterator(config)
  key = jax.random.key(config.training.seed + 1)
  start, steps, mse = time.time(), 0, float("nan")
  while steps < max_steps and (steps == 0 or time.time() - start < seconds):
    batch = next(train_iter)
    images = np.concatenate([batch["source_image"], batch["target_image"]])[:batch_size]
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
  return pretrain_vae(config, vae_dir, seconds)


# ---------------------------------------------------------------------------------------------
# 2. Training with a wall-clock budget and a progress bar.


class _TrainLogTracker(py_logging.Handler):
  """Reads the step and loss from the trainer's metric log lines ('[step] train/loss=...')."""

  _PATTERN = re.compile(r"^\[(\d+)\]")
  _LOSS = re.compile(r"train/loss=([-+0-9.eE]+|nan|inf)")

  def __init__(self):
    super().__init__(level=py_logging.INFO)
    self.step: Optional[int] = None
    self.loss: Optional[float] = None

  def emit(self, record: py_logging.LogRecord) -> None:
    try:
      message = record.getMessage()
    except Exception:  # pylint: disable=broad-except
      return
    match = self._PATTERN.match(message)
    if match:
      self.step = int(match.group(1))
      loss = self._LOSS.search(message)
      if loss:
        self.loss = float(loss.group(1))


def _progress_loop(budget_s: float, tracker: _TrainLogTracker, done: threading.Event,
                   start: float) -> None:
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  total = max(int(round(budget_s)), 1)
  with tqdm(total=total, unit="s", desc="training", dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s "
                       "[{elapsed}<{remaining}]{postfix}") as bar:
    while not done.wait(1.0):
      bar.n = min(int(time.time() - start), total)
      postfix = {}
      if tracker.step is not None:
        postfix["step"] = tracker.step
      if tracker.loss is not None:
        postfix["loss"] = f"{tracker.loss:.4f}"
      bar.set_postfix(postfix, refresh=False)
      bar.refresh()


def train_with_budget(config: ml_collections.ConfigDict, train_dir: str, budget_s: float,
                      backstop_s: float) -> dict[str, Any]:
  """Runs `trainer.train_and_evaluate` (no periodic eval) for at most `budget_s` seconds.

  Sets `config.training.max_train_seconds = budget_s` (the trainer stops, saves and returns once
  that much training time has passed). If it is still running `backstop_s` later, the demo sends
  itself SIGTERM, which the trainer's PreemptionWatcher turns into "save a checkpoint and stop".
  Returns {'steps_before', 'steps_after', 'train_seconds', 'stopped_by_backstop'}.
  """
  from neural_assets.training import checkpointing  # pylint: disable=g-import-not-at-top
  from neural_assets.training import trainer  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(config)
  config.training.max_train_seconds = float(budget_s)
  checkpoint_dir = os.path.join(train_dir, "checkpoints")
  steps_before = _latest_step(checkpoint_dir, checkpointing)

  tracker = _TrainLogTracker()
  absl_logger = logging.get_absl_logger()
  absl_logger.addHandler(tracker)
  done = threading.Event()
  start = time.time()
  progress = threading.Thread(target=_progress_loop, args=(budget_s, tracker, done, start),
                              daemon=True)
  backstop_fired = threading.Event()
  in_main_thread = threading.current_thread() is threading.main_thread()
  previous_handler = None
  backstop = None
  if backstop_s >= 0 and in_main_thread:
    # Our own handler under the trainer's: a SIGTERM arriving while the trainer's watcher is not
    # installed (set-up, compilation, after the loop) is then ignored instead of killing the
    # demo, and the backstop repeats it until the watcher catches one.
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: None)

    def fire():
      if done.wait(budget_s + backstop_s):
        return
      logging.warning("Training overran its %.0f s budget by %.0f s: sending SIGTERM (every "
                      "%.0f s) so the trainer saves and stops.", budget_s, backstop_s,
                      _BACKSTOP_REPEAT_SECONDS)
      backstop_fired.set()
      while True:
        os.kill(os.getpid(), signal.SIGTERM)
        if done.wait(_BACKSTOP_REPEAT_SECONDS):
          return
    backstop = threading.Thread(target=fire, daemon=True)
    backstop.start()
  progress.start()
  try:
    state = trainer.train_and_evaluate(config, train_dir, run_eval=False)
  finally:
    done.set()
    progress.join()
    if backstop is not None:
      backstop.join()
    absl_logger.removeHandler(tracker)
    if previous_handler is not None:
      signal.signal(signal.SIGTERM, previous_handler)
  return dict(steps_before=steps_before or 0, steps_after=int(jax.device_get(state.step)),
              train_seconds=time.time() - start,
              stopped_by_backstop=backstop_fired.is_set())


def _latest_step(checkpoint_dir: str, checkpointing: Any) -> Optional[int]:
  if not os.path.isdir(checkpoint_dir):
    return None
  checkpointer = checkpointing.Checkpointer(checkpoint_dir, 1, async_save=False)
  try:
    return checkpointer.latest_step()
  finally:
    checkpointer.close()


# ---------------------------------------------------------------------------------------------
# 3. Evaluation: model vs copy-source-frame baseline.


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


# ---------------------------------------------------------------------------------------------
# 4. Edits.

EDIT_TYPES = ("translate", "rotate", "rescale", "remove", "duplicate", "insert",
              "background swap", "camera change")


def read_eval_record(config: ml_collections.ConfigDict, video_index: int) -> dict[str, Any]:
  """Decoded video record `video_index` of the eval split (the frame-pair `video_index`)."""
  from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
  from data_pipelines import video_record  # pylint: disable=g-import-not-at-top
  source = pipeline.VideoRecordSource(
      pipeline.resolve_files(config.data.data_dir, config.data.eval_files))
  return video_record.decode(source[int(video_index)]["data"])


def _object_order(scene: Any) -> list[int]:
  """Objects by decreasing 2D box area: the biggest is the clearest to edit."""
  boxes = scene.boxes_2d
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  return [int(i) for i in np.argsort(-area, kind="stable")]


def keep_largest_objects(scene: Any, max_objects: int) -> Any:
  """The scene with only its `max_objects` largest objects (2D box area), as the training
  pipeline keeps them when a frame has more objects than the model's slots."""
  from neural_assets import editing  # pylint: disable=g-import-not-at-top
  if scene.num_objects <= max_objects:
    return scene
  keep = np.sort(_object_order(scene)[:max_objects])
  return editing.Scene(image=scene.image, boxes_2d=scene.boxes_2d[keep],
                       centers=scene.centers[keep], sizes=scene.sizes[keep],
                       rotations=scene.rotations[keep], instance_ids=scene.instance_ids[keep],
                       intrinsics=scene.intrinsics, world_to_camera=scene.world_to_camera)


def make_edits(scene: Any, other: Any, max_objects: int
               ) -> dict[str, tuple[Any, Optional[int], str]]:
  """Every edit type on `scene` ({type: (Edit or None, edited object or None, note)}).

  Each op is tried on the objects by decreasing size and a few magnitudes until one gives valid
  boxes (editing raises EditError otherwise) and fits the model's `max_objects` slots (adding an
  object to a full scene first removes its smallest other object); `other` (another scene)
  donates the inserted object and the swapped background. None: nothing allowed the edit (the
  note says why).
  """
  from neural_assets import editing  # pylint: disable=g-import-not-at-top
  order = _object_order(scene)

  def room(k):
    """The scene, or the scene without its smallest object other than k when it is full."""
    if scene.num_objects < max_objects:
      return scene
    smallest = [i for i in reversed(order) if i != k]
    return editing.remove(scene, smallest[0]) if smallest else scene

  attempts = {
      # Camera-frame offsets (x right, y down, z forward) in scene units (metres for MOVi).
      "translate": [lambda k, m=m: editing.translate(scene, k, (m, 0.0, 0.0), frame="camera")
                    for m in (1.0, -1.0, 0.5, -0.5)],
      "rotate": [lambda k, a=a: editing.rotate(scene, k, yaw=a) for a in (90.0, 45.0)],
      "rescale": [lambda k, f=f: editing.rescale(scene, k, f) for f in (1.5, 0.6)],
      "remove": [lambda k: editing.remove(scene, k)],
      "duplicate": [lambda k, m=m: editing.duplicate(room(k), k, (m, 0.0, 0.0), frame="camera")
                    for m in (1.5, -1.5, 1.0, -1.0)],
      "insert": [lambda k, j=j: editing.insert(room(None), other, j)
                 for j in (_object_order(other) if other is not None else [])],
      "background swap": ([lambda k: editing.replace_background(scene, other)]
                          if other is not None else []),
      "camera change": [lambda k, d=d: editing.orbit_camera(scene, d)
                        for d in (20.0, -20.0, 10.0, -10.0)],
  }
  per_object = {"translate", "rotate", "rescale", "remove", "duplicate"}
  edits = {}
  for name in EDIT_TYPES:
    note = "no valid variant" if attempts[name] else "needs a second scene"
    if name in per_object and not order:
      edits[name] = (None, None, "the scene has no valid object")
      continue
    found = None
    for k in (order if name in per_object else [None]):
      for attempt in attempts[name]:
        try:
          edit = attempt(k)
        except editing.EditError as e:
          note = str(e)
          continue
        if int(edit.active().sum()) > max_objects:
          note = f"{edit.name}: more objects than the model's {max_objects} slots"
          continue
        found = (edit, k)
        break
      if found:
        break
    edits[name] = (found[0], found[1], found[0].name) if found else (None, None, note)
  return edits


def run_edits(config: ml_collections.ConfigDict, restored: Restored,
              examples: Mapping[str, np.ndarray], num_scenes: int) -> list[report_lib.Grid]:
  """Each edit type of `neural_assets.editing` on the source frames of the first `num_scenes`
  examples (scene i+1 donates to scene i). Returns an overview grid and one grid per edit type.

  Every scene renders the same number of edits in one `editing.render` call (one compiled
  shape); an edit that no object allows is rendered as the reconstruction and shown grey.
  """
  # pylint: disable=g-import-not-at-top
  from neural_assets import editing
  from neural_assets.training import train_state as train_state_lib
  # pylint: enable=g-import-not-at-top
  params = restored.state.params
  if config.eval.use_ema:
    params = train_state_lib.eval_params(restored.state)
  bundle = editing.ModelBundle(config, params, restored.state.frozen_params["vae"], restored.step)
  count = min(num_scenes, len(examples["video_index"]))
  if count < 1:
    raise ValueError("run_edits needs at least one example.")
  scenes = []
  for i in range(count + (1 if count < len(examples["video_index"]) else 0)):
    record = read_eval_record(config, examples["video_index"][i])
    scenes.append(keep_largest_objects(editing.scene_from_video_record(
        record, int(examples["source_frame"][i]), resolution=tuple(config.data.resolution),
        resize_method=config.data.resize_method, min_depth=float(config.data.min_depth),
        min_projected_size=float(config.data.min_projected_size)), bundle.max_objects))
  per_type: dict[str, list[list[np.ndarray]]] = {name: [] for name in EDIT_TYPES}
  overview, notes = [], {name: [] for name in EDIT_TYPES}
  grey = np.full(scenes[0].image.shape, 128, np.uint8)
  for i in range(count):
    scene = scenes[i]
    other = scenes[(i + 1) % len(scenes)] if len(scenes) > 1 else None
    edits = make_edits(scene, other, bundle.max_objects)
    to_render = [scene] + [e if e is not None else scene for e, _, _ in edits.values()]
    images = editing.render(bundle, scene, *to_render, seed=int(config.eval.seed))[:, 0]
    recon = images[0]
    row = [report_lib.draw_boxes(scene.image, scene.boxes_2d), recon]
    for (name, (edit, k, note)), image in zip(edits.items(), images[1:]):
      notes[name].append(f"scene {i}: {note}")
      if edit is None:
        per_type[name].append([scene.image, recon, grey, grey])
        row.append(grey)
        continue
      highlighted = report_lib.draw_boxes(scene.image, scene.boxes_2d[k:k + 1] if k is not None
                                          else scene.boxes_2d, color=(255, 255, 0))
      active = edit.active()
      target_boxes = edit.target_boxes_2d()[active] if active.any() else np.zeros((0, 4))
      per_type[name].append([highlighted, recon, image,
                             report_lib.draw_boxes(image, target_boxes, color=(0, 160, 0))])
      row.append(image)
    overview.append(row)
  grids = [report_lib.Grid(
      "edits_overview", "All edits", report_lib.image_grid(overview),
      columns=("source + boxes", "reconstruction") + EDIT_TYPES,
      caption="One row per eval scene (its source frame); grey: no object allowed the edit.")]
  for name in EDIT_TYPES:
    grids.append(report_lib.Grid(
        "edit_" + name.replace(" ", "_"), f"Edit: {name}", report_lib.image_grid(per_type[name]),
        columns=("source (edited object boxed)", "reconstruction", "edited render",
                 "edited render + target boxes"),
        caption=" | ".join(notes[name])))
  return grids


# ---------------------------------------------------------------------------------------------
# 5. Report and the whole demo.


def reconstruction_grid(examples: Mapping[str, np.ndarray]) -> report_lib.Grid:
  rows = []
  for i in range(len(examples["sample"])):
    mask = examples["slot_mask"][i]
    rows.append([
        report_lib.draw_boxes(examples["source_image"][i], examples["source_boxes"][i][mask]),
        report_lib.draw_boxes(examples["target_image"][i], examples["target_boxes"][i][mask],
                              color=(0, 160, 0)),
        examples["target_image"][i],
        np.clip(examples["vae_reconstruction"][i], 0.0, 1.0),
        np.clip(examples["sample"][i], 0.0, 1.0),
    ])
  return report_lib.Grid(
      "reconstruction", "Novel-view reconstruction (eval split)", report_lib.image_grid(rows),
      columns=("source + source boxes", "target + target boxes", "target",
               "target through the VAE (the model's ceiling)",
               "model sample (DDIM + guidance, conditioned on source appearance + target poses)"),
      caption="The copy-source-frame baseline predicts column 1 without the boxes.")


def _load_info() -> dict[str, Any]:
  load1, load5, _ = os.getloadavg()
  return {"load1": round(load1, 2), "load5": round(load5, 2)}


def run_demo(config: ml_collections.ConfigDict, workdir: str, minutes: float, *,
             data_overrides: Optional[Mapping[str, Optional[int]]] = None, data_workers: int = 1,
             num_shown: int = 4, num_edit_scenes: int = 3, eval_min_gap: int = 1,
             backstop_seconds: float = 120.0, vae_minutes: float = 3.0) -> dict[str, Any]:
  """The whole demo (module docstring); returns what results.json holds."""
  t0 = time.time()
  workdir = os.path.abspath(os.path.expanduser(workdir))
  data_dir, train_dir = os.path.join(workdir, "data"), os.path.join(workdir, "train")
  report_dir = os.path.join(workdir, "report")
  config = copy.deepcopy(config)
  config.data.data_dir = data_dir
  run_info: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                              "jax devices": str(jax.devices()),
                              "load at start (1 / 5 min)": _load_info()}

  spec = data_spec(config, **(data_overrides or {}))
  run_info["data"] = (f"{spec['num_train_videos']} train / {spec['num_eval_videos']} eval videos, "
                      f"{spec['num_frames']} frames, {spec['resolution']} px")
  run_info["data generation seconds"] = round(ensure_data(data_dir, spec, data_workers), 1)

  budget_s = 60.0 * minutes
  vae_dir = os.path.join(workdir, "vae")
  had_vae = os.path.exists(os.path.join(vae_dir, "vae.json"))
  vae_info = ensure_vae(config, vae_dir, min(60.0 * vae_minutes, budget_s / 2))
  if vae_info is not None:
    # The same scaling in every run on this workdir: it is part of what the model learnt.
    config.model.vae.scaling_factor = float(vae_info["scaling_factor"])
    config.training.init_checkpoint = os.path.join(vae_dir, "checkpoint")
    run_info["VAE warm-up"] = {k: round(v, 4) if isinstance(v, float) else v
                               for k, v in vae_info.items()}
    if not had_vae:
      budget_s -= vae_info["seconds"]

  if minutes > 0:
    training = train_with_budget(config, train_dir, budget_s, backstop_seconds)
    run_info.update({
        "training budget seconds": round(budget_s, 1),
        "training wall-clock seconds (incl. compile, checkpoint)": round(
            training["train_seconds"], 1),
        "steps at start of this run": training["steps_before"],
        "steps at end": training["steps_after"],
        "steps this run": training["steps_after"] - training["steps_before"],
        "stopped by SIGTERM backstop": training["stopped_by_backstop"],
        "load after training (1 / 5 min)": _load_info()})

  eval_config = copy.deepcopy(config)
  eval_config.data.min_gap = max(int(eval_config.data.min_gap), eval_min_gap)
  t_eval = time.time()
  restored = restore_latest(eval_config, train_dir)
  evaluation = evaluate_model_and_baseline(eval_config, restored, train_dir, num_shown)
  run_info["evaluated step"] = restored.step
  run_info["eval examples"] = int(evaluation["model"]["image/count"])
  run_info["evaluation seconds (restore, model + baseline)"] = round(time.time() - t_eval, 1)

  grids = [reconstruction_grid(evaluation["examples"])]
  if num_edit_scenes > 0:
    t_edit = time.time()
    grids += run_edits(eval_config, restored, evaluation["examples"], num_edit_scenes)
    run_info["edit seconds"] = round(time.time() - t_edit, 1)

  curves = report_lib.read_event_scalars(train_dir)
  metrics = {name: {k: v for k, v in m.items() if k.split("/")[0] in ("image", "object")}
             for name, m in (("model", evaluation["model"]),
                             ("copy source frame", evaluation["baseline"]),
                             ("VAE reconstruction of the target (ceiling)", evaluation["vae"]))}
  run_info["model eval seconds (DDIM sampling + metrics)"] = round(evaluation["seconds"], 1)
  run_info["total demo seconds"] = round(time.time() - t0, 1)
  run_info["load at end (1 / 5 min)"] = _load_info()
  notes = [
      "Synthetic MOVi-E-like scenes rendered by data_pipelines/synthetic.py; the model is trained "
      "from scratch (no pretrained SD / DINO weights offline) on CPU for a bounded time, so the "
      "numbers show that the pipeline runs end to end, not the paper's quality.",
      "The frozen VAE is " + ("warmed up first as an autoencoder on the synthetic frames (see "
                              "'VAE warm-up')" if vae_info else "randomly initialised (samples "
                              "decode to noise)") + "; its reconstruction of the target is the "
      "best score the model can reach (the ceiling row).",
      f"Eval pairs: frame gap >= {eval_config.data.min_gap}; the copy-source-frame baseline "
      "predicts the source frame unchanged and is scored by the same Evaluator.",
  ]
  html_path = report_lib.write_report(
      report_dir, grids=grids, metrics=metrics, curves=curves,
      config_text=config.to_json_best_effort(indent=2),
      run_info={k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in run_info.items()},
      notes=notes)
  results = dict(metrics=metrics, run_info=run_info, report=html_path,
                 grids=[g.name for g in grids])
  with open(os.path.join(report_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, default=str)
  logging.info("Report: %s", html_path)
  return results


class _QuietLibraries(py_logging.Filter):
  """Drops INFO chatter of the checkpoint and compiler libraries (warnings still pass)."""

  def __init__(self, noisy_paths: tuple[str, ...] = ("/orbax/", "/jax/_src/", "/etils/",
                                                     "/tensorboard/")):
    super().__init__()
    self.noisy_paths = noisy_paths

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or not any(
        p in record.pathname for p in self.noisy_paths)


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _MINUTES.value < 0:
    raise app.UsageError(f"--minutes must be >= 0, got {_MINUTES.value}.")
  results = run_demo(
      _CONFIG.value, _WORKDIR.value, _MINUTES.value,
      data_overrides=dict(num_train_videos=_NUM_TRAIN_VIDEOS.value,
                          num_eval_videos=_NUM_EVAL_VIDEOS.value, num_frames=_NUM_FRAMES.value),
      data_workers=_DATA_WORKERS.value, num_shown=_NUM_SHOWN.value,
      num_edit_scenes=_NUM_EDIT_SCENES.value, eval_min_gap=_EVAL_MIN_GAP.value,
      backstop_seconds=_BACKSTOP_SECONDS.value, vae_minutes=_VAE_MINUTES.value)
  print(json.dumps({"metrics": results["metrics"], "run_info": results["run_info"],
                    "report": results["report"]}, indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
