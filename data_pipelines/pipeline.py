"""Grain input pipeline: ArrayRecord video records -> batches of frame-pair examples.

    MapDataset.range(number of batches)
      .map(host_batches.VideoOrder)          (video indices of one host batch: this process's
                             block of len // process_count videos, in a new random order each of
                             num_epochs epochs, batches of global_batch_size / process_count)
      .map_with_index(batch_map.FramePairBatchMap)  (one grain element = one batch: records
                             read (`record_source.VideoRecordSource`), pairs picked, the object
                             logic compiled over the batch, all frames decoded into the batch)
      .to_iter_dataset(ReadOptions)  [.mp_prefetch(worker_count)]
      -> FramePairIterator  (get_state / set_state for orbax: the batch position; aggregates the
                             skip / filter counts)

Config: `config.data`, whose keys and defaults are documented in one place,
`data_pipelines.data_config.default_data_config`.

Every record is read through ArrayRecord's random access (`video_record.VideoRecordReader`): a
frame pair reads exactly 3 records (the video record and its 2 frames).

Throughput (benchmarks/data_pipeline.py, per CPU core, 256x256 PNG frames, batch 8; see the
README for the figures and the machine load): one grain element per batch (not per example)
pays grain's per-element cost once per batch; PNG frames at the training size are sized from
their IHDR chunk and decoded by libpng straight into the batch; what remains beyond the bare
decode rate is the 3 record reads, the video-record parse, writing the pixels into the batch,
the object logic (compiled) and grain.

Determinism: the batches are a function of (files, config.data, process layout): batch k holds
the videos of positions [kB, (k+1)B) of the shuffled order and draws its pairs from a generator
seeded by (seed, process index, k). Worker processes (`worker_count`) and read threads
(`read_threads`) each prepare whole batches and grain returns them in order, so the batches do
not depend on either; a checkpointed position resumes with any worker count.

Batches follow the FRAME-PAIR EXAMPLE of DESIGN.md with a leading per-host batch dimension B.

Corrupted records. A record that fails to read or decode (`CorruptRecordError`, naming the file
and the record: ArrayRecord's chunk hash or our CRC32 failed, bad schema, an undecodable frame,
or a video too short for `min_gap`) is skipped (and logged, the first times): the element is
built from the next video instead (video_index says which was used), up to `max_skip_retries`
in a row. A data file that cannot be opened (truncated, not video records) stops iterator
creation with `video_record.DataFileError` naming it. Shapes and batch sizes never change.
Each element carries how many records it skipped and its per-object filter outcomes;
`FramePairIterator` pops both from every batch and sums them, so `iterator.stats` is exact over
everything this host consumed (whatever the worker count: the counts travel with the data through
the worker processes) and is saved and restored with the iterator state. Sum `stats` over hosts for
a global figure.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from absl import flags
import grain
import numpy as np

from data_pipelines import batch_map
from data_pipelines import data_config
from data_pipelines import frame_pairs
from data_pipelines import host_batches
from data_pipelines.record_source import VideoRecordSource


class FramePairIterator:
  """Checkpointable iterator of frame-pair batches with skip / filter statistics.

  The position is the number of batches consumed: `get_state()` returns it (JSON bytes, with
  the counters and what the data must match), and `set_state(bytes)` restarts the grain
  iterator at that batch (`MapDataset` slicing), so a restored iterator yields exactly the
  batches the original would have yielded next, whatever its worker or thread count. grain's
  orbax `CheckpointHandler` (or any byte store) can save the state.

  Args:
    dataset: grain MapDataset of batches (`batch_map.FramePairBatchMap` outputs).
    read_options: grain ReadOptions (threads preparing batches ahead in this process).
    worker_count: grain worker processes (0: none).
    worker_buffer_size: batches each worker prepares ahead.
    fingerprint: what a restored state must match (videos, batch size, seed, process layout).
  """

  def __init__(self, dataset: grain.MapDataset, read_options: grain.ReadOptions,
               worker_count: int, worker_buffer_size: int, fingerprint: dict[str, Any]):
    self._dataset = dataset
    self._read_options = read_options
    self._worker_count = worker_count
    self._worker_buffer_size = worker_buffer_size
    self._fingerprint = fingerprint
    self._next_batch = 0
    self._iterator = self._start(0)
    self._num_skipped = 0
    self._object_counts = np.zeros(len(frame_pairs.OBJECT_COUNT_NAMES), np.int64)

  def _start(self, next_batch: int):
    dataset = self._dataset[next_batch:] if next_batch else self._dataset
    dataset = dataset.to_iter_dataset(self._read_options)
    if self._worker_count > 0:
      dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self._worker_count, per_worker_buffer_size=self._worker_buffer_size))
    return iter(dataset)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._iterator)
    self._next_batch += 1
    self._num_skipped += int(np.sum(batch.pop(batch_map.SKIPPED_KEY)))
    self._object_counts += np.sum(batch.pop(batch_map.COUNTS_KEY), axis=0).astype(np.int64)
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
        "next_batch": self._next_batch,
        "data": self._fingerprint,
        "skipped_records": self._num_skipped,
        "object_counts": self._object_counts.tolist(),
    }).encode()

  def set_state(self, state: bytes):
    state = json.loads(state.decode())
    if "next_batch" not in state:
      raise ValueError("The data-iterator state was written by an older version of the "
                       "pipeline (grain DataLoader); it cannot be resumed exactly. Start the "
                       "data from the beginning (a new workdir) or use the older version.")
    for name, value in self._fingerprint.items():
      saved = state["data"].get(name)
      if saved != value:
        raise ValueError(f"The data-iterator state was saved with {name}={saved!r}, this "
                         f"pipeline has {name}={value!r}: it would not continue the same data.")
    counts = state["object_counts"]
    if len(counts) != len(frame_pairs.OBJECT_COUNT_NAMES):
      raise ValueError(f"Iterator state has {len(counts)} object counters, this code has "
                       f"{len(frame_pairs.OBJECT_COUNT_NAMES)}.")
    self.close()
    self._next_batch = int(state["next_batch"])
    self._iterator = self._start(self._next_batch)
    self._num_skipped = int(state["skipped_records"])
    self._object_counts = np.asarray(counts, np.int64)

  def start_prefetch(self):
    """Starts preparing batches (threads / worker processes) before the first `next`."""
    start = getattr(self._iterator, "start_prefetch", None)
    if start is not None:
      start()

  def close(self):
    """Stops grain's threads and worker processes."""
    close = getattr(self._iterator, "close", None)
    if close is not None:
      close()


