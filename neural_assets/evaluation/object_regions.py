"""Object regions for object-level metrics: which target boxes count, and their crops.

Object-level protocol (the paper reports each metric "inside the target objects' boxes"; it does
not say how, so this is our documented choice, set by `config.object`):
1. An object counts when its slot is valid (`slot_mask`) and its target box, clipped to the image,
   is at least `min_box_pixels` pixels high and wide (degenerate boxes say nothing about quality).
2. The SAME box (the target box: where the object should be) is cropped from the generated and
   the target image. With `square=True` the box is first grown about its centre to a square of
   its longer side (in pixels), shifted to lie inside the image, so crops keep the aspect ratio;
   with `square=False` the box is stretched to the square crop.
3. Each crop is resampled to `crop_size` x `crop_size` by antialiased bilinear interpolation of
   the continuous box (PIL `Image.resize(size, BILINEAR, box=...)` semantics; pixels just outside
   the box contribute at its border, as in any sub-pixel crop).
4. Every metric is computed per object crop exactly as on whole images, and averaged over all
   counted objects of the evaluation set (so an image with 5 objects weighs 5 times one with 1).
   FID and DINO similarity use the crops as their image sets.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_boxes(images: jnp.ndarray, boxes: jnp.ndarray) -> None:
  if images.ndim != 4:
    raise ValueError(f"Expected images [B, H, W, C], got shape {images.shape}.")
  if boxes.ndim != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != images.shape[0]:
    raise ValueError(f"Expected boxes [B, N, 4] (normalised [y0, x0, y1, x1]) for "
                     f"{images.shape[0]} images, got shape {boxes.shape}.")


def pixel_boxes(boxes: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """Normalised [y0, x0, y1, x1] [.., 4] -> pixel-edge coordinates clipped to the image."""
  scale = jnp.asarray([height, width, height, width], jnp.float32)
  clipped = jnp.clip(boxes.astype(jnp.float32), 0.0, 1.0)
  return clipped * scale


def valid_objects(boxes: jnp.ndarray, slot_mask: jnp.ndarray, height: int, width: int,
                  min_box_pixels: float) -> jnp.ndarray:
  """[B, N] bool: slot valid and clipped box at least `min_box_pixels` high and wide."""
  if slot_mask.shape != boxes.shape[:-1]:
    raise ValueError(f"slot_mask shape {slot_mask.shape} does not match boxes {boxes.shape}.")
  px = pixel_boxes(boxes, height, width)
  box_h = px[..., 2] - px[..., 0]
  box_w = px[..., 3] - px[..., 1]
  return slot_mask.astype(bool) & (box_h >= min_box_pixels) & (box_w >= min_box_pixels)


def square_pixel_boxes(px: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """Grows pixel boxes [.., 4] to squares of their longer side, shifted inside the image.

  A side longer than the image's is clipped to the image (the box is then not square).
  """
  cy = 0.5 * (px[..., 0] + px[..., 2])
  cx = 0.5 * (px[..., 1] + px[..., 3])
  side = jnp.maximum(px[..., 2] - px[..., 0], px[..., 3] - px[..., 1])
  side_h = jnp.minimum(side, height)
  side_w = jnp.minimum(side, width)
  y0 = jnp.clip(cy - 0.5 * side_h, 0.0, height - side_h)
  x0 = jnp.clip(cx - 0.5 * side_w, 0.0, width - side_w)
  return jnp.stack([y0, x0, y0 + side_h, x0 + side_w], axis=-1)


def _crop_one(image: jnp.ndarray, px_box: jnp.ndarray, crop_size: int) -> jnp.ndarray:
  """image [H, W, C], px_box [4] pixel edges -> [S, S, C] antialiased bilinear crop."""
  # Guard against zero-size boxes (invalid objects are masked out later, but must not be NaN).
  box_h = jnp.maximum(px_box[2] - px_box[0], 1e-3)
  box_w = jnp.maximum(px_box[3] - px_box[1], 1e-3)
  scale = jnp.stack([crop_size / box_h, crop_size / box_w])
  translation = -jnp.stack([px_box[0], px_box[1]]) * scale
  return jax.image.scale_and_translate(
      image.astype(jnp.float32), (crop_size, crop_size, image.shape[-1]), (0, 1), scale,
      translation, method="linear", antialias=True)


def crop_boxes(images: jnp.ndarray, boxes: jnp.ndarray, crop_size: int,
               square: bool = False) -> jnp.ndarray:
  """Crops every box of every image.

  Args:
    images: [B, H, W, C] float images.
    boxes: [B, N, 4] normalised [y0, x0, y1, x1] boxes (clipped to [0, 1] here).
    crop_size: side S of the square output crops.
    square: grow boxes to squares first (see the module docstring).

  Returns:
    [B, N, S, S, C] float32 crops (meaningless, but finite, for degenerate boxes).
  """
  _check_boxes(images, boxes)
  if crop_size < 1:
    raise ValueError(f"crop_size must be positive, got {crop_size}.")
  height, width = images.shape[1], images.shape[2]
  px = pixel_boxes(boxes, height, width)
  if square:
    px = square_pixel_boxes(px, height, width)
  per_image = jax.vmap(lambda img, b: _crop_one(img, b, crop_size), in_axes=(None, 0))
  return jax.vmap(per_image)(images, px)
