"""PSNR / SSIM against scikit-image."""
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from neural_assets.evaluation import image_metrics


def _pair(seed, shape, low, high):
  rng = np.random.default_rng(seed)
  x = rng.uniform(low, high, shape).astype(np.float32)
  # A correlated second image, so SSIM is far from 0 and from 1.
  y = np.clip(x + rng.normal(0, 0.1 * (high - low), shape), low, high).astype(np.float32)
  # Smooth structure too, so local statistics vary across the image.
  ramp = np.linspace(low, high, shape[2], dtype=np.float32)[None, None, :, None]
  return 0.5 * (x + ramp), 0.5 * (y + ramp)


@pytest.mark.parametrize("low,high", [(0.0, 1.0), (-1.0, 1.0)])
def test_psnr_matches_skimage(low, high):
  x, y = _pair(0, (3, 20, 27, 3), low, high)
  got = np.asarray(image_metrics.psnr(x, y, data_range=high - low))
  want = [peak_signal_noise_ratio(x[i], y[i], data_range=high - low) for i in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("low,high", [(0.0, 1.0), (-1.0, 1.0)])
def test_ssim_matches_skimage(low, high):
  x, y = _pair(1, (3, 24, 31, 3), low, high)
  got = np.asarray(image_metrics.ssim(x, y, data_range=high - low))
  want = [structural_similarity(x[i], y[i], gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=high - low,
                                channel_axis=-1) for i in range(3)]
  assert 0.2 < min(want) < max(want) < 0.99
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_ranges_agree_and_identity():
  x, y = _pair(2, (2, 16, 16, 3), 0.0, 1.0)
  # SSIM's luminance term depends on absolute means, so it is NOT range-invariant (nor in skimage).
  assert abs(float(image_metrics.ssim(x, y, 1.0)[0] - image_metrics.ssim(2 * x - 1, 2 * y - 1, 2.0)[0])) > 1e-3
  np.testing.assert_allclose(image_metrics.psnr(x, y, 1.0), image_metrics.psnr(2 * x - 1, 2 * y - 1, 2.0),
                             rtol=1e-5)
  np.testing.assert_allclose(image_metrics.ssim(x, x, 1.0), 1.0, atol=1e-5)
  assert np.all(np.isinf(np.asarray(image_metrics.psnr(x, x, 1.0))))


def test_bad_input_raises():
  x = np.zeros((1, 8, 8, 3), np.float32)
  with pytest.raises(ValueError, match="smaller than"):
    image_metrics.ssim(x, x, 1.0)
  with pytest.raises(ValueError, match="different shapes"):
    image_metrics.psnr(x, x[:, :4], 1.0)
