"""Loading a trained Neural Assets model for inference: the one entry point.

`load_model_for_inference(path)` resolves a training workdir, the demo's workdir, a
`checkpoints/` directory or one step directory (`find_checkpoint`), reads the training code's
orbax layout (`<workdir>/checkpoints/<step>/{state,meta}`, see `training/checkpointing.py`),
restoring only `params` (or `ema_params`) and `frozen_params['vae']` of the saved `TrainState`,
and returns a `ModelBundle`: config, modules, parameters and the jitted tokenizer / denoiser /
decoder that `neural_assets.editing.render` samples with. Code that already holds parameters
(e.g. right after training) builds a `ModelBundle(config, params, vae_params)` directly.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from neural_assets import config_files
from neural_assets.models.neural_assets import NeuralAssetsModel
from neural_assets.training import train_step


def _denoise(model, params, latents, timesteps, tokens):
  return model.apply({"params": params}, latents, timesteps, tokens,
                     method=NeuralAssetsModel.denoise)


class ModelBundle:
  """A model ready to render: config, modules, parameters and the jitted pieces.

  Attributes:
    config: the experiment config (model, diffusion, sampler, data.resolution are read).
    model: `NeuralAssetsModel`; vae: `AutoencoderKL` (frozen).
    params: {'tokenizer', 'unet'}; vae_params: the VAE's params.
    step: the checkpoint step (None for parameters not from a checkpoint).
  """

  def __init__(self, config: ml_collections.ConfigDict, params: Any, vae_params: Any,
               step: int | None = None):
    self.config = config
    self.model, self.vae = train_step.build_models(config)
    self.params, self.vae_params, self.step = params, vae_params, step
    cond = config.model.conditioning
    self.max_objects = int(cond.max_objects)
    self.tokens_per_slot = int(np.prod(cond.roi_output_size))
    model, vae = self.model, self.vae

    def tokenize(params, batch, null=False):
      # null: every run dropped, the unconditional context CFG dropout trained (learned f(0) or
      # zeros, `conditioning.null_condition`).
      drop = jnp.full((batch["slot_mask"].shape[0],), null, bool)
      return model.apply({"params": params}, batch, drop, method=NeuralAssetsModel.tokenize)[0]

    self.tokenize_fn = jax.jit(tokenize, static_argnums=2)
    # One object for the sampler's static argument, so its compilation is reused across calls.
    self.denoise_fn = functools.partial(_denoise, model)
    self.decode_fn = jax.jit(functools.partial(train_step.decode_latents, vae))

  @property
  def resolution(self) -> tuple[int, int]:
    return tuple(int(r) for r in self.config.data.resolution)

  def latent_shape(self, batch_size: int) -> tuple[int, int, int, int]:
    from neural_assets.training import trainer  # pylint: disable=g-import-not-at-top
    return trainer.latent_shape(self.config, self.vae, batch_size)

  def sampler(self, guidance_scale: float | None = None, num_steps: int | None = None,
              eta: float | None = None):
    """`DDIMSampler` from the config's `diffusion` and `sampler` blocks, with overrides."""
    from neural_assets.diffusion.ddim import DDIMSampler  # pylint: disable=g-import-not-at-top
    overrides = {k: v for k, v in (("guidance_scale", guidance_scale),
                                   ("num_inference_steps", num_steps), ("eta", eta))
                 if v is not None}
    return DDIMSampler.from_config(self.config.diffusion, {**dict(self.config.sampler),
                                                           **overrides})


