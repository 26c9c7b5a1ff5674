"""Frechet distance between Gaussian fits of two feature sets (FID when features are Inception).

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), with S the unbiased (ddof=1)
covariance as in pytorch-fid (`np.cov(features, rowvar=False)`).

`FeatureStats` keeps running sums (count, sum, sum of outer products, in float64) so features
never have to be held in memory; `frechet_distance` evaluates the trace of the matrix square
root as sum(sqrt(eig(A^{1/2} S2 A^{1/2}))), A = S1, which is symmetric positive semi-definite, so
the eigendecomposition is real and stable (no complex `sqrtm` residue, no singular-matrix retry).
"""
from __future__ import annotations

import numpy as np


class FeatureStats:
  """Streaming mean and covariance of D-dimensional features."""

  def __init__(self, dim: int):
    if dim < 1:
      raise ValueError(f"Feature dimension must be positive, got {dim}.")
    self.dim = dim
    self.count = 0
    self.sum = np.zeros([dim], np.float64)
    self.sum_outer = np.zeros([dim, dim], np.float64)

  def update(self, features) -> None:
    """Adds features [B, D] (any array type convertible by numpy)."""
    feats = np.asarray(features, np.float64)
    if feats.ndim != 2 or feats.shape[1] != self.dim:
      raise ValueError(f"Expected features [B, {self.dim}], got shape {feats.shape}.")
    if not np.all(np.isfinite(feats)):
      raise ValueError("Features contain NaN or inf.")
    self.count += feats.shape[0]
    self.sum += feats.sum(axis=0)
    self.sum_outer += feats.T @ feats

  def merge(self, other: "FeatureStats") -> None:
    if other.dim != self.dim:
      raise ValueError(f"Cannot merge stats of dimension {other.dim} into {self.dim}.")
    self.count += other.count
    self.sum += other.sum
    self.sum_outer += other.sum_outer

  def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
    """Returns mu [D] and the unbiased covariance [D, D]; needs at least 2 features."""
    if self.count < 2:
      raise ValueError(f"A covariance needs at least 2 feature vectors, got {self.count}.")
    mu = self.sum / self.count
    cov = (self.sum_outer - self.count * np.outer(mu, mu)) / (self.count - 1)
    return mu, 0.5 * (cov + cov.T)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
  eigvals, eigvecs = np.linalg.eigh(matrix)
  return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2); mu [D], sigma [D, D]."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  dim = mu1.shape[0]
  if mu1.shape != (dim,) or mu2.shape != (dim,) or sigma1.shape != (dim, dim) or \
      sigma2.shape != (dim, dim):
    raise ValueError(f"Shapes do not match: mu {mu1.shape}, {mu2.shape}; sigma {sigma1.shape}, "
                     f"{sigma2.shape}.")
  root1 = _psd_sqrt(0.5 * (sigma1 + sigma1.T))
  inner = root1 @ (0.5 * (sigma2 + sigma2.T)) @ root1
  eigvals = np.linalg.eigvalsh(0.5 * (inner + inner.T))
  tr_covmean = np.sum(np.sqrt(np.clip(eigvals, 0.0, None)))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def frechet_distance_from_stats(stats1: FeatureStats, stats2: FeatureStats) -> float:
  mu1, sigma1 = stats1.mean_and_covariance()
  mu2, sigma2 = stats2.mean_and_covariance()
  return frechet_distance(mu1, sigma1, mu2, sigma2)
