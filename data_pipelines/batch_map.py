"""The grain batch map: (batch index, video indices) -> one batch of frame-pair examples.

One grain element is one batch (not one example), so grain's per-element cost is paid once per
batch: per example the video record is read and decoded, the pair picked and its 2 frame
records read (`frame_pairs.open_example`); the object logic runs compiled over the batch
(`frame_pairs.finish_examples`); then all frames are decoded into the batch's image arrays
(`frame_pairs.decode_example`, into `BatchBuffers`). Each batch carries its skip count
(`SKIPPED_KEY`) and per-object filter outcomes (`COUNTS_KEY`), which `pipeline.
FramePairIterator` pops and sums.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

from data_pipelines import frame_pairs
from data_pipelines import video_record
from data_pipelines.record_source import VideoRecordSource

# Per-batch bookkeeping fields, popped by the iterator (never part of the yielded batch).
SKIPPED_KEY = "_num_skipped_records"
COUNTS_KEY = "_object_counts"


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

class FramePairBatchMap:
  """(batch index, the batch's video indices) -> a batch of frame-pair examples.

  One grain element is one batch (the batch's video indices from `VideoOrder`, then
  `map_with_index(this)`), so grain's per-element cost is paid once per batch. Per example it
  reads and decodes the video record, samples the pair, reads its two frame records and parses
  their headers (`frame_pairs.open_example`); the object logic runs once over the batch
  (`frame_pairs.finish_examples`, one compiled loop); then every example's two frames are
  decoded into `BatchBuffers` (`frame_pairs.decode_example`). A corrupt record (or
  undecodable frame) is replaced by the next video (see "Corrupted records" in
  `data_pipelines.pipeline`).

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
        example[SKIPPED_KEY] = skipped[slot]
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
                                               [self._skip(example[SKIPPED_KEY], key, e)])[0]
          replaced = True
    if replaced:  # Rare: the object logic again, over the replacements.
      batch, counts = frame_pairs.finish_examples(examples, self._cfg)
    batch["source_image"], batch["target_image"] = images[0], images[1]
    fields = ("video_index", "source_frame", "target_frame", SKIPPED_KEY)
    # One [4, B] array (one numpy call, not four); each row is contiguous.
    table = np.array([[e[key] for e in examples] for key in fields], np.int32)
    batch.update(zip(fields, table))
    batch[COUNTS_KEY] = counts
    return batch
