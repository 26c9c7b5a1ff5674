"""Byte-range reads inside the entries of an uncompressed ArrayRecord file, without reading them.

`ArrayRecordReader` can only return whole entries, and it hashes every byte it returns; a frame-pair
reader needs ~1 KiB of header and 2 of the 24 frames of a video entry. ArrayRecord files written
`uncompressed` (as `video_record.write_array_record` does) store each entry's bytes verbatim, so
this module locates them and reads any byte range of an entry with one `os.pread`.

The layout used (Riegeli file format + ArrayRecord's `layout.proto`, both public specs):
  * the file is a sequence of 64 KiB blocks; each block starts with a 24-byte block header, so a
    byte stream that crosses a block boundary is interrupted there by 24 bytes (`_Blocks`);
  * a chunk = a 40-byte chunk header (hashes, data size, chunk type byte, 7-byte record count,
    decoded size), then its data; a simple chunk (type "r") holds: the compression type byte
    (0 = none), a varint length of the sizes block, the sizes block (one varint per record), then
    the records' bytes back to back;
  * ArrayRecord ends with a postscript chunk in the last block (`RiegeliPostscript` proto, field 1
    = footer offset) and a footer chunk: one `RiegeliFooterMetadata` record (field 1 =
    `ArrayRecordMetadata`: 2 = num_chunks, 3 = num_records) then one `ArrayRecordFooter` per chunk
    (1 = chunk_offset, 3 = num_records).

Anything else (compressed or transposed chunks, a file not ending on a block boundary, offsets out
of range) raises `UnsupportedLayout`, and callers fall back to `ArrayRecordReader`. This module
checks structure only; the integrity of the bytes read is the caller's job (the video records carry
CRC32s of their header and of every frame, see `video_record`).
"""
from __future__ import annotations

import os
from typing import Any

BLOCK_SIZE = 1 << 16
BLOCK_HEADER_SIZE = 24
CHUNK_HEADER_SIZE = 40
_SIMPLE_CHUNK = ord("r")
_NO_COMPRESSION = 0
# Longest chunk prefix read to find the first record: compression byte + 2 varints of <= 10 bytes.
_MAX_PREFIX = CHUNK_HEADER_SIZE + 1 + 10 + 10


class UnsupportedLayout(ValueError):
  """The file is not an uncompressed, simple-chunk ArrayRecord file this module can read."""


def _varint(data, pos: int) -> tuple[int, int]:
  """Decodes a little-endian base-128 varint at `pos`; returns (value, next position)."""
  value = shift = 0
  while True:
    if pos >= len(data) or shift > 63:
      raise UnsupportedLayout("Truncated or overlong varint.")
    byte = data[pos]
    value |= (byte & 0x7F) << shift
    pos += 1
    if byte < 0x80:
      return value, pos
    shift += 7


def _proto_fields(data) -> dict[int, Any]:
  """The varint (wire type 0) and bytes (type 2) fields of a serialised proto; last one wins."""
  fields, pos = {}, 0
  while pos < len(data):
    key, pos = _varint(data, pos)
    number, wire = key >> 3, key & 7
    if wire == 0:
      fields[number], pos = _varint(data, pos)
    elif wire == 2:
      size, pos = _varint(data, pos)
      if pos + size > len(data):
        raise UnsupportedLayout("Truncated proto field.")
      fields[number], pos = bytes(data[pos:pos + size]), pos + size
    elif wire in (1, 5):
      pos += 8 if wire == 1 else 4
    else:
      raise UnsupportedLayout(f"Unexpected proto wire type {wire}.")
  return fields


