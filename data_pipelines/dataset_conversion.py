"""What a dataset conversion does, independent of where it runs: a plan of output shards.

A `ConversionPlan` lists the output shards (ArrayRecord files of video records) and, for each, the
inputs whose videos it holds, in order; `convert_input(input)` yields the input's videos as
`(name, record)` pairs, or `(name, exception)` for a video that failed to convert. The same plan
runs

  * in one process (`run_local`, what each reader's CLI does; the first failure stops it), or
  * on Apache Beam (`data_pipelines.beam_convert`: inputs converted in parallel, shards written
    in parallel, failures counted and named instead of fatal),

so both produce the same records (tests/test_beam_convert.py compares them record by record).
Plans are picklable (module-level functions, `functools.partial`, frozen dataclasses), as Beam's
workers need.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterator, Sequence

from data_pipelines import video_record

Video = tuple[str, Any]  # (name, record dict) or (name, exception)


@dataclasses.dataclass(frozen=True)
class Shard:
  """One output file and the inputs whose videos it holds, in order."""
  path: str
  inputs: tuple


@dataclasses.dataclass(frozen=True)
class ConversionPlan:
  """Output shards plus the per-input conversion.

  Attributes:
    shards: the output files, each with its inputs.
    convert_input: input -> iterator of (video name, record) or (video name, exception).
    describe_input: input -> a short name for messages (default: str).
    options: ArrayRecord writer options of the shards (`video_record.write_array_record`).
  """
  shards: tuple[Shard, ...]
  convert_input: Callable[[Any], Iterator[Video]]
  describe_input: Callable[[Any], str] = str
  options: str = video_record.DEFAULT_OPTIONS


def chunked_shards(inputs: Sequence[Any], per_shard: int, path_of: Callable[[int, int], str]
                   ) -> tuple[Shard, ...]:
  """Consecutive chunks of `per_shard` inputs; path_of(shard index, shard count) names them."""
  if per_shard < 1:
    raise ValueError(f"Need at least one input per shard, got {per_shard}.")
  chunks = [tuple(inputs[i:i + per_shard]) for i in range(0, len(inputs), per_shard)]
  return tuple(Shard(path_of(n, len(chunks)), chunk) for n, chunk in enumerate(chunks))


def records_or_raise(plan: ConversionPlan, inputs: Sequence[Any]) -> Iterator[dict[str, Any]]:
  """The records of `inputs` in order; the first failed video raises, naming it."""
  for item in inputs:
    for name, result in plan.convert_input(item):
      if isinstance(result, BaseException):
        raise RuntimeError(f"Converting {name} (input {plan.describe_input(item)}) failed: "
                           f"{result}") from result
      yield result


def run_local(plan: ConversionPlan) -> dict[str, int]:
  """Runs the plan in this process, shard after shard; returns {path: videos written}."""
  written = {}
  for shard in plan.shards:
    os.makedirs(os.path.dirname(os.path.abspath(shard.path)), exist_ok=True)
    written[shard.path] = video_record.write_array_record(
        shard.path, records_or_raise(plan, shard.inputs), options=plan.options)
  return written


def guarded(name: str, fn: Callable[[], dict[str, Any]]) -> Video:
  """(name, fn()) or (name, the exception fn raised): one video's conversion as a result."""
  try:
    return name, fn()
  except Exception as e:  # noqa: BLE001 - a failed video is reported, not fatal.
    return name, e
