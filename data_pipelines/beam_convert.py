"""Dataset conversion on Apache Beam: enumerate inputs, convert each in parallel, write shards.

Each reader (MOVi-E, Objectron, Waymo, synthetic, your own videos) defines a
`dataset_conversion.ConversionPlan` (output shards and their inputs); `build` turns it into one
Beam pipeline:

    Create(inputs, tagged with shard and position) -> Reshuffle (spread over workers)
      -> Convert (ParDo: the input's videos; a failure goes to the "failures" output and the
                  `failed_videos` / `failed_inputs` counters, never stops the job)
      -> GroupByKey(shard) -> Write (one ArrayRecord file per shard, videos in input order,
                  written atomically by `video_record.write_array_record`)
    failures -> `<out_dir>/conversion_failures-*.txt` (one line per failed input or video)

The records are the ones the single-process CLI writes for the same inputs (same plan, same
order; tests/test_beam_convert.py checks it record by record). Beam needs the `beam` extra:
`pip install -e .[beam]`.

Runs on one machine with the DirectRunner in several processes, or on any runner by pipeline
options (any argument this CLI does not know is a Beam pipeline option), e.g.

  python -m data_pipelines.beam_convert synthetic --out_dir out --num_videos 64 \
      --direct_num_workers 8 --direct_running_mode multi_processing
  python -m data_pipelines.beam_convert waymo --input_dir gs://bucket/waymo/training \
      --out_dir gs://bucket/records --runner DataflowRunner --project P --region R \
      --temp_location gs://bucket/tmp --requirements_file requirements.txt
  python -m data_pipelines.beam_convert objectron --input 'shards/*' --out_dir out \
      --runner FlinkRunner --flink_master host:8081
  python -m data_pipelines.beam_convert videos --input my_videos/ --out_dir out

(Remote output paths need an ArrayRecord build whose file layer reaches them; the pip wheel
writes local files. Inputs are read by each reader's library: TFDS, TensorFlow, pyarrow.)
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import Sequence

from data_pipelines import dataset_conversion

_NAMESPACE = "neural_assets.conversion"


def _beam():
  try:
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("Apache Beam is not installed: pip install -e '.[beam]'.") from e
  return beam


class _ConvertFn:
  """(shard, position, input) -> (shard, (position, video index, record)) + failures."""

  def __init__(self, plan: dataset_conversion.ConversionPlan):
    self._plan = plan

  def __call__(self, element):
    beam = _beam()
    metrics = beam.metrics.Metrics
    shard, position, item = element
    described = self._plan.describe_input(item)
    index = 0
    try:
      for index, (name, result) in enumerate(self._plan.convert_input(item)):
        if isinstance(result, BaseException):
          metrics.counter(_NAMESPACE, "failed_videos").inc()
          yield beam.pvalue.TaggedOutput(
              "failures", f"video\t{name}\t(input {described})\t{type(result).__name__}: "
                          f"{result}")
          continue
        metrics.counter(_NAMESPACE, "converted_videos").inc()
        yield shard, (position, index, result)
    except Exception as e:  # noqa: BLE001 - a failed input is reported, not fatal.
      metrics.counter(_NAMESPACE, "failed_inputs").inc()
      yield beam.pvalue.TaggedOutput(
          "failures", f"input\t{described}\t(after {index} videos)\t{type(e).__name__}: {e}")
    metrics.counter(_NAMESPACE, "inputs").inc()


class _WriteShardFn:
  """(shard, [(position, index, record)]) -> (path, videos written)."""

  def __init__(self, plan: dataset_conversion.ConversionPlan):
    self._plan = plan

  def __call__(self, element):
    beam = _beam()
    shard, videos = element
    path = self._plan.shards[shard].path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ordered = [record for _, _, record in sorted(videos, key=lambda v: v[:2])]
    from data_pipelines import video_record  # pylint: disable=g-import-not-at-top
    count = video_record.write_array_record(path, ordered, options=self._plan.options)
    beam.metrics.Metrics.counter(_NAMESPACE, "written_shards").inc()
    yield path, count


def build(pipeline, plan: dataset_conversion.ConversionPlan,
          failures_prefix: str | None = None, label: str = ""):
  """Adds the conversion to a Beam pipeline; returns (written, failures) PCollections:
  (path, count) per shard, and one text line per failed input or video. `label` prefixes the
  step names (several conversions in one pipeline)."""
  beam = _beam()
  elements = [(s, p, item) for s, shard in enumerate(plan.shards)
              for p, item in enumerate(shard.inputs)]
  converted = (pipeline
               | f"{label}Inputs" >> beam.Create(elements)
               | f"{label}Spread" >> beam.Reshuffle()
               | f"{label}Convert" >> beam.FlatMap(_ConvertFn(plan)).with_outputs(
                   "failures", main="videos"))
  written = (converted.videos
             | f"{label}ByShard" >> beam.GroupByKey()
             | f"{label}Write" >> beam.FlatMap(_WriteShardFn(plan)))
  failures = converted.failures
  if failures_prefix:
    _ = failures | f"{label}WriteFailures" >> beam.io.WriteToText(failures_prefix,
                                                                  file_name_suffix=".txt")
  return written, failures


def run(plan: dataset_conversion.ConversionPlan, pipeline_args: Sequence[str] = (),
        failures_prefix: str | None = None) -> dict[str, int]:
  """Runs the plan on Beam (runner and options from `pipeline_args`); returns the counters
  (inputs, converted_videos, failed_videos, failed_inputs, written_shards)."""
  beam = _beam()
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  options = PipelineOptions(list(pipeline_args))
  pipeline = beam.Pipeline(options=options)
  build(pipeline, plan, failures_prefix)
  result = pipeline.run()
  result.wait_until_finish()
  counters = {name: 0 for name in ("inputs", "converted_videos", "failed_videos",
                                   "failed_inputs", "written_shards")}
  counters.update(counter_totals(result))
  return counters


def counter_totals(result) -> dict[str, int]:
  """The conversion counters of a finished pipeline, summed over steps."""
  beam = _beam()
  totals = {}
  query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(_NAMESPACE))
  for counter in query["counters"]:
    name = counter.key.metric.name
    totals[name] = totals.get(name, 0) + (counter.committed or counter.attempted or 0)
  return totals


# ------------------------------------------------------------------------------------------------
# CLI.


def _plan(args) -> dataset_conversion.ConversionPlan:
  # pylint: disable=g-import-not-at-top
  if args.dataset == "synthetic":
    from data_pipelines import synthetic
    config = synthetic.SceneConfig(height=args.resolution, width=args.resolution,
                                   num_frames=args.num_frames)
    return synthetic.conversion_plan(args.out_dir, args.num_videos, config, seed=args.seed,
                                     split=args.split, records_per_shard=args.records_per_shard,
                                     image_format=args.image_format, options=args.options)
  if args.dataset == "movi_e":
    from data_pipelines import movi_e
    return movi_e.conversion_plan(args.tfds_dir, args.out_dir, args.split, args.config,
                                  args.records_per_shard, args.max_videos, args.image_format,
                                  options=args.options)
  if args.dataset == "objectron":
    from data_pipelines import objectron
    paths = sorted(p for pattern in args.input for p in (glob.glob(pattern) or [pattern]))
    return objectron.conversion_plan(paths, args.out_dir, objectron.ObjectronConfig(),
                                     options=args.options)
  if args.dataset == "videos":
    from data_pipelines import videos
    return videos.conversion_plan(args.input, args.out_dir, split=args.split,
                                  videos_per_shard=args.videos_per_shard, options=args.options)
  from data_pipelines import waymo
  return waymo.conversion_plan(args.input_dir, args.out_dir, waymo.WaymoConfig(camera=args.camera),
                               videos_per_shard=args.videos_per_shard, split=args.split,
                               options=args.options)


def parser() -> argparse.ArgumentParser:
  out = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      epilog="Arguments not listed here are Apache Beam pipeline options (--runner, "
             "--direct_num_workers, --direct_running_mode, --project, ...).")
  datasets = out.add_subparsers(dest="dataset", required=True)
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--out_dir", required=True)
  common.add_argument("--options", default="group_size:1,uncompressed",
                      help="ArrayRecord writer options (group_size must be 1).")
  synthetic = datasets.add_parser("synthetic", parents=[common])
  synthetic.add_argument("--num_videos", type=int, default=16)
  synthetic.add_argument("--resolution", type=int, default=128)
  synthetic.add_argument("--num_frames", type=int, default=8)
  synthetic.add_argument("--seed", type=int, default=0)
  synthetic.add_argument("--split", default="train")
  synthetic.add_argument("--records_per_shard", type=int, default=256)
  synthetic.add_argument("--image_format", default="png", choices=("png", "jpeg"))
  movi = datasets.add_parser("movi_e", parents=[common])
  movi.add_argument("--tfds_dir", required=True)
  movi.add_argument("--split", default="train")
  movi.add_argument("--config", default="256x256")
  movi.add_argument("--records_per_shard", type=int, default=256)
  movi.add_argument("--max_videos", type=int, default=None)
  movi.add_argument("--image_format", default="png", choices=("png", "jpeg"))
  objectron = datasets.add_parser("objectron", parents=[common])
  objectron.add_argument("--input", nargs="+", required=True)
  waymo = datasets.add_parser("waymo", parents=[common])
  waymo.add_argument("--input_dir", required=True)
  waymo.add_argument("--split", default="train")
  waymo.add_argument("--camera", default="FRONT",
                     choices=("FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"))
  waymo.add_argument("--videos_per_shard", type=int, default=16)
  own = datasets.add_parser("videos", parents=[common],
                            help="Your own videos: folders of frames + annotations.json "
                                 "(data_pipelines/videos.py).")
  own.add_argument("--input", required=True, help="Directory with one subdirectory per video.")
  own.add_argument("--split", default="train")
  own.add_argument("--videos_per_shard", type=int, default=16)  # = videos.VIDEOS_PER_SHARD
  return out


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
  args, pipeline_args = parser().parse_known_args(argv)
  plan = _plan(args)
  start = time.time()
  counters = run(plan, pipeline_args,
                 failures_prefix=os.path.join(args.out_dir, "conversion_failures"))
  print(f"{args.dataset}: {counters} in {time.time() - start:.1f} s "
        f"({len(plan.shards)} shards planned); failures, if any, in "
        f"{os.path.join(args.out_dir, 'conversion_failures-*.txt')}", file=sys.stderr)
  return counters


if __name__ == "__main__":
  main()