# ------------------------------------------------------------------------------------------------
# Builders.


def _let_grain_workers_read_unparsed_absl_flags():
  """Marks the global absl flags parsed if nobody parsed them (a process-wide side effect).

  Why: grain reads its own absl flags (e.g. `grain_enable_multiprocess_worker_profiling`) when
  it starts worker processes and offers no way to pass them otherwise; outside an absl app
  (tests, notebooks, scripts) nobody parsed the flags, so that read would fail. Marking them
  parsed makes every flag read its default. Called only when worker processes are asked for;
  under an absl app (`neural_assets.main`) the flags are parsed already and this does nothing.
  """
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _make_iterator(data: Mapping[str, Any], files, cfg, *, global_batch_size, shuffle,
                   num_epochs, drop_remainder, fixed_seed, process_index,
                   process_count) -> FramePairIterator:
  if int(data["worker_count"]) > 0:
    _let_grain_workers_read_unparsed_absl_flags()
  source = VideoRecordSource(files)
  batch_size = host_batches.host_batch_size(global_batch_size, process_count)
  seed = int(data["seed"])
  start, stop = host_batches.host_block(len(source), process_index, process_count)
  order = host_batches.VideoOrder(start, stop, batch_size, seed, shuffle, num_epochs,
                                  drop_remainder)
  dataset = grain.MapDataset.range(len(order)).map(order)  # Batches of video indices.
  dataset = dataset.map_with_index(batch_map.FramePairBatchMap(
      source, cfg, int(data["max_skip_retries"]), batch_size, (seed, process_index),
      fixed_seed=fixed_seed))
  fingerprint = {"num_videos": len(source), "host_batch_size": batch_size, "seed": seed,
                 "shuffle": bool(shuffle), "order": "epoch-permutation",
                 "pair_rng": "philox-batch-counter",
                 "process_index": process_index,
                 "process_count": process_count}
  return FramePairIterator(
      dataset, grain.ReadOptions(num_threads=data_config.read_threads(data),
                                 prefetch_buffer_size=int(data["read_buffer_size"])),
      int(data["worker_count"]), int(data["worker_buffer_size"]), fingerprint)


def make_train_iterator(config, *, process_index: int | None = None,
                        process_count: int | None = None) -> FramePairIterator:
  """Training iterator: random pairs with swap, shuffled, repeated, sharded by JAX process.

  Args:
    config: the experiment ConfigDict (reads `config.data`, see
      `data_config.default_data_config`, and the slot count).
    process_index, process_count: override jax.process_index() / jax.process_count() (tests).

  Returns:
    FramePairIterator over batches [global_batch_size / process_count, ...].
  """
  data = config.data
  process_index, process_count = host_batches.process_layout(process_index, process_count)
  files = data_config.resolve_files(data.data_dir, data.train_files)
  return _make_iterator(
      data, files, data_config.frame_pair_config(config),
      global_batch_size=int(data.global_batch_size), shuffle=bool(data.shuffle),
      num_epochs=data.num_epochs, drop_remainder=bool(data.drop_remainder), fixed_seed=None,
      process_index=process_index, process_count=process_count)


def make_eval_iterator(config, *, process_index: int | None = None,
                       process_count: int | None = None) -> FramePairIterator:
  """Evaluation iterator: one pass, no shuffle, fixed pairs (no random swap).

  The pair of each video depends only on (`eval_seed`, video index), so every evaluation (and
  every host / worker layout) sees the same pairs. Records are sharded across processes with
  ShardOptions(drop_remainder=True) so all hosts run the same number of batches; the final batch
  of a host may be smaller than eval_global_batch_size / process_count.
  """
  data = config.data
  process_index, process_count = host_batches.process_layout(process_index, process_count)
  cfg = data_config.frame_pair_config(config)
  min_gap = max(cfg.min_gap, int(data.eval_min_gap))
  # A training gap range below it (e.g. single-frame training) does not bound the eval pairs.
  max_gap = cfg.max_gap if cfg.max_gap is None or cfg.max_gap >= min_gap else None
  cfg = dataclasses.replace(cfg, swap_prob=0.0, min_gap=min_gap, max_gap=max_gap)
  return _make_iterator(
      data, data_config.resolve_files(data.data_dir, data.eval_files), cfg,
      global_batch_size=int(data.eval_global_batch_size), shuffle=False, num_epochs=1,
      drop_remainder=False, fixed_seed=int(data.eval_seed), process_index=process_index,
      process_count=process_count)
