"""Throughput of the frame-pair pipeline against the bare image-decode bound, per CPU core.

Generates its own input: procedural MOVi-E-like videos from `data_pipelines.synthetic` (24 frames,
256x256), written to ArrayRecord in two variants:
  * "rendered": the renderer's frames as they are (flat shading: ~11-15 KiB PNGs, cheap to decode);
  * "noisy": the same frames with Gaussian pixel noise (std `--noise_std`), which brings the PNGs
    to ~100-130 KiB, the size of textured / photographic frames such as the real MOVi-E renders.
The file is presented to grain as >= `--min_records` records (symlinks to it; default 9750, the
size of MOVi-E's training split), so that the reads and the shuffled order span a dataset of
that size (file handles, one permutation of 9750 videos per epoch).

For each variant, `--repeats` runs, each:
  1. the full pipeline (`pipeline.make_train_iterator`, shuffle on, worker_count=0, no read-ahead
     threads, so everything runs on one core): read the record's header, sample a pair, read +
     decode + resize its two frames, project boxes, filter, pad, batch. Batches are dropped as a
     training loop drops them (a benchmark keeping them all would put every batch on fresh
     memory);
  2. the decode bound: decoding exactly the frames the pipeline used (the two frames of each pair,
     one when source == target) from memory with the pipeline's decoder called bare: libpng
     (`imagecodecs.png_decode(data)`, nothing else: no header parse, no wrapper) for PNG,
     Pillow with the pipeline's draft for JPEG, into a fresh array.
     Pipeline and bound alternate in chunks of `--chunk_batches` batches so that both see the
     same machine load. For reference, Pillow's decode of the same frames is timed too (the
     decoder the pipeline used before libpng; not the bound);
  3. a per-pair cost breakdown of the pipeline's stages, timed separately on the same pairs.
The run with the median ratio is reported (all ratios are listed). Rates are pairs per
CPU-second of this process (= per core); wall-clock rates are listed for reference (noisy on a
shared machine), and so are minor page faults per pair. Results go to a JSON file.

Usage:
  python -m benchmarks.data_pipeline [--num_videos 6] [--num_pairs 768] [--resolution 256]
      [--image_format png] [--batch_size 8] [--data_dir DIR]
      [--out benchmarks/results/data_pipeline.json]
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import tempfile
import time

import imagecodecs
import ml_collections
import numpy as np
from PIL import Image

from data_pipelines import data_config
from data_pipelines import frame_pairs
from data_pipelines import image_decoding
from data_pipelines import pipeline
from data_pipelines import record_source
from data_pipelines import synthetic
from data_pipelines import video_record


def _format_tag(options: str) -> str:
  """Names the record encoding and writer options: a cached file of another format is stale."""
  return f"{video_record.VIDEO_MAGIC.decode().lower()}-{options.replace(':', '').replace(',', '_')}"


def _encode(pixels: np.ndarray, image_format: str) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format=image_format.upper())
  return buf.getvalue()


def _add_noise(record, std: float, image_format: str, rng: np.random.Generator):
  frames = []
  for data in record["frames"]:
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    noisy = np.clip(pixels + rng.normal(0.0, std, pixels.shape), 0, 255).astype(np.uint8)
    frames.append(_encode(noisy, image_format))
  return dict(record, frames=frames)


def _make_data(data_dir: str, args) -> dict[str, str]:
  """Writes (once, cached) the two variants; returns {variant: directory of symlinks}."""
  stem = (f"{args.resolution}-{args.image_format}-{args.num_videos}x{args.num_frames}-"
          f"{_format_tag(args.options)}")
  paths = {"rendered": os.path.join(data_dir, f"rendered-{stem}.array_record"),
           "noisy": os.path.join(data_dir, f"noisy{args.noise_std:g}-{stem}.array_record")}
  if not all(os.path.exists(p) for p in paths.values()):
    config = synthetic.SceneConfig(height=args.resolution, width=args.resolution,
                                   num_frames=args.num_frames)
    start = time.time()
    records = list(synthetic.generate_records(0, args.num_videos, config, args.image_format))
    rng = np.random.default_rng(0)
    variants = {"rendered": records,
                "noisy": [_add_noise(r, args.noise_std, args.image_format, rng) for r in records]}
    for name, path in paths.items():
      # Atomic: appears when complete.
      video_record.write_array_record(path, variants[name], options=args.options)
    print(f"generated {args.num_videos} videos in {time.time() - start:.1f} s in {data_dir}")
  links = {}
  copies = -(-args.min_records // args.num_videos)
  for name, path in paths.items():
    link_dir = os.path.join(data_dir, f"links-{os.path.basename(path)}-{copies}")
    os.makedirs(link_dir, exist_ok=True)
    for i in range(copies):
      link = os.path.join(link_dir, f"shard-{i:05d}.array_record")
      if not os.path.lexists(link):
        os.symlink(path, link)
    links[name] = link_dir
  return links


def _pillow_decode(data: bytes, jpeg_draft_size=None) -> np.ndarray:
  """Pillow's decode of a frame to an RGB array, JPEG draft as the pipeline."""
  image = image_decoding.open_image(data)
  if jpeg_draft_size is not None and image.format == "JPEG":
    image.draft("RGB", jpeg_draft_size)
  return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


