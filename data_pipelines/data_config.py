"""The `config.data` section: its defaults (documented here, once) and what is derived from it.

`default_data_config` is the one place the data keys and their defaults are documented; the
pipeline (`data_pipelines.pipeline`), the configs and the docs point here. The helpers turn the
section into what the pipeline runs on: the files (`resolve_files`), the per-example knobs
(`frame_pair_config`, checked against the model's slot count) and the read-ahead thread count
(`read_threads`).
"""
from __future__ import annotations

from typing import Any, Mapping

from etils import epath
import ml_collections

from data_pipelines import frame_pairs


def default_data_config() -> ml_collections.ConfigDict:
  """The `config.data` section: every key with its default and what it does."""
  return ml_collections.ConfigDict(dict(
      # Directory (or gs:// path) holding the ArrayRecord files.
      data_dir="",
      # Glob (relative to data_dir, or absolute) of the training files.
      train_files="train*.array_record*",
      # Glob of the evaluation files.
      eval_files="eval*.array_record*",
      # (H, W) of the output images.
      resolution=(256, 256),
      # "area" (as the release), "bilinear", "bicubic", "lanczos".
      resize_method="area",
      # Allow DCT-domain JPEG downscaling before the resize (faster).
      jpeg_draft=True,
      # Inclusive frame gap range; 0 allowed (source == target); max_gap None = the whole video
      # (MOVi: [0, 23]).
      min_gap=0,
      max_gap=ml_collections.FieldReference(None, field_type=int),
      # Probability of swapping source and target (eval uses 0).
      swap_prob=0.5,
      # Per-dataset filter: min normalised 2D box height and width (after the crop).
      min_box_size=0.0,
      # Per-dataset filter: an object must be visible in source and target.
      visible_in_both=True,
      # The release's slot selection (`frame_pairs` step 3). True: every object of the video is a
      # slot candidate, visible or not; the 2D filters (visible_in_both, min_box_size) and the
      # 3D size rule are ignored. Objects are still dropped: a degenerate target 3D box always,
      # one behind the camera or off screen with invalid_3d_boxes "drop"; and at most
      # max_objects (N) objects keep a slot, the largest 2D boxes first (counted as
      # over_max_objects). False (default): the filters above and every 3D validity rule.
      keep_all_objects=False,
      # With keep_all_objects, objects whose target 3D box is behind the camera or off screen:
      # "drop" (the paper configs: no slot, counted as invalid_3d_*; the pose encoder's inputs
      # stay bounded) or "keep" (MOVi-E release: a slot with the raw projection, |u|, |v| up to
      # ~1e6).
      invalid_3d_boxes="drop",
      # Emit `background_mask` (every source-visible object's box, slotted or not, painted out
      # of the background token's image; release). False: the tokenizer paints the slotted boxes
      # only.
      paint_all_source_objects=False,
      # 3D boxes with a corner at depth <= min_depth in the target are invalid.
      min_depth=1e-2,
      # Min normalised size of the clipped projected target 3D box.
      min_projected_size=0.0,
      # Optional; if set it must equal config.model.conditioning.max_objects (the number of
      # slots N; extra objects are dropped, largest kept).
      max_objects=ml_collections.FieldReference(None, field_type=int),
      # Shuffling + per-batch RNG seed (int, 0 <= seed < 2**32).
      seed=0,
      # Globally shuffle the records each epoch.
      shuffle=True,
      # None = repeat forever.
      num_epochs=ml_collections.FieldReference(None, field_type=int),
      # Batch over all hosts; each host yields global_batch_size / process_count.
      global_batch_size=8,
      # Drop a final partial batch (training: True).
      drop_remainder=True,
      # Grain worker processes preparing batches (0 = in the main process).
      worker_count=0,
      # Batches each worker prepares ahead.
      worker_buffer_size=2,
      # Threads preparing batches ahead in each process (grain ReadOptions; Pillow releases the
      # GIL while decoding, so threads decode in parallel); None = 0: batches are prepared when
      # `next` is called.
      read_threads=ml_collections.FieldReference(None, field_type=int),
      # Batches prepared ahead per process by those threads.
      read_buffer_size=4,
      # Corrupt records skipped in a row before giving up with an error.
      max_skip_retries=16,
      # Seed of the fixed evaluation pairs (a per-video RNG; no swap).
      eval_seed=0,
      # Minimum frame gap of the evaluation pairs (with gap 0 the target is the source, which
      # flatters every model and makes the copy-source baseline's PSNR infinite); the larger of
      # it and min_gap holds.
      eval_min_gap=1,
      # Eval batch over all hosts.
      eval_global_batch_size=8,
  ))


def resolve_files(data_dir: str, pattern: str) -> list[str]:
  """Sorted files matching `pattern` (relative to `data_dir` unless absolute)."""
  pattern_path = epath.Path(pattern)
  if pattern_path.is_absolute():
    base, rel = epath.Path(pattern_path.anchor), str(pattern_path.relative_to(pattern_path.anchor))
  else:
    if not data_dir:
      raise ValueError(f"config.data.data_dir is empty and the file pattern {pattern!r} is "
                       "relative.")
    base, rel = epath.Path(data_dir), pattern
  files = sorted(str(p) for p in base.glob(rel))
  if not files:
    raise FileNotFoundError(f"No files match {pattern!r} under {str(base)!r}.")
  return files


def _max_objects(config) -> int:
  data_n = config.data.get("max_objects")
  model_n = None
  if "model" in config and "conditioning" in config.model:
    model_n = config.model.conditioning.get("max_objects")
  if data_n is not None and model_n is not None and data_n != model_n:
    raise ValueError(f"config.data.max_objects={data_n} disagrees with "
                     f"config.model.conditioning.max_objects={model_n}.")
  n = model_n if model_n is not None else data_n
  if n is None:
    raise ValueError("Set config.model.conditioning.max_objects (or config.data.max_objects).")
  return int(n)


def frame_pair_config(config) -> frame_pairs.FramePairConfig:
  """The FramePairConfig of an experiment config (`config.data` and its slot count)."""
  return frame_pairs.FramePairConfig.from_config(config.data, _max_objects(config))


def read_threads(data: Mapping[str, Any]) -> int:
  """`data.read_threads` as grain's ReadOptions takes it (None = 0)."""
  threads = data.get("read_threads")
  if threads is None:
    threads = 0
  if int(threads) < 0:
    raise ValueError(f"read_threads must be >= 0, got {threads}.")
  return int(threads)
