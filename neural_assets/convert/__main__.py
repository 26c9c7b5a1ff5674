r"""Converts Stable Diffusion 2.1 + DINO checkpoints into one initial Neural Assets checkpoint.

  python -m neural_assets.convert \
      --sd_dir=/ckpt/stable-diffusion-2-1-base \      # diffusers pipeline root (unet/, vae/)
      --encoder_dir=/ckpt/dino-vitb8 \                # transformers ViT / DINOv2 folder
      --config=configs/objectron.py \                 # optional: check against this experiment
      --out_dir=/ckpt/na_init

Writes an orbax PyTree checkpoint `{'unet': ..., 'tokenizer': {'encoder': ...}, 'vae': ...}`
that training loads with `--config.training.init_checkpoint=/ckpt/na_init`. The new layers of the
asset tokenizer (appearance / pose / background MLPs, projections) are not in it: they start
from their random initialisation. With `--config`, every architecture field that the checkpoints'
`config.json` files define must equal the experiment config's, and the first difference is named;
shapes are checked again when training loads the checkpoint.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from absl import app
from absl import flags
import jax
import numpy as np

from neural_assets import convert

_SD_DIR = flags.DEFINE_string("sd_dir", None, "diffusers pipeline root holding unet/ and vae/.")
_UNET_DIR = flags.DEFINE_string("unet_dir", None, "diffusers UNet folder (overrides sd_dir/unet).")
_VAE_DIR = flags.DEFINE_string("vae_dir", None, "diffusers VAE folder (overrides sd_dir/vae).")
_ENCODER_DIR = flags.DEFINE_string("encoder_dir", None, "transformers ViT/DINO(v2) folder.")
_CONFIG = flags.DEFINE_string("config", None, "Experiment config file to check the weights "
                              "against, e.g. configs/objectron.py (optional).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write the checkpoint (must not exist).")


# Fields that choose how a network runs, not what its weights are.
RUNTIME_FIELDS = frozenset({"attention_impl", "dtype", "remat", "sample_size"})


def check_fields(what: str, loaded: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
  """Raises CheckpointMismatchError on the first field both define with different values."""
  for key in sorted((set(loaded) & set(expected)) - RUNTIME_FIELDS):
    a, b = loaded[key], expected[key]
    norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    if norm(a) != norm(b):
      raise convert.CheckpointMismatchError(
          f"{what}: the checkpoint has {key}={a!r} but the experiment config has {key}={b!r}.")


def load_config(path: str):
  """Loads `get_config()` from a config file path, with an optional `:arg` suffix."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  # config_flags parses "path[:arg]" the same way the training entry point does.
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", path, flag_values=flag_values)
  flag_values(["convert"])
  return flag_values.config


def convert_checkpoints(unet_dir: str, vae_dir: str, encoder_dir: str, out_dir: str,
                        config=None) -> dict[str, Any]:
  """Loads the three checkpoints (checked against `config` if given) and saves them together.

  Returns the saved tree of numpy arrays.
  """
  if os.path.exists(out_dir):
    raise FileExistsError(f"{out_dir} exists: choose a new --out_dir (nothing is overwritten).")
  unet = convert.load_diffusers_unet(unet_dir)
  vae = convert.load_diffusers_vae(vae_dir)
  encoder = convert.load_transformers_vit(encoder_dir)
  if config is not None:
    model = config.model
    check_fields(f"UNet {unet_dir}", _module_fields(unet.module),
                 dict(model.unet))
    check_fields(f"VAE {vae_dir}", _module_fields(vae.module), dict(model.vae))
    check_fields(f"encoder {encoder_dir}", dict(encoder.config_fields),
                 dict(model.conditioning.encoder))
  tree = {"unet": unet.params, "tokenizer": {"encoder": encoder.params}, "vae": vae.params}
  tree = jax.tree.map(np.asarray, tree)
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.abspath(out_dir), tree)
  checkpointer.wait_until_finished()
  return tree


def _module_fields(module) -> dict[str, Any]:
  """The dataclass fields of a linen module (its architecture), without parent/name."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
          if f.name not in ("parent", "name")}


def main(argv):
  del argv
  unet_dir = _UNET_DIR.value or (_SD_DIR.value and os.path.join(_SD_DIR.value, "unet"))
  vae_dir = _VAE_DIR.value or (_SD_DIR.value and os.path.join(_SD_DIR.value, "vae"))
  missing = [name for name, v in (("--unet_dir or --sd_dir", unet_dir),
                                  ("--vae_dir or --sd_dir", vae_dir),
                                  ("--encoder_dir", _ENCODER_DIR.value),
                                  ("--out_dir", _OUT_DIR.value)) if not v]
  if missing:
    raise app.UsageError(f"Missing {', '.join(missing)}.")
  config = load_config(_CONFIG.value) if _CONFIG.value else None
  tree = convert_checkpoints(unet_dir, vae_dir, _ENCODER_DIR.value, _OUT_DIR.value, config)
  sizes = {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in tree.items()}
  print(f"Wrote {_OUT_DIR.value}: " + ", ".join(f"{k} {n / 1e6:.1f}M params"
                                               for k, n in sizes.items()))


if __name__ == "__main__":
  app.run(main)
