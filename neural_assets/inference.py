"""Loading a trained Neural Assets model for inference: the one entry point.

`load_model_for_inference(path)` resolves a training workdir, the demo's workdir, a
`checkpoints/` directory or one step directory (`checkpoint_files.find_checkpoint`, re-exported
here as `find_checkpoint`), reads the training code's
orbax layout (`<workdir>/checkpoints/<step>/{state,meta}`, see `training/checkpointing.py`),
restoring only `params` (or `ema_params`) and `frozen_params['vae']` of the saved `TrainState`,
and returns a `ModelBundle`: config, modules, parameters and the jitted tokenizer / denoiser /
decoder that `neural_assets.editing.render` samples with. Code that already holds parameters
(e.g. right after training) builds a `ModelBundle(config, params, vae_params)` directly.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
from typing import Any, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from neural_assets import config_files
from neural_assets.range_checks import int_at_least
from neural_assets.models.asset_diffusion import NeuralAssetsModel
from neural_assets.training import checkpoint_files
from neural_assets.training import train_state as train_state_lib
from neural_assets.training import train_step
from neural_assets.training.checkpoint_files import find_checkpoint  # noqa: F401  (public here)


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
    self.denoise_fn = train_step.denoiser(model)
    self.decode_fn = jax.jit(functools.partial(train_step.decode_latents, vae))

  def with_weights(self, other: "ModelBundle") -> "ModelBundle":
    """This bundle with `other`'s parameters and step (a checkpoint of the same config): the
    jitted pieces are shared, so renders compiled for this bundle are not compiled again."""
    if other.config.to_json() != self.config.to_json():
      raise ValueError("with_weights: the bundles' configs differ; load the other checkpoint "
                       "as a bundle of its own.")
    bundle = copy.copy(self)
    bundle.params, bundle.vae_params, bundle.step = other.params, other.vae_params, other.step
    return bundle

  @property
  def resolution(self) -> tuple[int, int]:
    return tuple(int(r) for r in self.config.data.resolution)

  def latent_shape(self, batch_size: int) -> tuple[int, int, int, int]:
    return train_step.latent_shape(self.config, self.vae, batch_size)

  def sampler(self, guidance_scale: float | None = None, num_steps: int | None = None,
              eta: float | None = None):
    """`DDIMSampler` from the config's `diffusion` and `sampler` blocks, with overrides."""
    from neural_assets.diffusion.ddim import DDIMSampler  # pylint: disable=g-import-not-at-top
    overrides = {k: v for k, v in (("guidance_scale", guidance_scale),
                                   ("num_inference_steps", num_steps), ("eta", eta))
                 if v is not None}
    return DDIMSampler.from_config(self.config.diffusion, {**dict(self.config.sampler),
                                                           **overrides})


def add_checkpoint_arguments(parser: argparse.ArgumentParser,
                             default_checkpoint: str | None = None) -> None:
  """--checkpoint / --config / --step / --no_ema, the arguments of `load_model_for_inference`.

  Read them back with `load_model_from_args(args)`. Without `default_checkpoint`,
  --checkpoint is required.
  """
  where = ("Training workdir, the demo's workdir, a checkpoints/ dir or one step dir")
  if default_checkpoint is None:
    parser.add_argument("--checkpoint", required=True, help=where + ".")
  else:
    parser.add_argument("--checkpoint", default=default_checkpoint,
                        help=where + " (default: %(default)s).")
  parser.add_argument("--config", default=None,
                      help="Config .py / .json (default: the one stored with the checkpoint).")
  parser.add_argument("--step", type=int_at_least(0), default=None,
                      help="Checkpoint step (default: newest).")
  parser.add_argument("--no_ema", action="store_true", help="Use the raw, not the EMA, weights.")


def load_model_from_args(args: argparse.Namespace) -> "ModelBundle":
  """`load_model_for_inference` from the arguments of `add_checkpoint_arguments`."""
  return load_model_for_inference(args.checkpoint, args.config, args.step,
                                  use_ema=not args.no_ema)


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
  from neural_assets.training import checkpointing  # pylint: disable=g-import-not-at-top
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
      functools.partial(train_step.init_params, config, model, vae), jax.random.key(0))
  saved = checkpoint_files.tree_metadata(os.path.join(step_dir, "state"))
  params_key = train_state_lib.weights_field(saved.get("ema_params") is not None, use_ema)
  ema = params_key == "ema_params"
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
  # Checked against the checksums recorded at save.
  restored = checkpoint_files.restore_partial(step_dir, item)
  return ModelBundle(config, restored[params_key], restored["frozen_params"]["vae"], step)


def bundle_from_train_state(config: ml_collections.ConfigDict, state: Any,
                            step: int | None = None, use_ema: bool = True) -> ModelBundle:
  """A `ModelBundle` from a live `TrainState` (e.g. right after training, as the demo does):
  the EMA weights when kept and `use_ema`, else the raw ones; the frozen VAE's parameters."""
  params, _ = train_state_lib.eval_weights(state, use_ema)
  return ModelBundle(config, params, state.frozen_params["vae"], step)