class _Blocks:
  """Maps Riegeli's data positions (block headers left out) to file positions and reads them."""

  _USABLE = BLOCK_SIZE - BLOCK_HEADER_SIZE

  @classmethod
  def data_position(cls, file_position: int) -> int:
    """The data position of the first data byte at or after `file_position`."""
    block, within = divmod(file_position, BLOCK_SIZE)
    return block * cls._USABLE + max(within - BLOCK_HEADER_SIZE, 0)

  @classmethod
  def file_position(cls, data_position: int) -> int:
    block, within = divmod(data_position, cls._USABLE)
    return block * BLOCK_SIZE + BLOCK_HEADER_SIZE + within

  @classmethod
  def read(cls, fd: int, file_size: int, start: int, size: int) -> bytes:
    """`size` data bytes from data position `start`: one pread, block headers cut out."""
    if size <= 0:
      return b""
    first = cls.file_position(start)
    last = cls.file_position(start + size - 1)
    if last >= file_size:
      raise UnsupportedLayout(f"Read past the end of the file ({last} >= {file_size}).")
    raw = os.pread(fd, last + 1 - first, first)
    if len(raw) != last + 1 - first:
      raise UnsupportedLayout("Short read (file truncated while open?).")
    if last - first + 1 == size:  # No block boundary inside: the common case for small reads.
      return raw
    view, parts, pos = memoryview(raw), [], 0
    while pos < len(raw):
      boundary = BLOCK_SIZE - (first + pos) % BLOCK_SIZE  # Bytes left in this block.
      parts.append(view[pos:pos + boundary])
      pos += boundary + BLOCK_HEADER_SIZE
    return b"".join(parts)


