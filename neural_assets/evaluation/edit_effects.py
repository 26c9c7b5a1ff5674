"""Does an edit take effect? Paired differences with bootstrap intervals, over scenes.

Per edit type, the paired differences model - `model, unedited` and model - `source frame`
over the same scenes in region PSNR, region LPIPS and localisation IoU (the scores of
`evaluation/edit_fidelity.py`), each with a 95% bootstrap interval of the mean difference
(scipy.stats.bootstrap, BCa, resampling scenes, fixed seed; scenes where either score is NaN drop
out of that pair). It takes effect when both differences are better than zero at the lower end
of the interval in region PSNR and IoU (LPIPS is reported, not required: it is not scored
without weights). `model_differences` pairs two models (ablation variants) the same way.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from neural_assets.evaluation import edit_cases

# 32 scenes per edit type: with the scenes' spread of region PSNR differences on the demo (~2-3
# dB), a 95% interval is about +-1 dB wide, enough to tell a 1 dB effect from zero; 4 were not.
DEFAULT_NUM_SCENES = 32
# Paired differences (model - baseline over the same scenes) with bootstrap intervals.
BASELINES = ("model, unedited", "source frame")
DIFFERENCE_METRICS = ("region/psnr", "region/lpips", "localisation/iou")
EFFECT_METRICS = ("region/psnr", "localisation/iou")  # Both > 0 vs both baselines: takes effect.
LOWER_IS_BETTER = ("image/lpips", "region/lpips")
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0


def bootstrap_interval(values: np.ndarray, confidence: float = CONFIDENCE,
                       n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                       ) -> tuple[Optional[float], Optional[float]]:
  """Bootstrap confidence interval of the mean of [n] paired differences (BCa; percentile where
  BCa is undefined). (None, None) for n < 2; (x, x) when every difference is x."""
  values = np.asarray(values, np.float64)
  if values.size < 2:
    return None, None
  if np.ptp(values) == 0:
    return float(values[0]), float(values[0])
  from scipy import stats  # pylint: disable=g-import-not-at-top
  for method in ("BCa", "percentile"):
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence,
                             n_resamples=n_resamples, method=method,
                             random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    if np.isfinite(low) and np.isfinite(high):
      return float(low), float(high)
  return None, None


def difference_interval(diff: np.ndarray, metric: str, confidence: float = CONFIDENCE,
                        n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                        ) -> dict[str, Any]:
  """The mean of [n] paired differences in `metric`, its bootstrap interval and whether the whole
  interval is on the better side of zero: {'mean', 'low', 'high' (None for n < 2), 'n',
  'better': 'higher' | 'lower', 'better_than_zero'}."""
  diff = np.asarray(diff, np.float64)
  low, high = bootstrap_interval(diff, confidence, n_resamples, seed)
  lower = metric in LOWER_IS_BETTER
  better = low is not None and (high < 0 if lower else low > 0)
  return {"mean": float(diff.mean()) if diff.size else None, "low": low, "high": high,
          "n": int(diff.size), "better": "lower" if lower else "higher",
          "better_than_zero": bool(better)}


def _finite_differences(pairs: Sequence[tuple[float, float]]) -> np.ndarray:
  pairs = np.array(pairs, np.float64).reshape(-1, 2)
  pairs = pairs[np.isfinite(pairs).all(axis=1)]
  return pairs[:, 0] - pairs[:, 1]


def paired_differences(per_scene: Sequence[Mapping[str, Any]], confidence: float = CONFIDENCE,
                       n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                       ) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
  """Per edit type, baseline and metric: model - baseline over the scenes where both are finite.

  Returns:
    {type: {baseline: {metric: `difference_interval`}}}.
  """
  out = {}
  for name in edit_cases.EDIT_TYPES:
    rows = [s["scores"][name] for s in per_scene if name in s["scores"]]
    out[name] = {
        baseline: {metric: difference_interval(
            _finite_differences([(r["model"][metric], r[baseline][metric]) for r in rows]),
            metric, confidence, n_resamples, seed) for metric in DIFFERENCE_METRICS}
        for baseline in BASELINES}
  return out


ALL_EDIT_TYPES = "all edit types"


def model_differences(per_scene_a: Sequence[Mapping[str, Any]],
                      per_scene_b: Sequence[Mapping[str, Any]], confidence: float = CONFIDENCE,
                      n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                      ) -> dict[str, dict[str, dict[str, Any]]]:
  """Two models on the same held-out scenes (e.g. two ablation variants): per edit type and
  metric, model A - model B paired over scenes, with bootstrap intervals.

  `per_scene_*`: the 'per_scene' lists of two `edit_benchmark.run` reports. Row ALL_EDIT_TYPES
  pairs each scene's mean over the edit types where both scores are finite.
  Returns:
    {type | ALL_EDIT_TYPES: {metric: `difference_interval`}}.
  Raises:
    ValueError: the two reports did not score the same scenes (then nothing is paired).
  """
  by_video_a = {s["video"]: s["scores"] for s in per_scene_a}
  by_video_b = {s["video"]: s["scores"] for s in per_scene_b}
  if set(by_video_a) != set(by_video_b) or len(by_video_a) != len(per_scene_a):
    raise ValueError(f"Not the same held-out scenes: videos {sorted(by_video_a)} vs "
                     f"{sorted(by_video_b)}; run both with the same seed and --num_scenes.")
  videos = sorted(by_video_a)
  out = {}
  for metric in DIFFERENCE_METRICS:
    per_type = {name: [(by_video_a[v][name]["model"][metric], by_video_b[v][name]["model"][metric])
                       if name in by_video_a[v] and name in by_video_b[v] else (np.nan, np.nan)
                       for v in videos] for name in edit_cases.EDIT_TYPES}
    for name, pairs in per_type.items():
      out.setdefault(name, {})[metric] = difference_interval(
          _finite_differences(pairs), metric, confidence, n_resamples, seed)
    stacked = np.array(list(per_type.values()), np.float64)  # [types, scenes, 2]
    diff = stacked[..., 0] - stacked[..., 1]
    counted = np.isfinite(diff).any(axis=0)
    out.setdefault(ALL_EDIT_TYPES, {})[metric] = difference_interval(
        np.nanmean(diff[:, counted], axis=0), metric, confidence, n_resamples, seed)
  return out


def takes_effect(differences: Mapping[str, Any]) -> dict[str, bool]:
  """An edit type takes effect when the model beats both baselines at the lower end of the
  interval in every EFFECT_METRICS metric (region PSNR and localisation IoU)."""
  return {name: all(by_baseline[b][m]["better_than_zero"] for b in BASELINES
                    for m in EFFECT_METRICS)
          for name, by_baseline in differences.items()}

