"""Frechet distance against a direct scipy.linalg.sqrtm computation; streaming statistics."""
import numpy as np
import pytest
import scipy.linalg

from neural_assets.evaluation import fid


def _scipy_frechet(feats1, feats2):
  mu1, mu2 = feats1.mean(0), feats2.mean(0)
  s1, s2 = np.cov(feats1, rowvar=False), np.cov(feats2, rowvar=False)
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def test_frechet_matches_scipy_sqrtm():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
  b = rng.normal(size=(250, 16)) @ rng.normal(size=(16, 16)) + 0.5
  stats_a, stats_b = fid.FeatureStats(16), fid.FeatureStats(16)
  for chunk in np.array_split(a, 7):  # Streaming in uneven batches.
    stats_a.update(chunk)
  stats_b.update(b)
  mu, cov = stats_a.mean_and_covariance()
  np.testing.assert_allclose(mu, a.mean(0), rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(cov, np.cov(a, rowvar=False), rtol=1e-9, atol=1e-10)
  got = fid.frechet_distance_from_stats(stats_a, stats_b)
  want = _scipy_frechet(a, b)
  assert want > 1.0
  np.testing.assert_allclose(got, want, rtol=1e-7)


def test_frechet_same_distribution_is_zero_and_merge():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(64, 8))
  s1, s2 = fid.FeatureStats(8), fid.FeatureStats(8)
  s1.update(a[:30])
  s2.update(a[30:])
  s1.merge(s2)
  whole = fid.FeatureStats(8)
  whole.update(a)
  assert abs(fid.frechet_distance_from_stats(s1, whole)) < 1e-9


def test_rank_deficient_covariance_matches_scipy():
  # Fewer samples than dimensions: singular covariances, where sqrtm is the delicate case.
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(6, 10)), rng.normal(size=(7, 10)) * 2.0
  s1, s2 = fid.FeatureStats(10), fid.FeatureStats(10)
  s1.update(a)
  s2.update(b)
  np.testing.assert_allclose(fid.frechet_distance_from_stats(s1, s2), _scipy_frechet(a, b),
                             rtol=1e-5)


def test_bad_input_raises():
  stats = fid.FeatureStats(4)
  with pytest.raises(ValueError, match=r"\[B, 4\]"):
    stats.update(np.zeros((2, 5)))
  with pytest.raises(ValueError, match="NaN"):
    stats.update(np.full((2, 4), np.nan))
  stats.update(np.zeros((1, 4)))
  with pytest.raises(ValueError, match="at least 2"):
    stats.mean_and_covariance()