def _bare_decode(data: bytes, jpeg_draft_size=None) -> np.ndarray:
  """The pipeline's decoder, bare and without the resize: libpng alone for PNG (into a fresh
  array), Pillow with the pipeline's draft for JPEG."""
  if bytes(data[:4]) == b"\x89PNG":
    return imagecodecs.png_decode(data)
  return _pillow_decode(data, jpeg_draft_size)


def _cpu(fn, *args):
  """(fn(*args), CPU seconds of this process it took)."""
  start = time.process_time()
  out = fn(*args)
  return out, time.process_time() - start


def _faults() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class _Meter:
  """Accumulates CPU seconds, wall seconds and minor page faults of timed blocks."""

  def __init__(self):
    self.cpu = self.wall = 0.0
    self.faults = 0

  def __enter__(self):
    self._start = (time.process_time(), time.perf_counter(), _faults())
    return self

  def __exit__(self, *exc):
    cpu, wall, faults = self._start
    self.cpu += time.process_time() - cpu
    self.wall += time.perf_counter() - wall
    self.faults += _faults() - faults


def measure(link_dir: str, args) -> dict:
  data = data_config.default_data_config()
  data.update(dict(data_dir=link_dir, train_files="shard-*.array_record",
                   resolution=(args.resolution, args.resolution),
                   global_batch_size=args.batch_size, worker_count=0, read_threads=0, seed=0,
                   shuffle=True))
  config = ml_collections.ConfigDict(dict(
      data=data, model=dict(conditioning=dict(max_objects=args.max_objects))))
  num_batches = max(1, args.num_pairs // args.batch_size)
  pair_cfg = frame_pairs.FramePairConfig.from_config(data, args.max_objects)
  source = record_source.VideoRecordSource(data_config.resolve_files(link_dir,
                                                                   "shard-*.array_record"))

  iterator = pipeline.make_train_iterator(config, process_index=0, process_count=1)
  for _ in range(2):  # Warm-up: file opening, first reads, allocator.
    next(iterator)
  # The pipeline and the bound alternate in chunks of `chunk_batches` batches, so that both see
  # the same machine load. Batches are dropped as a training loop drops them (keeping them all
  # would make every batch land on fresh memory).
  pipe, bound, pillow = _Meter(), _Meter(), _Meter()
  used, draft, frame_size = [], None, None
  for start in range(0, num_batches, args.chunk_batches):
    chunk = []
    with pipe:
      for _ in range(min(args.chunk_batches, num_batches - start)):
        batch = next(iterator)
        chunk.append((batch["video_index"], batch["source_frame"], batch["target_frame"]))
        del batch
    pairs = [(int(v), int(s), int(t)) for b in chunk for v, s, t in zip(*b)]
    jobs = []  # The encoded frames the pipeline decoded, read outside the timed block.
    for v, s, t in pairs:
      record = source.read_record(v)
      jobs.extend(bytes(record["frames"][f]) for f in ((s,) if s == t else (s, t)))
    if frame_size is None:
      frame_size = image_decoding.image_size(jobs[0])
    if pair_cfg.jpeg_draft and draft is None:
      height, width = frame_size
      crop = frame_pairs.center_crop_box(height, width, args.resolution, args.resolution)
      draft = (math.ceil(args.resolution * width / crop[3]),
               math.ceil(args.resolution * height / crop[2]))
    # Reference only, before the bound so that the pipeline's next chunk follows the bound as
    # without it: Pillow's decode of the same frames (not the pipeline's path).
    with pillow:
      for frame in jobs:
        _pillow_decode(frame, draft)
    with bound:
      for frame in jobs:
        _bare_decode(frame, draft)
    used.extend(pairs)
  num = len(used)
  num_frames = sum(1 if s == t else 2 for _, s, t in used)

  # Stage breakdown on the same pairs, one video at a time as in the pipeline, each stage timed
  # on its own (CPU time); the object logic on the pipeline's batches.
  read_cpu = parse_cpu = frames_cpu = prepare_cpu = objects_cpu = 0.0
  frame_bytes, read_bytes, record_bytes = 0, 0, 0
  video_sizes = {}
  prepared = []
  slots = np.empty((2, args.resolution, args.resolution, 3), np.uint8)  # As the batch's slots.
  for v, s, t in used:
    head, cpu = _cpu(source.read_head, v)
    read_cpu += cpu
    record, cpu = _cpu(source.decode, v, head)
    parse_cpu += cpu
    frames, cpu = _cpu(frame_pairs.read_pair_frames, record, s, t)
    frames_cpu += cpu
    example, cpu = _cpu(frame_pairs.prepare_example, record, s, t, v, pair_cfg, slots, frames)
    prepare_cpu += cpu
    del example["source_image"], example["target_image"]
    prepared.append(example)
    if len(prepared) == args.batch_size:
      objects_cpu += _cpu(frame_pairs.finish_examples, prepared, pair_cfg)[1]
      prepared = []
    frame_bytes += sum(len(f) for f in frames[:1 if s == t else 2])
    if v not in video_sizes:  # The video record + all its frames' images.
      video_sizes[v] = len(head) + sum(len(f) for f in record["frames"])
    record_bytes += video_sizes[v]
    read_bytes += len(head) + sum(len(f) for f in frames[:1 if s == t else 2])

  def ms(seconds):
    return round(1e3 * seconds / num, 3)

  result = {
      "mean_encoded_frame_kib": round(frame_bytes / num_frames / 1024, 1),
      "mean_record_kib": round(record_bytes / num / 1024, 1),
      "mean_kib_read_per_pair": round(read_bytes / num / 1024, 1),
      "records_read_per_pair": 3,
      "num_pairs": num,
      "frames_decoded": num_frames,
      "pipeline_pairs_per_s_per_core": num / pipe.cpu,
      "decode_pairs_per_s_per_core": num / bound.cpu,
      "pillow_decode_pairs_per_s_per_core": num / pillow.cpu,
      "pipeline_pairs_per_s_wall": num / pipe.wall,
      "decode_pairs_per_s_wall": num / bound.wall,
      "minor_page_faults_per_pair": {"pipeline": round(pipe.faults / num, 1),
                                     "decode": round(bound.faults / num, 1)},
      "breakdown_cpu_ms_per_pair": {
          "pipeline_total": ms(pipe.cpu),
          "read_video_record (ArrayRecordReader)": ms(read_cpu),
          "parse_video_record (video_record.decode_video)": ms(parse_cpu),
          "read_frames (2 frame records + CRC32)": ms(frames_cpu),
          "frame_decode (bound)": ms(bound.cpu),
          "prepare_example (minus decode and frame reads)":
              ms(max(prepare_cpu - bound.cpu, 0.0)),
          "finish_examples (object logic, per batch)": ms(objects_cpu),
          "grain + batching (rest)": ms(max(pipe.cpu - read_cpu - parse_cpu - frames_cpu
                                            - prepare_cpu - objects_cpu, 0.0)),
      },
      "stats": iterator.stats,
  }
  result["ratio_per_core"] = result["pipeline_pairs_per_s_per_core"] / result[
      "decode_pairs_per_s_per_core"]
  result["ratio_wall"] = result["pipeline_pairs_per_s_wall"] / result["decode_pairs_per_s_wall"]
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_videos", type=int, default=6)
  parser.add_argument("--num_frames", type=int, default=24)
  parser.add_argument("--num_pairs", type=int, default=768)
  parser.add_argument("--resolution", type=int, default=256)
  parser.add_argument("--image_format", default="png", choices=("png", "jpeg"))
  parser.add_argument("--noise_std", type=float, default=3.0)
  parser.add_argument("--min_records", type=int, default=9750,
                      help="Records presented to grain (default: MOVi-E's training split).")
  parser.add_argument("--options", default=video_record.DEFAULT_OPTIONS,
                      help="ArrayRecord writer options of the benchmark's files, e.g. zstd:3.")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--max_objects", type=int, default=23)
  parser.add_argument("--repeats", type=int, default=3,
                      help="Runs per variant; the run with the median ratio is reported.")
  parser.add_argument("--chunk_batches", type=int, default=2,
                      help="Batches per pipeline chunk; pipeline and bound chunks alternate.")
  parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "na_bench_data"))
  parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "results", "data_pipeline.json"))
  args = parser.parse_args(argv)
  os.makedirs(args.data_dir, exist_ok=True)
  links = _make_data(args.data_dir, args)

  report = {
      "resolution": args.resolution,
      "image_format": args.image_format,
      "batch_size": args.batch_size,
      "max_objects": args.max_objects,
      "num_videos": args.num_videos,
      "num_frames": args.num_frames,
      "records_presented": -(-args.min_records // args.num_videos) * args.num_videos,
      "decode_bound": ("libpng alone: imagecodecs.png_decode(data)" if args.image_format == "png"
                       else "Pillow, with the pipeline's JPEG draft"),
      "record_format": _format_tag(args.options),
      "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus "
                 "(shared; per-core rates use this process's CPU time)",
      "load_average_before": os.getloadavg(),
      "variants": {},
  }
  for name, link_dir in links.items():
    runs = sorted((measure(link_dir, args) for _ in range(args.repeats)),
                  key=lambda r: r["ratio_per_core"])
    median = runs[len(runs) // 2]
    median["ratio_per_core_all_runs"] = [round(r["ratio_per_core"], 3) for r in runs]
    report["variants"][name] = {k: (round(v, 3) if isinstance(v, float) else v)
                                for k, v in median.items()}
    print(f"[{name}] frame pairs/s per core at {args.resolution}x{args.resolution} "
          f"({args.image_format}, {median['mean_encoded_frame_kib']:.0f} KiB/frame): pipeline "
          f"{median['pipeline_pairs_per_s_per_core']:.1f}, decode bound "
          f"{median['decode_pairs_per_s_per_core']:.1f} -> {100 * median['ratio_per_core']:.1f}% "
          f"of the bound (Pillow's decode alone: "
          f"{median['pillow_decode_pairs_per_s_per_core']:.1f}; median of {len(runs)} runs: "
          f"{median['ratio_per_core_all_runs']}; "
          f"wall: {median['pipeline_pairs_per_s_wall']:.1f} vs "
          f"{median['decode_pairs_per_s_wall']:.1f})")
    print("    ms/pair: " + ", ".join(f"{k} {v}" for k, v in
                                     median["breakdown_cpu_ms_per_pair"].items()))
  report["load_average_after"] = os.getloadavg()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {args.out} (load average before {report['load_average_before']}, after "
        f"{report['load_average_after']})")


if __name__ == "__main__":
  main()
