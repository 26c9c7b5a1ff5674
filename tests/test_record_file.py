"""data_pipelines.record_file: byte ranges of ArrayRecord entries equal what ArrayRecordReader
returns, across 64 KiB block boundaries; unsupported layouts are refused, never misread."""
import os
import pickle

import numpy as np
import pytest

from data_pipelines import record_file


def _write(path, payloads, options="group_size:1,uncompressed"):
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  writer = array_record_module.ArrayRecordWriter(str(path), options)
  for payload in payloads:
    writer.write(payload)
  writer.close()
  return str(path)


def _payloads(seed=0):
  rng = np.random.default_rng(seed)
  # Sizes from 1 byte to > 2 blocks, so entries start, end and span anywhere in the 64 KiB blocks.
  sizes = [1, 17, 40_000, 65_536, 70_000, 3, 150_000, 65_000, 12, 131_072 + 5]
  return [rng.bytes(size) for size in sizes]


def _read_all(path):
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  reader = array_record_module.ArrayRecordReader(path)
  records = reader.read_all()
  reader.close()
  return records


def test_entries_and_ranges_match_array_record_reader(tmp_path):
  payloads = _payloads()
  path = _write(tmp_path / "a.array_record", payloads)
  expected = _read_all(path)
  assert expected == payloads
  file = record_file.RecordFile(path)
  assert len(file) == len(payloads)
  rng = np.random.default_rng(1)
  for index, payload in enumerate(payloads):
    assert file.read(index) == payload
    assert file.entry(index)[1] == len(payload)
    for _ in range(20):
      start, stop = sorted(rng.integers(0, len(payload) + 1, 2).tolist())
      assert file.read(index, start, stop) == payload[start:stop]
    position, size = file.entry(index)
    assert file.read_data(position, size) == payload
  # Block boundaries really are crossed (otherwise this test would prove little).
  positions = [file.entry(i)[0] for i in range(len(payloads))]
  assert any(p // (record_file.BLOCK_SIZE - record_file.BLOCK_HEADER_SIZE)
             != (p + s - 1) // (record_file.BLOCK_SIZE - record_file.BLOCK_HEADER_SIZE)
             for p, s in zip(positions, map(len, payloads)))
  with pytest.raises(IndexError):
    file.entry(len(payloads))


def test_pickle_reopens_the_file(tmp_path):
  payloads = _payloads(2)
  file = record_file.RecordFile(_write(tmp_path / "a.array_record", payloads))
  assert file.read(3, 5, 50) == payloads[3][5:50]
  copy = pickle.loads(pickle.dumps(file))
  assert copy.read(6) == payloads[6]


def test_empty_file(tmp_path):
  assert len(record_file.RecordFile(_write(tmp_path / "e.array_record", []))) == 0


@pytest.mark.parametrize("options", ["group_size:1", "group_size:1,zstd:1",
                                     "group_size:2,uncompressed"])
def test_unsupported_layouts_are_refused(tmp_path, options):
  path = _write(tmp_path / "c.array_record", _payloads(3)[:4], options)
  with pytest.raises(record_file.UnsupportedLayout):
    record_file.RecordFile(path)


def test_truncated_or_foreign_files_are_refused(tmp_path):
  path = _write(tmp_path / "t.array_record", _payloads(4))
  data = open(path, "rb").read()
  truncated = tmp_path / "truncated.array_record"
  truncated.write_bytes(data[:-100])
  with pytest.raises(record_file.UnsupportedLayout):
    record_file.RecordFile(str(truncated))
  foreign = tmp_path / "foreign.bin"
  foreign.write_bytes(os.urandom(2 * record_file.BLOCK_SIZE))
  with pytest.raises(record_file.UnsupportedLayout):
    record_file.RecordFile(str(foreign))
