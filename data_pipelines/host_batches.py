"""Which videos each host batch holds: the per-host block of videos and its epoch orders.

Each process reads its own contiguous block of len // process_count videos (as grain's
ShardOptions(drop_remainder=True)), so every host runs the same number of steps; batch k of a
host holds positions [kB, (k+1)B) of its sequence of epochs, each epoch in its own random
order (`VideoOrder`), B = global_batch_size / process_count (`host_batch_size`).
"""
from __future__ import annotations

import sys
import threading

import numpy as np


def process_layout(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  """(process index, process count): the arguments, or JAX's where they are None."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return int(process_index), int(process_count)


def host_batch_size(global_batch_size: int, process_count: int) -> int:
  """B: the per-host share of a global batch (which must divide evenly)."""
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(f"Global batch size {global_batch_size} must be a positive multiple of the "
                     f"process count {process_count}.")
  return global_batch_size // process_count



def host_block(num_videos: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, stop) of the videos process `process_index` reads: contiguous blocks of one size."""
  per_process = num_videos // process_count
  if per_process == 0:
    raise ValueError(f"{num_videos} videos cannot be shared by {process_count} processes.")
  return process_index * per_process, (process_index + 1) * per_process


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
