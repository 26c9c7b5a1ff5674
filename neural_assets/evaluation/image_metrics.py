"""Pixel metrics: PSNR and SSIM, per image, matching scikit-image.

Both functions take a batch of images `[B, H, W, C]` in any value range and the width of that
range as `data_range`: 1.0 for images in [0, 1], 2.0 for images in [-1, 1], 255.0 for uint8
values. PSNR does not depend on which range is used as long as `data_range` matches it; SSIM
does (its luminance term uses absolute means, in skimage too), so report SSIM on [0, 1] images
with data_range=1 (what `Evaluator` does) to compare with published numbers.

- `psnr` = 10 log10(data_range^2 / MSE) per image, the MSE taken over all pixels and channels
  (skimage `peak_signal_noise_ratio` on one image). Identical images give +inf, as in skimage.
- `ssim` = mean SSIM of each channel, per image (skimage `structural_similarity` with
  `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1`): Gaussian
  weighted local statistics with `truncate=3.5` (an 11x11 window for sigma 1.5), borders
  reflected (scipy 'reflect' = numpy 'symmetric'), and the SSIM map averaged after cropping the
  window radius from every side. This is the Wang et al. 2004 definition.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _check_pair(x: jnp.ndarray, y: jnp.ndarray, what: str) -> None:
  if x.shape != y.shape:
    raise ValueError(f"{what}: images have different shapes {x.shape} and {y.shape}.")
  if x.ndim != 4:
    raise ValueError(f"{what}: expected images [B, H, W, C], got shape {x.shape}.")


def psnr(x: jnp.ndarray, y: jnp.ndarray, data_range: float) -> jnp.ndarray:
  """Peak signal-to-noise ratio in dB.

  Args:
    x, y: [B, H, W, C] images in the same value range.
    data_range: width of that range (max possible value minus min possible value).

  Returns:
    [B] float32 PSNR per image.
  """
  _check_pair(x, y, "psnr")
  if data_range <= 0:
    raise ValueError(f"psnr: data_range must be positive, got {data_range}.")
  x = x.astype(jnp.float32)
  y = y.astype(jnp.float32)
  mse = jnp.mean(jnp.square(x - y), axis=(1, 2, 3))
  return 10.0 * jnp.log10(data_range**2 / mse)


def gaussian_window(sigma: float, truncate: float) -> np.ndarray:
  """[2r + 1] normalised Gaussian taps, r = int(truncate * sigma + 0.5) as in scipy.ndimage."""
  radius = int(truncate * sigma + 0.5)
  offsets = np.arange(-radius, radius + 1, dtype=np.float64)
  taps = np.exp(-0.5 * (offsets / sigma) ** 2)
  return (taps / taps.sum()).astype(np.float32)


def _filter_separable(x: jnp.ndarray, taps: np.ndarray) -> jnp.ndarray:
  """Gaussian filter over H and W of [B, H, W, C], borders reflected like scipy 'reflect'."""
  radius = (len(taps) - 1) // 2
  x = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="symmetric")
  height, width = x.shape[1] - 2 * radius, x.shape[2] - 2 * radius
  # Shifted sums: the window is small (11 taps), and this keeps the filter exact per channel.
  x = sum(float(w) * x[:, i:i + height] for i, w in enumerate(taps))
  return sum(float(w) * x[:, :, i:i + width] for i, w in enumerate(taps))


def ssim(x: jnp.ndarray, y: jnp.ndarray, data_range: float, sigma: float = 1.5,
         truncate: float = 3.5, k1: float = 0.01, k2: float = 0.03) -> jnp.ndarray:
  """Structural similarity, Gaussian-weighted, mean over the channels of each image.

  Args:
    x, y: [B, H, W, C] images in the same value range; H and W at least the window size
      2 * int(truncate * sigma + 0.5) + 1 (11 for the defaults).
    data_range: width of the value range.
    sigma, truncate: Gaussian window (skimage: sigma=1.5, truncate=3.5).
    k1, k2: SSIM stabilising constants (Wang et al. 2004).

  Returns:
    [B] float32 SSIM per image.
  """
  _check_pair(x, y, "ssim")
  if data_range <= 0:
    raise ValueError(f"ssim: data_range must be positive, got {data_range}.")
  taps = gaussian_window(sigma, truncate)
  win = len(taps)
  if x.shape[1] < win or x.shape[2] < win:
    raise ValueError(f"ssim: images {x.shape[1]}x{x.shape[2]} are smaller than the {win}x{win} "
                     "Gaussian window; use larger images or crops.")
  x = x.astype(jnp.float32)
  y = y.astype(jnp.float32)
  mu_x = _filter_separable(x, taps)
  mu_y = _filter_separable(y, taps)
  # Population (not sample) covariance, as in the paper and use_sample_covariance=False.
  var_x = _filter_separable(x * x, taps) - mu_x * mu_x
  var_y = _filter_separable(y * y, taps) - mu_y * mu_y
  cov_xy = _filter_separable(x * y, taps) - mu_x * mu_y
  c1 = (k1 * data_range) ** 2
  c2 = (k2 * data_range) ** 2
  ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
      (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
  radius = (win - 1) // 2
  ssim_map = ssim_map[:, radius:ssim_map.shape[1] - radius, radius:ssim_map.shape[2] - radius]
  return jnp.mean(ssim_map, axis=(1, 2, 3))
