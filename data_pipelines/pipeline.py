"""Grain input pipeline: ArrayRecord video records -> batches of frame-pair examples.

    MapDataset.range(number of batches)
      .map(VideoOrder)                                 (video indices of one host batch: this
                             process's block of len // process_count videos (as grain's
                             ShardOptions(drop_remainder=True)), in a new random order each of
                             num_epochs epochs, batches of global_batch_size / process_count)
      .map_with_index(FramePairBatchMap)               (one grain element = one batch: per
                             example, read and decode its video record, pick the pair, read its
                             2 frame records (`frame_pairs.open_example`); the object logic
                             compiled, over the batch (`frame_pairs.finish_examples`); then
                             all frames decoded into the batch's image arrays
                             (`frame_pairs.decode_example`))
      .to_iter_dataset(ReadOptions)  [.mp_prefetch(worker_count)]
      -> FramePairIterator  (get_state / set_state for orbax: the batch position; aggregates the
                             skip / filter counts)

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
  keep_all_objects    the release's slot selection: every object gets a slot (visible or not;
                      frame_pairs step 3); False: the filters above (default, the old rule).
  invalid_3d_boxes    with keep_all_objects, objects whose target 3D box is behind the camera
                      or off screen: "drop" (default, the paper configs: no slot, counted as
                      invalid_3d_*; the pose encoder's inputs stay bounded) or "keep" (MOVi-E
                      release: a slot with the raw projection, |u|, |v| up to ~1e6).
  paint_all_source_objects  emit `background_mask` (every source-visible object's box, slotted
                      or not, painted out of the background token's image; release); False: the
                      tokenizer paints the slotted boxes only.
  min_depth           3D boxes with a corner at depth <= min_depth in the target are invalid.
  min_projected_size  min normalised size of the clipped projected target 3D box.
  max_objects         optional; if set it must equal config.model.conditioning.max_objects (the
                      number of slots N; extra objects are dropped, largest kept).
  seed                shuffling + per-element RNG seed (int, 0 <= seed < 2**32).
  shuffle             globally shuffle the records each epoch.
  num_epochs          None = repeat forever.
  global_batch_size   batch over all hosts; each host yields global_batch_size / process_count.
  drop_remainder      drop a final partial batch (training: True).
  worker_count        grain worker processes preparing batches (0 = in the main process).
  worker_buffer_size  batches each worker prepares ahead.
  read_threads        threads preparing batches ahead in each process (grain ReadOptions;
                      Pillow releases the GIL while decoding, so threads decode in parallel);
                      None = 0: batches are prepared when `next` is called.
  read_buffer_size    batches prepared ahead per process by those threads.
  max_skip_retries    corrupt records skipped in a row before giving up with an error.
  eval_seed           seed of the fixed evaluation pairs (a per-video RNG; no swap).
  eval_min_gap        minimum frame gap of the evaluation pairs (default 1: with gap 0 the
                      target is the source, which flatters every model and makes the
                      copy-source baseline's PSNR infinite); the larger of it and min_gap holds.
  eval_global_batch_size  eval batch over all hosts.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import threading
from typing import Any, Mapping

from absl import flags
from absl import logging
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
      keep_all_objects=False,
      invalid_3d_boxes="drop",
      paint_all_source_objects=False,
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
      read_threads=ml_collections.FieldReference(None, field_type=int),
      read_buffer_size=4,
      max_skip_retries=16,
      eval_seed=0,
      eval_min_gap=1,
      eval_global_batch_size=8,
  ))


# ------------------------------------------------------------------------------------------------
# Source and batch map.


class VideoRecordSource(video_record.VideoRecordReader):
  """Random access to the videos of ArrayRecord files of video records, for `FramePairBatchMap`.

  `source[i]` is `{"video_index": i, "data": <video record bytes>}` (global video index i over
  the sorted files): one small record read through `ArrayRecordReader`. `decode(i, data)`
  turns it into the video's arrays plus `frames`, whose `frames[t]` reads frame record t, so a
  frame pair reads exactly 3 records (the video record and its 2 frames), whatever the file's
  compression or file system (see `video_record`). A record that cannot be read or fails its
  checksum raises `video_record.CorruptRecordError` naming the file and the record (and is
  logged, the first `log_limit` times); a file that cannot be opened raises
  `video_record.DataFileError` naming it.

  Args:
    paths: ArrayRecord files, in video order.
    log_limit: corrupt records logged per source (per process) before going quiet.
  """

  def __init__(self, paths, log_limit: int = 20):
    super().__init__(paths)
    self._log_limit = log_limit
    self._logged = 0
    self._failed = {}  # video -> CorruptRecordError of a failed read, raised by `decode`.

  def __getitem__(self, key) -> dict[str, Any]:
    key = int(key)
    return {"video_index": key, "data": self.read_head(key)}

  def __repr__(self) -> str:
    return f"VideoRecordSource(paths={self._paths!r})"

  def _logged_read(self, fn, *args):
    try:
      return fn(*args)
    except video_record.CorruptRecordError as e:
      if self._logged < self._log_limit:
        self._logged += 1
        logging.warning("Skipping a corrupt video record: %s", e)
      raise

  def read_head(self, key):
    """The video record bytes of video `key` (what `source[key]["data"]` holds). A failed read
    returns b"" and `decode` then raises its error (logged once), so reading and decoding can
    happen at different places."""
    key = int(key)
    try:
      return self._logged_read(self.video_bytes, key)
    except video_record.CorruptRecordError as e:
      self._failed[key] = e
      return b""

  def decode(self, key, data) -> dict[str, Any]:
    """Video `key` from its record bytes; raises video_record.CorruptRecordError."""
    key = int(key)
    if not data and key in self._failed:
      raise self._failed.pop(key)
    return self._logged_read(super().decode, key, data)

  def frame(self, file_index: int, key: int):
    return self._logged_read(super().frame, file_index, key)

  def read_record(self, key) -> dict[str, Any]:
    """Decoded video `key` (frames read when used)."""
    return self.decode(key, self.read_head(key))


class BatchGenerators:
  """The random generator of each training batch: batch k draws from a counter-based stream
  (Philox), keyed by `seed`, starting at counter (0, k, 0, 0), so that its numbers depend on
  (seed, k) alone: not on the worker or thread count, nor on where a run was resumed.

  The same numbers as `Generator(Philox(key=key, counter=...))`, but one bit generator per
  thread is re-pointed at each batch's counter (~1 us) instead of a generator created per batch
  (~10 us, ~50 us with the caches cold between two batches' decodes: 1.5% of the pipeline's
  time at batch 8). A batch uses a handful of 4-word blocks, far from the next batch's counter.

  Args:
    seed: integers the key is derived from (`np.random.SeedSequence`).
  """

  def __init__(self, seed: tuple[int, ...]):
    self.key = np.random.SeedSequence(seed).generate_state(2, np.uint64)
    self._local = threading.local()

  def __getstate__(self):
    return dict(self.__dict__, _local=None)

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._local = threading.local()

  def __call__(self, index: int) -> np.random.Generator:
    """The generator of batch `index` (valid until this thread asks for another batch's)."""
    local = self._local
    if not hasattr(local, "generator"):
      local.bits = np.random.Philox(key=self.key)
      local.generator = np.random.Generator(local.bits)
    local.bits.state = {"bit_generator": "Philox",
                        "state": {"counter": np.array([0, index, 0, 0], np.uint64),
                                  "key": self.key},
                        "buffer": np.zeros(4, np.uint64), "buffer_pos": 4, "has_uint32": 0,
                        "uinteger": 0}
    return local.generator


class BatchBuffers:
  """Reusable [2, B, H, W, 3] uint8 arrays the batch map decodes the images into.

  Each example's two frames are decoded straight into their slots of the next free array
  (`frame_pairs.decode_example(out=...)`; frames that need Pillow are copied in right after
  decoding, while in cache), and the batch's `source_image` / `target_image` are views of it.
  An array is reused once nothing references it (CPython reference counts: a batch still
  held by the caller, or anything built on its buffer, is never overwritten), which also saves a
  page fault per 4 KiB of every fresh multi-MiB array under glibc's default allocator policy.
  Thread-safe (batches may be prepared by grain's read threads).

  Args:
    batch_size: B, examples per batch.
    image_shape: (H, W, 3).
    pool_size: arrays kept for reuse.
  """

  def __init__(self, batch_size: int, image_shape: tuple[int, ...], pool_size: int = 4):
    self._shape = (2, batch_size) + tuple(image_shape)
    self._pool_size = pool_size
    self._pool: list[np.ndarray] = []
    self._lock = threading.Lock()

  def __getstate__(self):
    return dict(self.__dict__, _pool=[], _lock=None)

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def take(self) -> np.ndarray:
    """A [2, B, H, W, 3] array nobody else references (reused, or new)."""
    with self._lock:
      for index in range(len(self._pool)):
        # The pool's list slot + getrefcount's argument: nobody else holds it. The caller takes
        # a reference before the lock is released, so two threads never get the same array.
        if sys.getrefcount(self._pool[index]) == 2:
          return self._pool[index]
      array = np.empty(self._shape, np.uint8)
      if len(self._pool) < self._pool_size:
        self._pool.append(array)
      return array


class VideoOrder:
  """The video indices of each batch: batch k holds positions [kB, (k+1)B) of the sequence of
  epochs over videos [start, stop), each epoch in its own random order (a permutation seeded by
  (seed, epoch)) or in index order. Batches run across epoch boundaries, as grain's
  `shuffle().repeat().batch()`; the last one may be partial (unless `drop_remainder`).

  A numpy permutation per epoch, looked up per batch, instead of grain's `shuffle`: grain's
  per-element index shuffle costs ~10 us per example, 1% of the whole pipeline.

  Args:
    start, stop: this process's block of video indices.
    batch_size: B.
    seed: the shuffle seed.
    shuffle: False keeps index order.
    num_epochs: None repeats forever.
    drop_remainder: drop a final partial batch.
  """

  def __init__(self, start: int, stop: int, batch_size: int, seed: int, shuffle: bool,
               num_epochs: int | None, drop_remainder: bool):
    self._start, self._size, self._batch = int(start), int(stop) - int(start), int(batch_size)
    self._seed, self._shuffle = int(seed), bool(shuffle)
    if num_epochs is None:
      self._total = sys.maxsize // 2  # Positions; grain's "forever" (repeat(None)).
    else:
      self._total = self._size * int(num_epochs)
    full, rest = divmod(self._total, self._batch)
    self._len = full if drop_remainder or not rest else full + 1
    self._epochs: dict[int, np.ndarray] = {}  # The last two epochs' orders.
    self._lock = threading.Lock()

  def __getstate__(self):
    return dict(self.__dict__, _epochs={}, _lock=None)

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return self._len

  def _epoch(self, epoch: int) -> np.ndarray:
    with self._lock:  # Grain's read threads share this object.
      order = self._epochs.get(epoch)
      if order is None:
        order = np.arange(self._start, self._start + self._size)
        if self._shuffle:
          order = np.random.default_rng((self._seed, epoch)).permutation(order)
        if len(self._epochs) >= 2:  # Batches move forward: the oldest epoch is done.
          del self._epochs[min(self._epochs)]
        self._epochs[epoch] = order
      return order

  def __call__(self, index: int) -> list[int]:
    """The video indices of batch `index`."""
    first = int(index) * self._batch
    stop = min(first + self._batch, self._total)
    keys = []
    while first < stop:
      epoch, offset = divmod(first, self._size)
      part = self._epoch(epoch)[offset:offset + stop - first]
      keys.extend(part.tolist())
      first += len(part)
    return keys


class FramePairBatchMap:
  """(batch index, the batch's video indices) -> a batch of frame-pair examples.

  One grain element is one batch (the batch's video indices from `VideoOrder`, then
  `map_with_index(this)`), so grain's per-element cost is paid once per batch. Per example it
  reads and decodes the video record, samples the pair, reads its two frame records and parses
  their headers (`frame_pairs.open_example`); the object logic runs once over the batch
  (`frame_pairs.finish_examples`, one compiled loop); then every example's two frames are
  decoded into `BatchBuffers` (`frame_pairs.decode_example`). A corrupt record (or
  undecodable frame) is replaced by the next video (see the module docstring).

  Randomness: training draws from one generator per batch (`BatchGenerators`: a Philox stream
  keyed by (seed, process index) at the batch index's counter), so a batch's content depends
  neither on the worker or thread count nor on where a run was resumed. Evaluation
  (`fixed_seed` set) seeds each example by (fixed_seed, video index): a video always gets the
  same pair.

  Args:
    source: the VideoRecordSource.
    cfg: FramePairConfig.
    max_skip_retries: corrupt records in a row tolerated before raising.
    batch_size: B (the last batch of a finite dataset may be smaller).
    seed: (seed, process index) of the training randomness.
    fixed_seed: None for training; an int for fixed evaluation pairs.
  """

  def __init__(self, source: VideoRecordSource, cfg: frame_pairs.FramePairConfig,
               max_skip_retries: int, batch_size: int, seed: tuple[int, int],
               fixed_seed: int | None = None):
    self._source = source
    self._cfg = cfg
    self._max_skip_retries = max_skip_retries
    self._generators = BatchGenerators(tuple(int(s) for s in seed))
    self._fixed_seed = fixed_seed
    self._buffers = BatchBuffers(batch_size, tuple(cfg.resolution) + (3,))

  def _skip(self, skipped: int, key: int, error: Exception) -> int:
    """One more corrupt record in a row; raises once there are too many."""
    skipped += 1
    if skipped > self._max_skip_retries:
      raise RuntimeError(f"{skipped} corrupt video records in a row (last: record {key}: "
                         f"{error}); check the data files.") from error
    return skipped

  def _open_examples(self, keys, rng, skipped=None) -> list[dict[str, Any]]:
    """Opens the examples of videos `keys` (`frame_pairs.open_example`: video record read and
    parsed, pair sampled, its two frame records read, the source frame's header parsed), one
    stage at a time over the examples (~2% faster per pair than example by example).

    A video record that fails to read or parse is replaced by the next video in place; an
    example failing at a later stage is redone from the next video (a recursive call) once the
    stages are through. `skipped`: corrupt records already skipped in a row, per key.
    """
    cfg, source, num_videos = self._cfg, self._source, len(self._source)
    keys = [int(key) for key in keys]
    skipped = list(skipped) if skipped is not None else [0] * len(keys)
    heads = [source.read_head(key) for key in keys]
    records = []
    for slot, head in enumerate(heads):
      while True:
        try:
          records.append(source.decode(keys[slot], head))
          break
        except video_record.CorruptRecordError as e:
          skipped[slot] = self._skip(skipped[slot], keys[slot], e)
          keys[slot] = (keys[slot] + 1) % num_videos
          head = source.read_head(keys[slot])
    failed = {}  # slot -> the error of a later stage.

    def stage(fn, *inputs):
      out = []
      for slot, args in enumerate(zip(*inputs)):
        if slot in failed:
          out.append(None)
          continue
        try:
          out.append(fn(slot, *args))
        except video_record.CorruptRecordError as e:
          failed[slot] = e
          out.append(None)
      return out

    def sample(slot, record):
      if self._fixed_seed is not None:
        generator = np.random.default_rng([self._fixed_seed, keys[slot]])
      else:
        generator = rng
      return frame_pairs.sample_frame_pair(len(record["frames"]), cfg.min_gap, cfg.max_gap,
                                           cfg.swap_prob, generator)

    pairs = stage(sample, records)
    encoded = stage(lambda _, record, pair: frame_pairs.read_pair_frames(record, *pair),
                    records, pairs)
    examples = stage(lambda slot, record, pair, frames: frame_pairs.open_example(
        record, *pair, keys[slot], cfg, frames), records, pairs, encoded)
    for slot, example in enumerate(examples):
      if slot in failed:
        examples[slot] = self._open_examples(
            [(keys[slot] + 1) % num_videos], rng,
            [self._skip(skipped[slot], keys[slot], failed[slot])])[0]
      else:
        example[_SKIPPED_KEY] = skipped[slot]
    return examples

  def __call__(self, index: int, keys) -> dict[str, np.ndarray]:
    rng = None if self._fixed_seed is not None else self._generators(int(index))
    images = self._buffers.take()[:, :len(keys)]
    # Phases: every example's records are read and its frames opened, the object logic runs,
    # then all frames are decoded back to back (~5% faster per pair than example by example:
    # the Python parts and the decoder each stay in cache).
    examples = self._open_examples(keys, rng)
    batch, counts = frame_pairs.finish_examples(examples, self._cfg)
    replaced = False
    for slot in range(len(examples)):
      out = (images[0, slot], images[1, slot])
      while True:
        example = examples[slot]
        try:
          frame_pairs.decode_example(example, out)
          break
        except video_record.CorruptRecordError as e:  # An undecodable frame: the next video.
          key = int(example["video_index"])
          examples[slot] = self._open_examples([(key + 1) % len(self._source)], rng,
                                               [self._skip(example[_SKIPPED_KEY], key, e)])[0]
          replaced = True
    if replaced:  # Rare: the object logic again, over the replacements.
      batch, counts = frame_pairs.finish_examples(examples, self._cfg)
    batch["source_image"], batch["target_image"] = images[0], images[1]
    fields = ("video_index", "source_frame", "target_frame", _SKIPPED_KEY)
    # One [4, B] array (one numpy call, not four); each row is contiguous.
    table = np.array([[e[key] for e in examples] for key in fields], np.int32)
    batch.update(zip(fields, table))
    batch[_COUNTS_KEY] = counts
    return batch


# ------------------------------------------------------------------------------------------------
# Iterator.


class FramePairIterator:
  """Checkpointable iterator of frame-pair batches with skip / filter statistics.

  The position is the number of batches consumed: `get_state()` returns it (JSON bytes, with
  the counters and what the data must match), and `set_state(bytes)` restarts the grain
  iterator at that batch (`MapDataset` slicing), so a restored iterator yields exactly the
  batches the original would have yielded next, whatever its worker or thread count. grain's
  orbax `CheckpointHandler` (or any byte store) can save the state.

  Args:
    dataset: grain MapDataset of batches (`FramePairBatchMap` outputs).
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


def _read_threads(data: Mapping[str, Any]) -> int:
  threads = data.get("read_threads")
  if threads is None:
    threads = 0
  if int(threads) < 0:
    raise ValueError(f"read_threads must be >= 0, got {threads}.")
  return int(threads)


def _make_iterator(data: Mapping[str, Any], files, cfg, *, global_batch_size, shuffle,
                   num_epochs, drop_remainder, fixed_seed, process_index,
                   process_count) -> FramePairIterator:
  if int(data["worker_count"]) > 0 and not flags.FLAGS.is_parsed():
    # Grain's worker processes read absl flags; outside an absl app (tests, notebooks, scripts)
    # nobody parsed them, so accept the defaults instead of failing in the workers.
    flags.FLAGS.mark_as_parsed()
  source = VideoRecordSource(files)
  batch_size = _host_batch_size(global_batch_size, process_count)
  seed = int(data["seed"])
  # Each process reads its own contiguous block of videos, all blocks of one size (as grain's
  # ShardOptions(drop_remainder=True)), so every host runs the same number of steps.
  per_process = len(source) // process_count
  if per_process == 0:
    raise ValueError(f"{len(source)} videos cannot be shared by {process_count} processes.")
  order = VideoOrder(process_index * per_process, (process_index + 1) * per_process,
                     batch_size, seed, shuffle, num_epochs, drop_remainder)
  dataset = grain.MapDataset.range(len(order)).map(order)  # Batches of video indices.
  dataset = dataset.map_with_index(FramePairBatchMap(
      source, cfg, int(data["max_skip_retries"]), batch_size, (seed, process_index),
      fixed_seed=fixed_seed))
  fingerprint = {"num_videos": len(source), "host_batch_size": batch_size, "seed": seed,
                 "shuffle": bool(shuffle), "order": "epoch-permutation",
                 "pair_rng": "philox-batch-counter",
                 "process_index": process_index,
                 "process_count": process_count}
  return FramePairIterator(
      dataset, grain.ReadOptions(num_threads=_read_threads(data),
                                 prefetch_buffer_size=int(data["read_buffer_size"])),
      int(data["worker_count"]), int(data["worker_buffer_size"]), fingerprint)


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
  return _make_iterator(
      data, resolve_files(data.data_dir, data.train_files), frame_pair_config(config),
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
  process_index, process_count = _process(process_index, process_count)
  cfg = frame_pair_config(config)
  min_gap = max(cfg.min_gap, int(data.get("eval_min_gap", 0)))
  # A training gap range below it (e.g. single-frame training) does not bound the eval pairs.
  max_gap = cfg.max_gap if cfg.max_gap is None or cfg.max_gap >= min_gap else None
  cfg = dataclasses.replace(cfg, swap_prob=0.0, min_gap=min_gap, max_gap=max_gap)
  return _make_iterator(
      data, resolve_files(data.data_dir, data.eval_files), cfg,
      global_batch_size=int(data.eval_global_batch_size), shuffle=False, num_epochs=1,
      drop_remainder=False, fixed_seed=int(data.eval_seed), process_index=process_index,
      process_count=process_count)
