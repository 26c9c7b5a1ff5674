"""Evaluator: the paper's metrics over an evaluation set, at image and object level.

Usage (the training loop):
  evaluator = Evaluator(config.evaluation)          # config: `default_config()` below
  for batch in eval_batches:
    generated = sample(...)                         # [B, H, W, 3] in config.image_range
    evaluator.update(generated, batch["target_image"], batch["target_boxes"], batch["slot_mask"])
  metrics = evaluator.result()   # {'image/psnr': .., 'object/lpips': .., 'image/count': .., ...}
  evaluator.reset()

Multi-host: each process updates its own Evaluator with its own shard of the evaluation set and
calls `result(all_processes=True)` (every process, collectively): the sufficient statistics
(metric sums and counts, FID feature count / sum / sum of outer products; `statistics()`) are
gathered from all processes and added in process order, so every process returns the same
numbers, equal to one process's over all the examples up to float64 summation order.

Metrics (each reported as `image/<name>` and `object/<name>`):
- psnr, ssim: always; on [0, 1] images with data_range 1 (see image_metrics.py).
- lpips: unless `lpips.weights` is "none" (lower is better); at the image's own resolution. By
  default "pretrained": the v0.1 AlexNet LPIPS installed with the package (lpips.py).
- fid: when `fid.weights` is set; generated vs target feature sets of the whole evaluation set.
- dino: when `dino.checkpoint_dir` is set; mean cosine similarity of generated vs target.
A configured weight path that does not exist raises FileNotFoundError when the Evaluator is
built. Means are over images (image level) or over counted objects (object level, protocol in
object_regions.py); FID uses the same images / object crops as its two sets.

Inputs: uint8 images are [0, 255]; float images are in `config.image_range` (the VAE's [-1, 1] by
default), may overshoot it by `range_tolerance` of its width (sampler round-off) and are clipped;
anything further out raises, as does NaN or inf.
"""
from __future__ import annotations

import functools
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from neural_assets.evaluation import dino_similarity
from neural_assets.evaluation import fid
from neural_assets.evaluation import image_metrics
from neural_assets.evaluation import lpips
from neural_assets.evaluation import object_regions

LEVELS = ("image", "object")
PairFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
FeatureFn = Callable[[jnp.ndarray], jnp.ndarray]


def default_config() -> ml_collections.ConfigDict:
  """Evaluation settings; put under `config.evaluation` of an experiment config."""
  return ml_collections.ConfigDict(dict(
      image_range=(-1.0, 1.0),  # Float inputs' range (the VAE decoder's output range).
      range_tolerance=0.05,  # Allowed overshoot, as a fraction of the range width.
      levels=LEVELS,
      ssim=dict(sigma=1.5, truncate=3.5, k1=0.01, k2=0.03),
      object=dict(crop_size=64, square=False, min_box_pixels=2.0),
      network_batch_size=32,  # Images per call of a metric network (fixed: one compile).
      # "pretrained" (the installed v0.1 weights), "none" or the user's file(s); see lpips.py.
      lpips=dict(weights="pretrained", net="alex"),
      fid=dict(weights=""),  # FID Inception safetensors; see inception.py.
      dino=dict(checkpoint_dir="", pooling="cls", image_size=224,
                image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225)),
  ))


def _inception_fn_from_config(cfg) -> FeatureFn:
  from neural_assets.evaluation import inception  # pylint: disable=g-import-not-at-top
  module, variables = inception.load_fid_inception(cfg.weights)
  variables = jax.tree.map(jnp.asarray, variables)
  apply = jax.jit(module.apply)
  return lambda x: apply(variables, x)


def _run_chunked(fn: Callable[..., jnp.ndarray], chunk: int, *arrays: np.ndarray) -> np.ndarray:
  """fn over the leading axis in fixed-size chunks (last one padded by repetition) -> numpy."""
  total = arrays[0].shape[0]
  outputs = []
  for start in range(0, total, chunk):
    parts = [a[start:start + chunk] for a in arrays]
    count = parts[0].shape[0]
    if count < chunk:
      parts = [np.concatenate([p, np.repeat(p[-1:], chunk - count, axis=0)]) for p in parts]
    outputs.append(np.asarray(fn(*parts))[:count])
  return np.concatenate(outputs, axis=0)


