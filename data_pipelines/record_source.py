"""Random access to the videos of ArrayRecord files of video records, for the batch map.

Every record is read through ArrayRecord's random access (`video_record.VideoRecordReader`): a
frame pair reads exactly 3 records (the video record and its 2 frames). Corrupt records are
logged here (the first times) and raised as `video_record.CorruptRecordError`, which
`batch_map.FramePairBatchMap` skips and counts.
"""
from __future__ import annotations

from typing import Any

from absl import logging

from data_pipelines import video_record


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
