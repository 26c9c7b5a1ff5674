"""DINO similarity: cosine similarity of DINO features of generated and target images.

`feature_fn(images [B, H, W, 3] in [0, 1]) -> [B, D]` is any function; `make_vit_feature_fn`
builds one from a ViT (`neural_assets.models.vit.ViT` or a loaded checkpoint) with the DINO
preprocessing of transformers' `ViTImageProcessor` for facebook/dino-*: resize the whole image to
image_size x image_size (PIL bilinear, antialiased), normalise with the ImageNet mean / std.
Pooling: 'cls' (the CLS token of the final layernorm output, the DINO image embedding) or 'mean'
(mean of the patch tokens, registers excluded).
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

FeatureFn = Callable[[jnp.ndarray], jnp.ndarray]
POOLINGS = ("cls", "mean")


def cosine_similarity(a: jnp.ndarray, b: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
  """a, b [B, D] -> [B] cosine similarity (torch F.cosine_similarity's eps clamp on the norms)."""
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f"Expected two [B, D] feature arrays, got {a.shape} and {b.shape}.")
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  norms = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps) * jnp.maximum(
      jnp.linalg.norm(b, axis=-1), eps)
  return jnp.sum(a * b, axis=-1) / norms


def make_vit_feature_fn(hidden_fn: Callable[[jnp.ndarray], jnp.ndarray], *, image_size: int,
                        image_mean: Sequence[float], image_std: Sequence[float],
                        pooling: str = "cls", num_prefix_tokens: int = 1) -> FeatureFn:
  """Wraps `hidden_fn(pixels) -> last_hidden_state [B, P + N, D]` as a [0, 1]-image feature fn.

  Args:
    hidden_fn: the ViT forward pass on normalised pixels [B, S, S, 3].
    image_size: S, the side images are resized to.
    image_mean, image_std: per-channel normalisation of [0, 1] pixels.
    pooling: 'cls' or 'mean' (patch tokens only).
    num_prefix_tokens: P = 1 + number of register tokens (skipped by 'mean').
  """
  if pooling not in POOLINGS:
    raise ValueError(f"Unknown pooling {pooling!r}: expected one of {POOLINGS}.")
  mean = jnp.asarray(image_mean, jnp.float32)
  std = jnp.asarray(image_std, jnp.float32)

  def feature_fn(images: jnp.ndarray) -> jnp.ndarray:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"Expected images [B, H, W, 3] in [0, 1], got shape {images.shape}.")
    pixels = jax.image.resize(images.astype(jnp.float32),
                              (images.shape[0], image_size, image_size, 3), method="linear",
                              antialias=True)
    hidden = hidden_fn((pixels - mean) / std)
    if pooling == "cls":
      return hidden[:, 0]
    return jnp.mean(hidden[:, num_prefix_tokens:], axis=1)

  return feature_fn


def load_dino_feature_fn(checkpoint_dir: str, *, image_size: int, image_mean: Sequence[float],
                         image_std: Sequence[float], pooling: str = "cls") -> FeatureFn:
  """Feature fn of a transformers DINO / DINOv2 checkpoint folder (config.json + safetensors)."""
  if not os.path.isdir(checkpoint_dir):
    raise FileNotFoundError(f"DINO checkpoint folder {checkpoint_dir} does not exist.")
  from neural_assets.convert import load_transformers_vit  # pylint: disable=g-import-not-at-top
  vit = load_transformers_vit(checkpoint_dir)
  return make_vit_feature_fn(vit, image_size=image_size, image_mean=image_mean,
                             image_std=image_std, pooling=pooling,
                             num_prefix_tokens=vit.module.num_prefix_tokens)
