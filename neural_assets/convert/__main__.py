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

import argparse
import os
import sys
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from neural_assets import convert
from neural_assets import config_files

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m neural_assets.convert",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--sd_dir", help="diffusers pipeline root holding unet/ and vae/.")
  parser.add_argument("--unet_dir", help="diffusers UNet folder (overrides sd_dir/unet).")
  parser.add_argument("--vae_dir", help="diffusers VAE folder (overrides sd_dir/vae).")
  parser.add_argument("--encoder_dir", required=True, help="transformers ViT/DINO(v2) folder.")
  parser.add_argument("--config", help="Experiment config file to check the weights against, "
                      "e.g. configs/objectron.py (optional).")
  parser.add_argument("--out_dir", required=True,
                      help="Where to write the checkpoint (must not exist).")
  args = parser.parse_args(argv)
  args.unet_dir = args.unet_dir or (args.sd_dir and os.path.join(args.sd_dir, "unet"))
  args.vae_dir = args.vae_dir or (args.sd_dir and os.path.join(args.sd_dir, "vae"))
  if not args.unet_dir or not args.vae_dir:
    parser.error("give --sd_dir, or both --unet_dir and --vae_dir")
  return args


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


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(argv)
  config = config_files.load(args.config) if args.config else None
  tree = convert_checkpoints(args.unet_dir, args.vae_dir, args.encoder_dir, args.out_dir, config)
  sizes = {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in tree.items()}
  print(f"Wrote {args.out_dir}: " + ", ".join(f"{k} {n / 1e6:.1f}M params"
                                             for k, n in sizes.items()))


def cli(argv: Sequence[str] | None = None) -> int:
  """`main` for the command line: a refusal is one line naming the file and the fix."""
  try:
    main(argv)
  except (convert.CheckpointMismatchError, convert.CorruptWeightsError, FileNotFoundError,
          FileExistsError) as e:
    print(f"python -m neural_assets.convert: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(cli())
