"""Grain input pipeline: ArrayRecord video records -> batches of frame-pair examples.

    records (ArrayRecord, one video per entry)
      -> VideoRecordSource  (grain random-access source; yields {video_index, data bytes})
      -> IndexSampler       (global shuffle + repeat, deterministic given `seed`, sharded by JAX
                             process: ShardOptions(process_index, process_count, drop_remainder))
      -> FramePairMap       (RandomMap: decode record, pick + decode the 2 frames, filter objects;
                             per-element RNG = Philox(seed + global element index), so an
                             element's content does not depend on `worker_count` or on where a
                             run was resumed)
      -> Batch              (global_batch_size / process_count per host)
      -> FramePairIterator  (get_state / set_state for orbax; aggregates the skip / filter counts)

Determinism: the batches are a function of (files, config.data, process layout). With
worker_count <= 1 they are also independent of the worker count. With worker_count = W > 1 grain
deals elements round-robin to the workers and each worker batches its own share, so the same
elements arrive grouped differently (batch 0 = elements 0, W, 2W, ...); grain's iterator state
records W and refuses to restore into a loader with another worker count.

Batches follow the FRAME-PAIR EXAMPLE of DESIGN.md with a leading per-host batch dimension B.

Corrupted records. A record that fails to decode (`CorruptRecordError`: bad checksum, schema, an
undecodable frame, or a video too short for `min_gap`) is skipped: the element is built from the
next record in the data source instead (video_index says which record was used), up to
`max_skip_retries` in a row. Shapes and batch sizes never change. Each element carries how many
records it skipped and its per-object filter outcomes; `FramePairIterator` pops both from every
batch and sums them, so `iterator.stats` is exact over everything this host consumed (whatever
the worker count: the counts travel with the data through the worker processes) and is saved and
restored with the iterator state. Sum `stats` over hosts for a global figure.

Config (`config.data`, an ml_collections ConfigDict; `default_data_config()` holds the defaults):
  data_dir            directory (or gs:// path) holding the ArrayRecord files.
  train_files         glob (relative to data_dir, or absolute) of the training files.
  eval_files          glob of the evaluation files.
  resolution          (H, W) of the output images, e.g. (256, 256).
  resize_method       "area" (default, as the release), "bilinear", "bicubic", "lanczos".
  jpeg_draft          allow DCT-domain JPEG downscaling before the resize (faster).
  min_gap, max_gap    inclusive frame gap range; 0 allowed (source == target); max_gap None =
                      the whole video (MOVi: [0, 23]).
  swap_prob           probability of swapping source and target (0.5; eval uses 0).
  min_box_size        per-dataset filter: min normalised 2D box height and width (after crop).
  visible_in_both     per-dataset filter: object must be visible in source and target.
  min_depth           3D boxes with a corner at depth <= min_depth in the target are invalid.
  min_projected_size  min normalised size of the clipped projected target 3D box.
  max_objects         optional; if set it must equal config.model.conditioning.max_objects (the
                      number of slots N; extra objects are dropped, largest kept).
  seed                shuffling + per-element RNG seed (int, 0 <= seed < 2**32).
  shuffle             globally shuffle the records each epoch.
  num_epochs          None = repeat forever.
  global_batch_size   batch over all hosts; each host yields global_batch_size / process_count.
  drop_remainder      drop a final partial batch (training: True).
  worker_count        grain worker processes (0 = in the main process).
  worker_buffer_size  batches each worker prepares ahead.
  read_threads        threads reading raw records ahead in each process (grain ReadOptions).
  read_buffer_size    records read ahead per process.
  max_skip_retries    corrupt records skipped in a row before giving up with an error.
  eval_seed           seed of the fixed evaluation pairs (a per-video RNG; no swap).
  eval_global_batch_size  eval batch over all hosts.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from absl import flags
from etils import epath
import grain
import ml_collections
import numpy as np

from data_pipelines import frame_pairs
from data_pipelines import video_record

_SKIPPED_KEY = "_num_skipped_records"
_COUNTS_KEY = "_object_counts"


def default_data_config() -> ml_collections.ConfigDict:
  """The `config.data` section with every key documented in the module docstring."""
  return ml_collections.ConfigDict(dict(
      data_dir="",
      train_files="train*.array_record*",
      eval_files="eval*.array_record*",
      resolution=(256, 256),
      resize_method="area",
      jpeg_draft=True,
      min_gap=0,
      max_gap=ml_collections.FieldReference(None, field_type=int),
      swap_prob=0.5,
      min_box_size=0.0,
      visible_in_both=True,
      min_depth=1e-2,
      min_projected_size=0.0,
      max_objects=ml_collections.FieldReference(None, field_type=int),
      seed=0,
      shuffle=True,
      num_epochs=ml_collections.FieldReference(None, field_type=int),
      global_batch_size=8,
      drop_remainder=True,
      worker_count=0,
      worker_buffer_size=2,
      read_threads=4,
      read_buffer_size=64,
      max_skip_retries=16,
      eval_seed=0,
      eval_global_batch_size=8,
  ))


# ------------------------------------------------------------------------------------------------
# Source and transform.


class VideoRecordSource:
  """Random-access source over ArrayRecord files of encoded video records.

  `source[i]` is `{"video_index": i, "data": <encoded record bytes>}` (global record key i over
  the sorted files); decoding happens in `FramePairMap` so that failures can be skipped there.
  """

  def __init__(self, paths):
    self._paths = [str(p) for p in paths]
    if not self._paths:
      raise ValueError("VideoRecordSource needs at least one ArrayRecord file.")
    self._source = grain.sources.ArrayRecordDataSource(self._paths)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, key) -> dict[str, Any]:
    key = int(key)
    return {"video_index": key, "data": self._source[key]}

  def __repr__(self) -> str:
    # grain stores repr(source) in the iterator state and checks it on restore.
    return f"VideoRecordSource(paths={self._paths!r})"


class FramePairMap(grain.transforms.RandomMap):
  """Encoded record -> frame-pair example (+ skip / filter counts), skipping corrupt records.

  Args:
    source: the VideoRecordSource (to fetch the replacement of a corrupt record).
    cfg: FramePairConfig.
    max_skip_retries: corrupt records in a row tolerated before raising.
    fixed_seed: None for training (the sampler's per-element RNG); an int for fixed evaluation
      pairs: the RNG is then derived from (fixed_seed, video_index) only.
  """

  def __init__(self, source: VideoRecordSource, cfg: frame_pairs.FramePairConfig,
               max_skip_retries: int, fixed_seed: int | None = None):
    self._source = source
    self._cfg = cfg
    self._max_skip_retries = max_skip_retries
    self._fixed_seed = fixed_seed

  def random_map(self, element, rng: np.random.Generator):
    key, data = int(element["video_index"]), element["data"]
    skipped = 0
    while True:
      if self._fixed_seed is not None:
        rng = np.random.default_rng([self._fixed_seed, key])
      try:
        record = video_record.decode(data)
        example, counts = frame_pairs.sample_example(record, key, rng, self._cfg)
        break
      except video_record.CorruptRecordError as e:
        skipped += 1
        if skipped > self._max_skip_retries:
          raise RuntimeError(f"{skipped} corrupt video records in a row (last: record {key}: "
                             f"{e}); check the data files.") from e
        key = (key + 1) % len(self._source)
        data = self._source[key]["data"]
    example[_SKIPPED_KEY] = np.int32(skipped)
    example[_COUNTS_KEY] = counts
    return example


# ------------------------------------------------------------------------------------------------
# Iterator.


class FramePairIterator:
  """Checkpointable iterator of frame-pair batches with skip / filter statistics.

  `get_state()` returns bytes (JSON: grain's DataLoader state + the counters) and
  `set_state(bytes)` restores both, so grain's orbax `CheckpointHandler` (or any byte store) can
  save it; a restored iterator yields exactly the batches the original would have yielded next.
  """

  def __init__(self, loader: grain.DataLoader):
    self._loader = loader
    self._iterator = iter(loader)
    self._num_skipped = 0
    self._object_counts = np.zeros(len(frame_pairs.OBJECT_COUNT_NAMES), np.int64)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._iterator)
    self._num_skipped += int(np.sum(batch.pop(_SKIPPED_KEY)))
    self._object_counts += np.sum(batch.pop(_COUNTS_KEY), axis=0).astype(np.int64)
    return batch

  @property
  def stats(self) -> dict[str, int]:
    """Counts over all consumed batches of this host: `skipped_records` and `objects/<outcome>`
    (`frame_pairs.OBJECT_COUNT_NAMES`: kept, or the filter rule that dropped the object)."""
    out = {"skipped_records": self._num_skipped}
    for name, value in zip(frame_pairs.OBJECT_COUNT_NAMES, self._object_counts):
      out[f"objects/{name}"] = int(value)
    return out

  def get_state(self) -> bytes:
    return json.dumps({
        "loader": json.loads(self._iterator.get_state().decode()),
        "skipped_records": self._num_skipped,
        "object_counts": self._object_counts.tolist(),
    }).encode()

  def set_state(self, state: bytes):
    state = json.loads(state.decode())
    counts = state["object_counts"]
    if len(counts) != len(frame_pairs.OBJECT_COUNT_NAMES):
      raise ValueError(f"Iterator state has {len(counts)} object counters, this code has "
                       f"{len(frame_pairs.OBJECT_COUNT_NAMES)}.")
    self._iterator.set_state(json.dumps(state["loader"]).encode())
    self._num_skipped = int(state["skipped_records"])
    self._object_counts = np.asarray(counts, np.int64)

  def start_prefetch(self):
    self._iterator.start_prefetch()


# ------------------------------------------------------------------------------------------------
# Builders.


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


def _process(process_index, process_count) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return int(process_index), int(process_count)


def _host_batch_size(global_batch_size: int, process_count: int) -> int:
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(f"Global batch size {global_batch_size} must be a positive multiple of the "
                     f"process count {process_count}.")
  return global_batch_size // process_count


def _make_loader(data: Mapping[str, Any], files, cfg, *, global_batch_size, shuffle,
                 num_epochs, drop_remainder, fixed_seed, process_index, process_count):
  if int(data["worker_count"]) > 0 and not flags.FLAGS.is_parsed():
    # Grain's worker processes read absl flags; outside an absl app (tests, notebooks, scripts)
    # nobody parsed them, so accept the defaults instead of failing in the workers.
    flags.FLAGS.mark_as_parsed()
  source = VideoRecordSource(files)
  shard = grain.sharding.ShardOptions(shard_index=process_index, shard_count=process_count,
                                      drop_remainder=True)
  sampler = grain.samplers.IndexSampler(num_records=len(source), shard_options=shard,
                                        shuffle=shuffle, num_epochs=num_epochs,
                                        seed=int(data["seed"]))
  operations = [
      FramePairMap(source, cfg, int(data["max_skip_retries"]), fixed_seed=fixed_seed),
      grain.transforms.Batch(batch_size=_host_batch_size(global_batch_size, process_count),
                             drop_remainder=drop_remainder),
  ]
  return grain.DataLoader(
      data_source=source, sampler=sampler, operations=operations,
      worker_count=int(data["worker_count"]),
      worker_buffer_size=int(data["worker_buffer_size"]), shard_options=shard,
      read_options=grain.ReadOptions(num_threads=int(data["read_threads"]),
                                     prefetch_buffer_size=int(data["read_buffer_size"])))


def make_train_iterator(config, *, process_index: int | None = None,
                        process_count: int | None = None) -> FramePairIterator:
  """Training iterator: random pairs with swap, shuffled, repeated, sharded by JAX process.

  Args:
    config: the experiment ConfigDict (reads `config.data` and the slot count, see
      module docstring).
    process_index, process_count: override jax.process_index() / jax.process_count() (tests).

  Returns:
    FramePairIterator over batches [global_batch_size / process_count, ...].
  """
  data = config.data
  process_index, process_count = _process(process_index, process_count)
  cfg = frame_pairs.FramePairConfig.from_config(data, _max_objects(config))
  loader = _make_loader(
      data, resolve_files(data.data_dir, data.train_files), cfg,
      global_batch_size=int(data.global_batch_size), shuffle=bool(data.shuffle),
      num_epochs=data.num_epochs, drop_remainder=bool(data.drop_remainder), fixed_seed=None,
      process_index=process_index, process_count=process_count)
  return FramePairIterator(loader)


def make_eval_iterator(config, *, process_index: int | None = None,
                       process_count: int | None = None) -> FramePairIterator:
  """Evaluation iterator: one pass, no shuffle, fixed pairs (no random swap).

  The pair of each video depends only on (`eval_seed`, video index), so every evaluation (and
  every host / worker layout) sees the same pairs. Records are sharded across processes with
  ShardOptions(drop_remainder=True) so all hosts run the same number of batches; the final batch
  of a host may be smaller than eval_global_batch_size / process_count.
  """
  data = config.data
  process_index, process_count = _process(process_index, process_count)
  cfg = frame_pairs.FramePairConfig.from_config(data, _max_objects(config))
  cfg = dataclasses.replace(cfg, swap_prob=0.0)
  loader = _make_loader(
      data, resolve_files(data.data_dir, data.eval_files), cfg,
      global_batch_size=int(data.eval_global_batch_size), shuffle=False, num_epochs=1,
      drop_remainder=False, fixed_seed=int(data.eval_seed), process_index=process_index,
      process_count=process_count)
  return FramePairIterator(loader)
