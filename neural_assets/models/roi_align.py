"""RoIAlign on NHWC feature maps with normalised boxes, vectorised for jit.

Semantics are those of the standard detection op (torchvision `ops.roi_align`, detectron2
`ROIAlign`, Mask R-CNN): each output bin averages `sampling_ratio x sampling_ratio` bilinear samples
placed at the centres of a regular sub-grid of the bin. With `aligned=True` pixel centres sit at
half-integer coordinates (a half-pixel shift); with `aligned=False` (the legacy op) box sizes are
clamped to at least one pixel. Samples with y outside [-1, H] or x outside [-1, W] are zero; samples
inside that range but beyond the border are clamped to the border pixel, as in the op.

Bilinear interpolation with this zero/clamp rule is separable in y and x, and averaging a separable
product over a regular sub-grid equals the product of the per-axis averages. So each box becomes two
small interpolation matrices, `[h, H]` and `[w, W]`, and the op is one einsum with the feature map:
no gathers, exact gradients w.r.t. both features and box coordinates (box gradients through the
bilinear weights, as in the reference op).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _axis_weights(start: jax.Array, end: jax.Array, num_bins: int, size: int,
                  sampling_ratio: int, aligned: bool) -> jax.Array:
  """Per-bin averaged bilinear weights along one axis.

  Args:
    start, end: [...] box extent in feature-map pixels (already scaled, before the half-pixel
      offset).
    num_bins: output bins along the axis.
    size: feature-map length along the axis.
    sampling_ratio: samples per bin along the axis.
    aligned: half-pixel offset (and no minimum size) when true.

  Returns:
    [..., num_bins, size] weights; row `i` averages the sampling points of bin `i`.
  """
  offset = 0.5 if aligned else 0.0
  start = start - offset
  length = (end - offset) - start
  if not aligned:
    # The legacy op forces malformed / tiny boxes to be at least one pixel long.
    length = jnp.maximum(length, 1.0)
  bin_len = length / num_bins
  # Sampling positions: bin i, sub-sample k at start + (i + (k + 0.5) / s) * bin_len.
  frac = (jnp.arange(num_bins, dtype=start.dtype)[:, None]
          + (jnp.arange(sampling_ratio, dtype=start.dtype)[None, :] + 0.5) / sampling_ratio)
  pos = start[..., None, None] + frac * bin_len[..., None, None]  # [..., bins, s]

  inside = (pos >= -1.0) & (pos <= size)
  pos = jnp.maximum(pos, 0.0)
  low = jnp.floor(pos)
  at_edge = low >= size - 1
  low = jnp.where(at_edge, size - 1, low)
  high = jnp.where(at_edge, size - 1, low + 1)
  frac_high = jnp.where(at_edge, 0.0, pos - low)
  frac_low = 1.0 - frac_high
  grid = jnp.arange(size, dtype=start.dtype)
  w = (frac_low[..., None] * (grid == low[..., None])
       + frac_high[..., None] * (grid == high[..., None]))  # [..., bins, s, size]
  w = w * inside[..., None]
  return jnp.mean(w, axis=-2)


def roi_align(features: jax.Array, boxes: jax.Array, valid: jax.Array | None,
              output_size: tuple[int, int], sampling_ratio: int = 2,
              aligned: bool = True) -> jax.Array:
  """Pools one `output_size` grid of features per box.

  Args:
    features: [B, H, W, C] feature map.
    boxes: [B, N, 4] normalised boxes [y0, x0, y1, x1] in [0, 1] of the feature map's extent
      (scaled by H for y and W for x; coordinates outside [0, 1] are allowed and follow the op's
      zero / clamp rule).
    valid: [B, N] bool; invalid boxes give all-zero outputs. None means all valid.
    output_size: (h, w) bins per box.
    sampling_ratio: bilinear samples per bin along each axis; must be > 0 (the op's adaptive mode,
      ceil(box_size / bins), has data-dependent shapes and is not supported).
    aligned: half-pixel offset (detectron2 `aligned=True`, torchvision `aligned=True`).

  Returns:
    [B, N, h, w, C] pooled features, in `features.dtype`.
  """
  if features.ndim != 4:
    raise ValueError(f"features must be [B, H, W, C], got shape {features.shape}.")
  if boxes.ndim != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != features.shape[0]:
    raise ValueError(f"boxes must be [B, N, 4] with B={features.shape[0]}, got {boxes.shape}.")
  if valid is not None and valid.shape != boxes.shape[:2]:
    raise ValueError(f"valid must be [B, N] = {boxes.shape[:2]}, got {valid.shape}.")
  if not isinstance(sampling_ratio, int) or sampling_ratio <= 0:
    raise ValueError(
        f"sampling_ratio must be a positive int, got {sampling_ratio!r}: the adaptive mode "
        "(<= 0) has data-dependent shapes and cannot be jitted.")
  out_h, out_w = output_size
  if out_h <= 0 or out_w <= 0:
    raise ValueError(f"output_size must be positive, got {output_size}.")
  _, height, width, _ = features.shape
  compute_dtype = jnp.promote_types(features.dtype, jnp.float32)
  boxes = boxes.astype(compute_dtype)
  y0, x0, y1, x1 = (boxes[..., i] for i in range(4))
  wy = _axis_weights(y0 * height, y1 * height, out_h, height, sampling_ratio, aligned)
  wx = _axis_weights(x0 * width, x1 * width, out_w, width, sampling_ratio, aligned)
  if valid is not None:
    wy = wy * valid[..., None, None].astype(compute_dtype)
  out = jnp.einsum("bnih,bnjw,bhwc->bnijc", wy, wx, features.astype(compute_dtype),
                   precision=jax.lax.Precision.HIGHEST)
  return out.astype(features.dtype)
