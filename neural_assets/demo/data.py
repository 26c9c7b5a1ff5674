"""Demo step 1: the synthetic train / eval splits (and the held-out scenes as .npz files)."""
from __future__ import annotations

import glob
import json
import os
import time
from typing import Any, Mapping, Optional, Sequence

from absl import logging
import ml_collections

# config.synthetic keys -> defaults when the config has no such section.
# `scene`: further `data_pipelines.synthetic.SceneConfig` fields (e.g. object speed, textures).
SYNTHETIC_DEFAULTS = dict(num_train_videos=256, num_eval_videos=16, num_frames=8, min_objects=3,
                          max_objects=6, train_seed=0, eval_seed=1, image_format="png",
                          records_per_shard=256, scene={})


def data_spec(config: ml_collections.ConfigDict, **overrides: Optional[int]) -> dict[str, Any]:
  """What to generate: `config.synthetic` (else SYNTHETIC_DEFAULTS), overridden by non-None
  keyword arguments; the resolution is the larger side of `config.data.resolution` (the
  pipeline resizes)."""
  section = config.synthetic.to_dict() if "synthetic" in config else {}
  unknown = set(section) - set(SYNTHETIC_DEFAULTS)
  if unknown:
    raise ValueError(f"Unknown config.synthetic keys {sorted(unknown)}; known: "
                     f"{sorted(SYNTHETIC_DEFAULTS)}.")
  spec = {**SYNTHETIC_DEFAULTS, **section}
  spec.update({k: v for k, v in overrides.items() if v is not None})
  spec["resolution"] = int(max(config.data.resolution))
  # JSON-normal form (tuples as lists), as spec.json stores it.
  spec["scene"] = json.loads(json.dumps(dict(spec["scene"])))
  for key in ("num_train_videos", "num_eval_videos", "num_frames"):
    if int(spec[key]) < 1:
      raise ValueError(f"Synthetic data: {key} must be >= 1, got {spec[key]}.")
  return spec


def ensure_data(data_dir: str, spec: Mapping[str, Any], num_workers: int = 1) -> float:
  """Generates the train and eval splits into `data_dir` unless a finished dataset with the same
  spec is there (marker file `spec.json`, written last). Returns the seconds spent."""
  marker = os.path.join(data_dir, "spec.json")
  if os.path.exists(marker):
    with open(marker) as f:
      if json.load(f) == dict(spec):
        logging.info("Synthetic data already in %s.", data_dir)
        return 0.0
    logging.warning("Synthetic data in %s has another spec; regenerating it.", data_dir)
    os.remove(marker)
  for path in glob.glob(os.path.join(data_dir, "*.array_record*")):
    os.remove(path)
  start = time.time()
  for split, count, seed in (("train", spec["num_train_videos"], spec["train_seed"]),
                             ("eval", spec["num_eval_videos"], spec["eval_seed"])):
    render_split(data_dir, spec, split, count, seed, num_workers)
  with open(marker, "w") as f:
    json.dump(dict(spec), f, indent=2)
  return time.time() - start


def render_split(data_dir: str, spec: Mapping[str, Any], split: str, count: int, seed: int,
                 num_workers: int = 1) -> None:
  """Renders `count` videos of the world in `spec` (`data_spec`) with generator seed `seed` as
  the ArrayRecord split `split` of `data_dir` (`data_pipelines.synthetic`)."""
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  logging.info("Rendering %d synthetic %s videos into %s ...", count, split, data_dir)
  synthetic.main([
      "--out_dir", data_dir, "--split", split, "--num_videos", str(count),
      "--seed", str(seed), "--resolution", str(spec["resolution"]),
      "--num_frames", str(spec["num_frames"]), "--min_objects", str(spec["min_objects"]),
      "--max_objects", str(spec["max_objects"]), "--image_format", spec["image_format"],
      "--records_per_shard", str(spec["records_per_shard"]), "--num_workers", str(num_workers),
      "--scene_json", json.dumps(spec["scene"])])


def write_scenes(config: ml_collections.ConfigDict, batches: Sequence[Mapping[str, Any]],
                 out_dir: str) -> list[str]:
  """Writes the held-out (eval) pairs' source frames as scene .npz files
  (`editing.Scene.save`, what `python -m neural_assets.edit_cli --scene` and the app open):
  out_dir/scene_<video>_<frame>.npz. Returns the paths."""
  # pylint: disable=g-import-not-at-top
  from data_pipelines import data_config
  from data_pipelines import record_source
  from neural_assets import editing
  # pylint: enable=g-import-not-at-top
  source = record_source.VideoRecordSource(
      data_config.resolve_files(config.data.data_dir, config.data.eval_files))
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for batch in batches:
    for video, frame in zip(batch["video_index"], batch["source_frame"]):
      record = source.read_record(int(video))  # Frames are read when used.
      scene = editing.scene_from_video_record(
          record, int(frame), resolution=tuple(config.data.resolution),
          resize_method=config.data.resize_method, min_depth=float(config.data.min_depth),
          min_projected_size=float(config.data.min_projected_size))
      path = os.path.join(out_dir, f"scene_{int(video):04d}_{int(frame):02d}.npz")
      scene.save(path)
      paths.append(path)
  return paths
