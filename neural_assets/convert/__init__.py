"""Loading published PyTorch-library checkpoints (diffusers, transformers) into our Flax models.

Public API:
  load_diffusers_unet(dir)     -> unet(x [B,H,W,C], t [B], context [B,L,D]) with weights loaded
  load_diffusers_vae(dir)      -> object with .encode(images NHWC in [-1,1]) -> latent mean, .decode
  load_transformers_vit(dir)   -> vit(pixels NHWC, normalised) -> last_hidden_state [B, 1+N, D]
CLI: `python -m neural_assets.convert --help` (SD-2.1 + DINO -> one initial training checkpoint).
Only safetensors files are read; pickles are refused.
"""
from neural_assets.convert.checkpoint_io import CheckpointMismatchError
from neural_assets.convert.checkpoint_io import CorruptWeightsError


def load_diffusers_unet(directory: str, **kwargs):
  from neural_assets.convert.diffusers_unet import load_diffusers_unet as _load  # pylint: disable=g-import-not-at-top
  return _load(directory, **kwargs)


def load_diffusers_vae(directory: str, **kwargs):
  from neural_assets.convert.diffusers_vae import load_diffusers_vae as _load  # pylint: disable=g-import-not-at-top
  return _load(directory, **kwargs)


def load_transformers_vit(directory: str, **kwargs):
  from neural_assets.convert.transformers_vit import load_transformers_vit as _load  # pylint: disable=g-import-not-at-top
  return _load(directory, **kwargs)


__all__ = ["CheckpointMismatchError", "CorruptWeightsError", "load_diffusers_unet",
           "load_diffusers_vae",
           "load_transformers_vit"]
