"""Per-example and per-array entry points of `data_pipelines.frame_pairs`, for the tests only.

The pipeline builds examples a batch at a time (`frame_pairs.prepare_example` per example, then
`frame_pairs.finish_examples` over the batch); these compose the same functions for one frame
pair (`make_frame_pair`, `sample_example`) or call the compiled selection on plain per-object
arrays (`select_objects`), so that tests can check single examples and the selection rules.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from data_pipelines import object_slots
from data_pipelines.frame_pairs import EXAMPLE_KEYS
from data_pipelines.frame_pairs import FramePairConfig
from data_pipelines.frame_pairs import OBJECT_COUNT_NAMES
from data_pipelines.frame_pairs import finish_examples
from data_pipelines.frame_pairs import prepare_example
from data_pipelines.frame_pairs import sample_frame_pair
from neural_assets import geometry


def select_objects(visible_src, visible_tgt, boxes_src, boxes_tgt, valid_3d, reason_3d,
                   cfg: FramePairConfig):
  """Chooses the objects that get a slot.

  Args:
    visible_src, visible_tgt: [K] bool.
    boxes_src, boxes_tgt: [K, 4] cropped normalised boxes.
    valid_3d: [K] bool validity of the target 3D box; reason_3d: [K] int32 `BoxStatus`.
    cfg: thresholds.

  Returns:
    keep: [M] int object indices (ascending), M <= max_objects.
    counts: [len(OBJECT_COUNT_NAMES)] int32, one outcome per object.
  """
  visible = np.stack([visible_src, visible_tgt]).astype(bool)
  status = np.where(np.asarray(valid_3d, bool), int(geometry.BoxStatus.OK),
                    np.asarray(reason_3d, np.int64))
  if not np.isin(status, [int(s) for s in geometry.BoxStatus]).all():
    raise ValueError(f"reason_3d holds codes that are not BoxStatus values: {reason_3d}.")
  boxes = np.stack([boxes_src, boxes_tgt]).astype(np.float64)
  outcome, slot = object_slots.select(
      visible, boxes, status, np.array([0, visible.shape[1]]), cfg.max_objects,
      cfg.keep_all_objects, cfg.drop_invalid_3d, cfg.visible_in_both, cfg.min_box_size)
  counts = np.bincount(outcome, minlength=len(OBJECT_COUNT_NAMES)).astype(np.int32)
  return np.flatnonzero(slot >= 0), counts


def make_frame_pair(record: Mapping[str, Any], source_frame: int, target_frame: int,
                    video_index: int, cfg: FramePairConfig):
  """Builds the frame-pair example for a given pair of frames of a decoded video record.

  Args:
    record: decoded, validated video record (`video_record.decode`).
    source_frame, target_frame: frame indices (may be equal).
    video_index: index of the record in the data source (for tracing).
    cfg: FramePairConfig.

  Returns:
    (example, object_counts): the example dict (`data_pipelines.frame_pairs` module docstring) and the
    [len(OBJECT_COUNT_NAMES)] int32 per-object outcome counts.

  Raises:
    CorruptRecordError: a frame cannot be decoded, or frames differ in size.
  """
  prepared = prepare_example(record, source_frame, target_frame, video_index, cfg)
  objects, counts = finish_examples([prepared], cfg)
  example = {key: prepared[key] for key in EXAMPLE_KEYS if key in prepared}
  example.update({key: value[0] for key, value in objects.items()})
  return example, counts[0]


def sample_example(record: Mapping[str, Any], video_index: int, rng: np.random.Generator,
                   cfg: FramePairConfig):
  """Random frame pair (`sample_frame_pair`) + `make_frame_pair`; same returns."""
  source_frame, target_frame = sample_frame_pair(len(record["frames"]), cfg.min_gap, cfg.max_gap,
                                                 cfg.swap_prob, rng)
  return make_frame_pair(record, source_frame, target_frame, video_index, cfg)
