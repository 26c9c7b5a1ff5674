"""Image helpers shared by the report, the edit CLI, the app and the benchmarks.

  to_uint8(image)            [H, W, 3] (or [H, W]) uint8 or [0, 1] float -> [H, W, 3] uint8
  image_grid(rows)           rows of equal-size images -> one [R*H + .., C*W + .., 3] uint8 image
  write_png(image, path)     PNG, optionally upscaled (nearest)
  slug(text)                 a file-name-safe short form of a name or an op string
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
from PIL import Image


def slug(text: str, max_len: int = 40, default: str = "edit") -> str:
  """A file-name-safe short form of `text` (runs of other characters -> one '_'); `default`
  when nothing is left."""
  return re.sub(r"[^A-Za-z0-9.=-]+", "_", text.strip()).strip("_")[:max_len] or default


def to_uint8(image: Any) -> np.ndarray:
  """[H, W, 3] (or [H, W]) uint8, or float in [0, 1] -> [H, W, 3] uint8. Raises on other input."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"Expected an [H, W, 3] image, got shape {image.shape}.")
  if image.dtype == np.uint8:
    return image
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError(f"Expected uint8 or float images, got {image.dtype}.")
  if not np.all(np.isfinite(image)):
    raise ValueError("Image contains NaN or inf.")
  # Samplers overshoot [0, 1] by round-off; anything further out is a caller's range bug.
  if image.min() < -0.05 or image.max() > 1.05:
    raise ValueError(f"Float image values in [{image.min():.3f}, {image.max():.3f}] are not in "
                     "[0, 1].")
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def image_grid(rows: Sequence[Sequence[Any]], pad: int = 2, pad_value: int = 255,
               border: bool = True) -> np.ndarray:
  """Tiles images into a grid: rows[r][c] is an [H, W, 3] image; all the same size.

  Returns [R*H + (R+1)*pad, C*W + (C+1)*pad, 3] uint8 with `border` (padding around the grid
  too, as the report shows it), [R*H + (R-1)*pad, C*W + (C-1)*pad, 3] without (padding between
  tiles only, as the edit CLI's grid.png).
  """
  if not rows or not all(len(r) for r in rows):
    raise ValueError("image_grid needs at least one non-empty row.")
  num_cols = max(len(r) for r in rows)
  tiles = [[to_uint8(im) for im in r] for r in rows]
  height, width = tiles[0][0].shape[:2]
  for r, row in enumerate(tiles):
    for c, tile in enumerate(row):
      if tile.shape[:2] != (height, width):
        raise ValueError(f"Image [{r}][{c}] is {tile.shape[:2]}, expected {(height, width)}.")
  edge = pad if border else 0
  out = np.full((len(rows) * (height + pad) - pad + 2 * edge,
                 num_cols * (width + pad) - pad + 2 * edge, 3), pad_value, np.uint8)
  for r, row in enumerate(tiles):
    for c, tile in enumerate(row):
      y, x = edge + r * (height + pad), edge + c * (width + pad)
      out[y:y + height, x:x + width] = tile
  return out


def write_png(image: Any, path: str, scale: int = 1) -> str:
  """Writes an image (uint8 or [0, 1] float) as PNG, upscaled by `scale` (nearest)."""
  image = to_uint8(image)
  if scale < 1:
    raise ValueError(f"scale must be >= 1, got {scale}.")
  if scale > 1:
    image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
  Image.fromarray(image).save(path, format="PNG")
  return path