def find_checkpoint(path: str, step: int | None = None) -> tuple[str, int]:
  """Resolves a training workdir, a demo workdir, a `checkpoints/` directory or a step directory.

  Returns:
    (step directory holding `state/` and `meta/`, step).
  Raises:
    FileNotFoundError: nothing that looks like a checkpoint, or `step` is not there.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(os.path.join(path, "state")):
    name = os.path.basename(path)
    if step is not None and name != str(step):
      raise FileNotFoundError(f"{path} is the checkpoint of step {name}, not {step}.")
    return path, int(name) if name.isdigit() else -1
  # A training workdir, the demo's workdir (`neural_assets.demo`: WORKDIR/train) or the
  # checkpoints directory itself.
  candidates = [os.path.join(path, "checkpoints"), os.path.join(path, "train", "checkpoints")]
  root = next((c for c in candidates if os.path.isdir(c)), path)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"No checkpoint at {path}: not a directory.")
  # Orbax writes `<step>.orbax-checkpoint-tmp-*` first and renames when complete: digits only.
  steps = sorted(int(d) for d in os.listdir(root)
                 if d.isdigit() and os.path.isdir(os.path.join(root, d, "state")))
  if not steps:
    raise FileNotFoundError(f"No checkpoint under {root} (want <workdir>/checkpoints/<step>/state "
                            "as written by neural_assets.main).")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise FileNotFoundError(f"No checkpoint of step {step} under {root}; found {steps}.")
  return os.path.join(root, str(step)), step


def load_model_for_inference(workdir_or_checkpoint: str,
                             config: Union[ml_collections.ConfigDict, str, None] = None,
                             step: int | None = None, use_ema: bool = True) -> ModelBundle:
  """Restores a trained model for rendering.

  Reads the layout of `neural_assets.training.checkpointing.Checkpointer`: `<step>/state` is the
  orbax PyTree of the `TrainState` (`params`, `frozen_params['vae']`, `ema_params` or None, ...),
  `<step>/meta/metadata` is JSON with `config` (the run's config as JSON) and `shapes`. Only the
  parameters are read (partial restore: no optimizer state), onto the first local device.

  Args:
    workdir_or_checkpoint: a training workdir, the demo's workdir (`WORKDIR/train` holds the
      run), a `checkpoints/` dir or one step dir.
    config: the experiment config (ConfigDict, or a path to a `.py` with `get_config()` / a
      `.json`); None: the config stored in the checkpoint's metadata, else `<workdir>/config.json`.
    step: which step (default: the newest).
    use_ema: sample with the EMA weights when the checkpoint has them.

  Raises:
    FileNotFoundError: no checkpoint / config found.
    ValueError: the checkpoint's parameters do not fit the model built from the config.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from neural_assets.training import checkpointing
  from neural_assets.training import trainer
  # pylint: enable=g-import-not-at-top
  step_dir, step = find_checkpoint(workdir_or_checkpoint, step)
  meta_path = os.path.join(step_dir, "meta", "metadata")
  meta = {}
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      meta = json.load(f)
  if isinstance(config, str):
    config = config_files.load(config)
  if config is None:
    if meta.get("config") and meta["config"] != "{}":
      config = config_files.from_json(meta["config"])
    else:
      workdir_config = os.path.join(os.path.dirname(os.path.dirname(step_dir)), "config.json")
      if not os.path.exists(workdir_config):
        raise FileNotFoundError(f"The checkpoint {step_dir} stores no config and there is no "
                                f"{workdir_config}: pass config=.")
      config = config_files.load(workdir_config)

  model, vae = train_step.build_models(config)
  abstract_params, abstract_frozen = jax.eval_shape(
      functools.partial(trainer.init_params, config, model, vae), jax.random.key(0))
  state_dir = os.path.join(step_dir, "state")
  saved = ocp.PyTreeCheckpointer().metadata(state_dir)
  saved = getattr(saved, "item_metadata", saved)
  saved = getattr(saved, "tree", saved)
  ema = use_ema and saved.get("ema_params") is not None
  params_key = "ema_params" if ema else "params"
  wanted = {"params": abstract_params, "frozen_params": {"vae": abstract_frozen["vae"]}}
  stored = {"params": saved.get(params_key), "frozen_params": {"vae": (saved.get(
      "frozen_params") or {}).get("vae")}}
  problems = checkpointing.describe_mismatch(checkpointing.shapes_of(stored),
                                             checkpointing.shapes_of(wanted))
  if problems:
    raise ValueError(f"Checkpoint {step_dir} does not fit the model built from the config "
                     f"({'EMA ' if ema else ''}parameters):\n  " + "\n  ".join(problems))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  item = {params_key: abstract_params, "frozen_params": {"vae": abstract_frozen["vae"]}}
  item = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), item)
  restore_args = jax.tree_util.tree_map(lambda _: ocp.ArrayRestoreArgs(sharding=device), item)
  restored = ocp.PyTreeCheckpointer().restore(
      state_dir, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                             partial_restore=True))
  checkpointing.verify_partial(step_dir, restored)  # Checksums recorded at save.
  return ModelBundle(config, restored[params_key], restored["frozen_params"]["vae"], step)


def bundle_from_train_state(config: ml_collections.ConfigDict, state: Any,
                            step: int | None = None, use_ema: bool = True) -> ModelBundle:
  """A `ModelBundle` from a live `TrainState` (e.g. right after training, as the demo does):
  the EMA weights when kept and `use_ema`, else the raw ones; the frozen VAE's parameters."""
  params = state.params if not use_ema or state.ema_params is None else state.ema_params
  return ModelBundle(config, params, state.frozen_params["vae"], step)
