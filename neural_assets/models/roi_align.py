"""RoIAlign on NHWC feature maps with normalised boxes, vectorised for jit.

Semantics are those of the standard detection op (torchvision `ops.roi_align`, detectron2
`ROIAlign`, Mask R-CNN): each output bin averages `sampling_ratio x sampling_ratio` bilinear samples
placed at the centres of a regular sub-grid of the bin. With `aligned=True` pixel centres sit at
half-integer coordinates (a half-pixel shift); with `aligned=False` (the legacy op) box sizes are
clamped to at least one pixel. Samples with y outside [-1, H] or x outside [-1, W] are zero; samples
inside that range but beyond the border are clamped to the border pixel, as in the op.

`sampling_ratio <= 0` is the op's adaptive mode: ceil(bin length) samples per bin along each axis
(torchvision's `roi_bin_grid = ceil(roi_size / pooled_size)`), so a box covering the whole map
reads every feature (a fixed 2 reads 16 of a 28x28 map's 784 patches for the global box). Under
jit the sample count is data-dependent, so every box gets a static maximum of
ceil(map length / bins) sub-samples per bin and the ones beyond the box's own count are masked
out of the average; this is exact for boxes within the map (longer boxes, only possible outside
[0, 1], are capped at the maximum).

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
    sampling_ratio: samples per bin along the axis; <= 0: adaptive, ceil(bin length) per box.
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
  if sampling_ratio > 0:
    max_samples = sampling_ratio
    count = jnp.full(start.shape, float(sampling_ratio), start.dtype)
  else:
    max_samples = max(-(-size // num_bins), 1)
    # ceil(bin_len) as the op (0 for an empty aligned box: no sample, a zero output).
    count = jnp.clip(jnp.ceil(bin_len), 0.0, float(max_samples))
  # Sampling positions: bin i, sub-sample k at start + (i + (k + 0.5) / n) * bin_len.
  sub = jnp.arange(max_samples, dtype=start.dtype)  # [s]
  safe = jnp.maximum(count, 1.0)[..., None, None]
  frac = jnp.arange(num_bins, dtype=start.dtype)[:, None] + (sub + 0.5) / safe  # [..., bins, s]
  pos = start[..., None, None] + frac * bin_len[..., None, None]  # [..., bins, s]
  used = (sub < count[..., None, None]).astype(start.dtype)  # [..., 1, s]

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
  w = w * (inside * used)[..., None]
  return jnp.sum(w, axis=-2) / safe


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
    sampling_ratio: bilinear samples per bin along each axis; <= 0: the op's adaptive mode,
      ceil(box size / bins) per box and axis (module docstring).
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
  if not isinstance(sampling_ratio, int):
    raise ValueError(f"sampling_ratio must be an int (<= 0: adaptive), got {sampling_ratio!r}.")
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