class _Mean:
  """Running sum and count of per-item values."""

  def __init__(self):
    self.total, self.count = 0.0, 0

  def add(self, values: np.ndarray) -> None:
    self.total += float(np.sum(values, dtype=np.float64))
    self.count += int(values.size)

  def value(self) -> float:
    return self.total / self.count


class Evaluator:
  """Accumulates metrics over batches; see the module docstring.

  Network metrics come from the config's weight paths, or from functions given here (which take
  precedence; tests and callers that already hold a network use them):
    lpips_fn(x, y [B, H, W, 3] in [0, 1]) -> [B]
    inception_fn(x [B, H, W, 3] in [0, 1]) -> [B, D]   (FID features)
    dino_fn(x [B, H, W, 3] in [0, 1]) -> [B, D]
  """

  def __init__(self, config: ml_collections.ConfigDict, *, lpips_fn: Optional[PairFn] = None,
               inception_fn: Optional[FeatureFn] = None, dino_fn: Optional[FeatureFn] = None):
    self.config = config
    unknown = set(config.levels) - set(LEVELS)
    if unknown or not config.levels:
      raise ValueError(f"config.levels must be a non-empty subset of {LEVELS}, got "
                       f"{config.levels}.")
    low, high = config.image_range
    if not high > low:
      raise ValueError(f"config.image_range must be (low, high) with high > low, got "
                       f"{config.image_range}.")
    window = len(image_metrics.gaussian_window(config.ssim.sigma, config.ssim.truncate))
    if "object" in config.levels and config.object.crop_size < window:
      raise ValueError(f"config.object.crop_size {config.object.crop_size} is smaller than the "
                       f"{window}x{window} SSIM window.")
    if lpips_fn is None:
      lpips_fn = lpips.distance_fn(config.lpips.weights, config.lpips.net)
    if inception_fn is None and config.fid.weights:
      inception_fn = _inception_fn_from_config(config.fid)
    if dino_fn is None and config.dino.checkpoint_dir:
      dino_fn = dino_similarity.load_dino_feature_fn(
          config.dino.checkpoint_dir, image_size=config.dino.image_size,
          image_mean=config.dino.image_mean, image_std=config.dino.image_std,
          pooling=config.dino.pooling)
    # Jitted here so that given functions compile once per chunk shape, like loaded ones.
    self._lpips_fn = jax.jit(lpips_fn) if lpips_fn is not None else None
    self._inception_fn = jax.jit(inception_fn) if inception_fn is not None else None
    self._dino_fn = jax.jit(dino_fn) if dino_fn is not None else None
    self._pixel_fn = jax.jit(self._pixel_metrics)
    self.reset()

  @property
  def metric_names(self) -> list[str]:
    names = ["psnr", "ssim"]
    names += ["lpips"] if self._lpips_fn is not None else []
    names += ["fid"] if self._inception_fn is not None else []
    names += ["dino"] if self._dino_fn is not None else []
    return names

  def reset(self) -> None:
    self._means = {(level, name): _Mean() for level in self.config.levels
                   for name in ("psnr", "ssim", "lpips", "dino")}
    self._fid = {}  # (level, 'generated' | 'target') -> FeatureStats, created on first features.

  def _to_unit(self, images, what: str) -> np.ndarray:
    """Any input image array -> float32 [0, 1] numpy, validated."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"{what}: expected [B, H, W, 3] images, got shape {images.shape}.")
    if images.dtype == np.uint8:
      return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
      raise ValueError(f"{what}: expected uint8 or float images, got {images.dtype}.")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
      raise ValueError(f"{what}: images contain NaN or inf.")
    low, high = self.config.image_range
    slack = self.config.range_tolerance * (high - low)
    if images.min() < low - slack or images.max() > high + slack:
      raise ValueError(f"{what}: values in [{images.min():.3f}, {images.max():.3f}] are outside "
                       f"config.image_range {tuple(self.config.image_range)} (+-{slack:.3f}).")
    return np.clip((images - low) / (high - low), 0.0, 1.0)

  def _pixel_metrics(self, gen, tgt, boxes, slot_mask):
    """Jitted: per-image and per-object PSNR / SSIM, object crops and validity."""
    s = self.config.ssim
    ssim = functools.partial(image_metrics.ssim, data_range=1.0, sigma=s.sigma,
                             truncate=s.truncate, k1=s.k1, k2=s.k2)
    out = {"image/psnr": image_metrics.psnr(gen, tgt, 1.0), "image/ssim": ssim(gen, tgt)}
    if boxes is not None:
      o = self.config.object
      size = o.crop_size
      crops = [object_regions.crop_boxes(x, boxes, size, o.square).reshape(-1, size, size, 3)
               for x in (gen, tgt)]
      out["object/gen_crops"], out["object/tgt_crops"] = crops
      out["object/psnr"] = image_metrics.psnr(*crops, 1.0)
      out["object/ssim"] = ssim(*crops)
      out["object/valid"] = object_regions.valid_objects(
          boxes, slot_mask, gen.shape[1], gen.shape[2], o.min_box_pixels).reshape(-1)
    return out

  def _add_network_metrics(self, level: str, gen: np.ndarray, tgt: np.ndarray) -> None:
    if gen.shape[0] == 0:
      return
    chunk = self.config.network_batch_size
    if self._lpips_fn is not None:
      self._means[(level, "lpips")].add(_run_chunked(self._lpips_fn, chunk, gen, tgt))
    if self._dino_fn is not None:
      feats = [_run_chunked(self._dino_fn, chunk, x) for x in (gen, tgt)]
      self._means[(level, "dino")].add(np.asarray(
          dino_similarity.cosine_similarity(jnp.asarray(feats[0]), jnp.asarray(feats[1]))))
    if self._inception_fn is not None:
      for role, images in (("generated", gen), ("target", tgt)):
        feats = _run_chunked(self._inception_fn, chunk, images)
        if (level, role) not in self._fid:
          self._fid[(level, role)] = fid.FeatureStats(feats.shape[-1])
        self._fid[(level, role)].update(feats)

  def update(self, generated, target, target_boxes=None, slot_mask=None) -> None:
    """Adds a batch.

    Args:
      generated, target: [B, H, W, 3] images (uint8, or float in config.image_range).
      target_boxes: [B, N, 4] normalised [y0, x0, y1, x1] boxes in the target frame (needed for
        the object level).
      slot_mask: [B, N] bool, the valid slots.
    """
    gen = self._to_unit(generated, "generated")
    tgt = self._to_unit(target, "target")
    if gen.shape != tgt.shape:
      raise ValueError(f"generated {gen.shape} and target {tgt.shape} shapes differ.")
    object_level = "object" in self.config.levels
    if object_level:
      if target_boxes is None or slot_mask is None:
        raise ValueError("Object-level metrics need target_boxes and slot_mask.")
      target_boxes = np.asarray(target_boxes, np.float32)
      slot_mask = np.asarray(slot_mask, bool)
      if target_boxes.shape[:1] != gen.shape[:1] or target_boxes.ndim != 3 or \
          target_boxes.shape[-1] != 4 or slot_mask.shape != target_boxes.shape[:2]:
        raise ValueError(f"Expected target_boxes [{gen.shape[0]}, N, 4] and slot_mask "
                         f"[{gen.shape[0]}, N], got {target_boxes.shape} and {slot_mask.shape}.")
    else:
      target_boxes = slot_mask = None
    out = jax.device_get(self._pixel_fn(gen, tgt, target_boxes, slot_mask))
    if "image" in self.config.levels:
      self._means[("image", "psnr")].add(out["image/psnr"])
      self._means[("image", "ssim")].add(out["image/ssim"])
      self._add_network_metrics("image", gen, tgt)
    if object_level:
      valid = out["object/valid"]
      self._means[("object", "psnr")].add(out["object/psnr"][valid])
      self._means[("object", "ssim")].add(out["object/ssim"][valid])
      self._add_network_metrics("object", out["object/gen_crops"][valid],
                                out["object/tgt_crops"][valid])

  def statistics(self) -> dict[str, np.ndarray]:
    """Everything `result()` is computed from, as float64 / int64 numpy arrays by name:
    'mean/<level>/<metric>/total' and '/count'; 'fid/<level>/<role>/count', '/sum',
    '/sum_outer' (only for the FID sets created so far)."""
    stats = {}
    for (level, name), mean in self._means.items():
      stats[f"mean/{level}/{name}/total"] = np.asarray(mean.total, np.float64)
      stats[f"mean/{level}/{name}/count"] = np.asarray(mean.count, np.int64)
    for (level, role), feats in self._fid.items():
      stats[f"fid/{level}/{role}/count"] = np.asarray(feats.count, np.int64)
      stats[f"fid/{level}/{role}/sum"] = feats.sum.copy()
      stats[f"fid/{level}/{role}/sum_outer"] = feats.sum_outer.copy()
    return stats

  def set_statistics(self, stats: Mapping[str, np.ndarray]) -> None:
    """Replaces the accumulated state by `stats` (as from `statistics()` of this config)."""
    self.reset()
    for (level, name), mean in self._means.items():
      mean.total = float(stats[f"mean/{level}/{name}/total"])
      mean.count = int(stats[f"mean/{level}/{name}/count"])
    for key in stats:
      if key.startswith("fid/") and key.endswith("/count"):
        _, level, role, _ = key.split("/")
        feats = fid.FeatureStats(stats[f"fid/{level}/{role}/sum"].shape[0])
        feats.count = int(stats[key])
        feats.sum = np.asarray(stats[f"fid/{level}/{role}/sum"], np.float64).copy()
        feats.sum_outer = np.asarray(stats[f"fid/{level}/{role}/sum_outer"], np.float64).copy()
        self._fid[(level, role)] = feats

  def _all_process_statistics(self) -> dict[str, np.ndarray]:
    """`statistics()` summed over all JAX processes (a collective: every process calls it)."""
    stats = self.statistics()
    # A process may not have met a FID set (e.g. no valid object): agree on the sets and their
    # feature sizes first, so that every process gathers the same structure.
    keys = [(level, role) for level in self.config.levels for role in ("generated", "target")]
    dims = np.array([self._fid[k].dim if k in self._fid else 0 for k in keys], np.int64)
    dims = _gather_exact(dims).max(axis=0)
    for key, dim in zip(keys, dims):
      if dim and key not in self._fid:
        level, role = key
        stats[f"fid/{level}/{role}/count"] = np.asarray(0, np.int64)
        stats[f"fid/{level}/{role}/sum"] = np.zeros([dim], np.float64)
        stats[f"fid/{level}/{role}/sum_outer"] = np.zeros([dim, dim], np.float64)
    gathered = _gather_exact(stats)
    # Added in process order on every process: all of them get bit-identical sums.
    return {k: functools.reduce(np.add, list(v)) for k, v in gathered.items()}

  def result(self, all_processes: bool = False) -> dict[str, float]:
    """{'<level>/<metric>': value, '<level>/count': images or objects}; a level with nothing
    counted yet reports only its zero count.

    all_processes: reduce the statistics over every JAX process first (collective; see the
      module docstring). Without it a multi-process run would report this process's shard only.
    """
    if all_processes and jax.process_count() > 1:
      local = self.statistics()
      self.set_statistics(self._all_process_statistics())
      try:
        return self._result()
      finally:
        self.set_statistics(local)  # Further updates keep adding to this process's own part.
    return self._result()

  def _result(self) -> dict[str, float]:
    results = {}
    for level in self.config.levels:
      count = self._means[(level, "psnr")].count
      results[f"{level}/count"] = count
      if not count:
        continue
      for name in ("psnr", "ssim", "lpips", "dino"):
        if self._means[(level, name)].count:
          results[f"{level}/{name}"] = self._means[(level, name)].value()
      if (level, "generated") in self._fid:
        results[f"{level}/fid"] = fid.frechet_distance_from_stats(
            self._fid[(level, "generated")], self._fid[(level, "target")])
    return results


def _gather_exact(tree):
  """process_allgather of numpy arrays without losing float64 / int64 bits.

  JAX without x64 would cast 64-bit arrays to 32 bits on the way, so each array travels as its
  raw bytes viewed as uint32 and is viewed back afterwards. Returns arrays with a leading
  process axis [P, ...].
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  # np.array(copy) keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d).
  leaves = [np.array(x, order="C") for x in leaves]
  raw = [x.reshape(-1).view(np.uint32) if x.size else np.zeros([0], np.uint32) for x in leaves]
  gathered = multihost_utils.process_allgather(raw)
  out = [np.asarray(g).view(x.dtype).reshape((-1,) + x.shape)
         for g, x in zip(gathered, leaves)]
  return jax.tree_util.tree_unflatten(treedef, out)