class RecordFile:
  """Random byte-range access to the entries of one local, uncompressed ArrayRecord file.

  Opening reads the postscript and the footer (raises `UnsupportedLayout` if the file is not of
  the supported kind). The file descriptor is opened lazily and is not pickled, so a RecordFile
  can be shipped to grain worker processes.

  Args:
    path: local file path.
  """

  def __init__(self, path: str):
    self._path = os.fspath(path)
    self._fd = None
    self._size = os.path.getsize(self._path)
    try:
      self._chunk_offsets, counts = self._read_footer()  # File offset of each chunk.
    except UnsupportedLayout:
      raise
    except (IndexError, ValueError, OverflowError) as e:  # Garbage where a footer should be.
      raise UnsupportedLayout(f"Cannot parse the ArrayRecord footer of {path}: {e!r}") from e
    if any(c != 1 for c in counts):
      # One entry per chunk (group_size:1) is what our writer produces; more is legal ArrayRecord
      # but then a read would pay for parsing sizes of other entries: not worth supporting.
      raise UnsupportedLayout("Chunks holding more than one record (group_size > 1).")
    self._entries: dict[int, tuple[int, int]] = {}  # entry -> (data position, size), lazily.

  def __getstate__(self):
    return dict(self.__dict__, _fd=None)

  def __del__(self):
    if getattr(self, "_fd", None) is not None:
      os.close(self._fd)

  @property
  def path(self) -> str:
    return self._path

  def __len__(self) -> int:
    return len(self._chunk_offsets)

  def _file(self) -> int:
    if self._fd is None:
      self._fd = os.open(self._path, os.O_RDONLY)
    return self._fd

  def _read(self, start: int, size: int) -> bytes:
    return _Blocks.read(self._file(), self._size, start, size)

  def _chunk(self, file_offset: int, max_data: int):
    """(chunk header fields, first `max_data` data bytes, data position of the data)."""
    if file_offset < 0 or file_offset >= self._size:
      raise UnsupportedLayout(f"Chunk offset {file_offset} outside the file.")
    start = _Blocks.data_position(file_offset)
    available = _Blocks.data_position(self._size) - start - CHUNK_HEADER_SIZE
    raw = self._read(start, CHUNK_HEADER_SIZE + max(0, min(max_data, available)))
    data_size = int.from_bytes(raw[8:16], "little")
    chunk_type = raw[24]
    num_records = int.from_bytes(raw[25:32], "little")
    if chunk_type != _SIMPLE_CHUNK:
      raise UnsupportedLayout(f"Chunk type {chunk_type!r} at {file_offset} is not a simple chunk.")
    if data_size > available:
      raise UnsupportedLayout(f"Chunk at {file_offset} runs past the end of the file.")
    return data_size, num_records, raw[CHUNK_HEADER_SIZE:], start + CHUNK_HEADER_SIZE

  def _records(self, file_offset: int) -> list[bytes]:
    """All records of a (small) uncompressed simple chunk: the postscript and the footer."""
    data_size, num_records, _, data_start = self._chunk(file_offset, 0)
    data = self._read(data_start, data_size)
    if not data or data[0] != _NO_COMPRESSION:
      raise UnsupportedLayout("Compressed footer (the file was not written uncompressed).")
    sizes_len, pos = _varint(data, 1)
    sizes, end = [], pos + sizes_len
    while pos < end:
      size, pos = _varint(data, pos)
      sizes.append(size)
    if len(sizes) != num_records or end + sum(sizes) != data_size:
      raise UnsupportedLayout("Chunk sizes do not add up.")
    records = []
    for size in sizes:
      records.append(data[end:end + size])
      end += size
    return records

  def _read_footer(self) -> tuple[list[int], list[int]]:
    if self._size < BLOCK_SIZE or self._size % BLOCK_SIZE:
      raise UnsupportedLayout(f"File size {self._size} is not a whole number of 64 KiB blocks.")
    postscripts = {_proto_fields(r).get(1) for r in self._records(self._size - BLOCK_SIZE)}
    if len(postscripts) != 1 or None in postscripts:
      raise UnsupportedLayout("Postscript copies disagree or lack the footer offset.")
    footer = self._records(postscripts.pop())
    if not footer:
      raise UnsupportedLayout("Empty footer.")
    metadata = _proto_fields(_proto_fields(footer[0]).get(1, b""))
    entries = [_proto_fields(r) for r in footer[1:]]
    if metadata.get(2, 0) != len(entries) or any(1 not in e for e in entries):
      raise UnsupportedLayout("Footer chunk count disagrees with its metadata.")
    counts = [e.get(3, 0) for e in entries]
    if metadata.get(3, 0) != sum(counts):
      raise UnsupportedLayout("Footer record count disagrees with its metadata.")
    return [e[1] for e in entries], counts

  def entry(self, index: int) -> tuple[int, int]:
    """(data position, size) of entry `index`; raises UnsupportedLayout for compressed chunks."""
    located = self._entries.get(index)
    if located is None:
      if not 0 <= index < len(self):
        raise IndexError(f"Entry {index} of a {len(self)}-entry file.")
      data_size, num_records, prefix, data_start = self._chunk(
          self._chunk_offsets[index], _MAX_PREFIX - CHUNK_HEADER_SIZE)
      if num_records != 1 or not prefix or prefix[0] != _NO_COMPRESSION:
        raise UnsupportedLayout(f"Chunk of entry {index} is compressed or holds "
                                f"{num_records} records.")
      sizes_len, pos = _varint(prefix, 1)
      size, sizes_end = _varint(prefix, pos)
      if sizes_end != pos + sizes_len or sizes_end + size != data_size:
        raise UnsupportedLayout(f"Chunk of entry {index}: sizes do not add up.")
      located = self._entries[index] = (data_start + sizes_end, size)
    return located

  def read_data(self, position: int, size: int) -> bytes:
    """`size` bytes from data position `position` (block headers left out; see `entry`)."""
    return _Blocks.read(self._file(), self._size, position, size)

  def read(self, index: int, start: int = 0, stop: int | None = None) -> bytes:
    """Bytes [start, stop) of entry `index` (stop None = the end; clipped to the entry)."""
    position, size = self.entry(index)
    stop = size if stop is None else min(stop, size)
    start = min(max(start, 0), stop)
    return self._read(position + start, stop - start)
