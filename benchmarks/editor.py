"""Scene editor benchmark: how long the app's two paths take, measured in one run.

  1. the geometric path that every click / edit in `neural_assets.app` runs (an edit operation,
     the validity check, the wireframe picture and click picking; no model): median wall time;
  2. the Render path (`editing.render`: token composition, DDIM with classifier-free guidance,
     VAE decode) of a model loaded through `neural_assets.inference.load_model_for_inference`:
     first call (with compilation) and the median of the following calls, at the config's
     sampling steps and at 1 step;
and their ratio (render / geometry), which is why the page redraws boxes at once and renders only
on demand. Without --checkpoint, a random-weight checkpoint of --config is written by the
training code's Checkpointer (timings do not depend on weight values).

Usage:
  python -m benchmarks.editor [--config configs/synthetic.py] [--checkpoint WORKDIR]
      [--repeats 5] [--out benchmarks/results/editor.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from neural_assets import app as app_lib
from neural_assets import config_files
from neural_assets import editing
from neural_assets import inference
from neural_assets.editing import draw
# pylint: enable=g-import-not-at-top,wrong-import-position


def _timed(fn, repeats: int) -> list[float]:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "synthetic.py"))
  parser.add_argument("--checkpoint", default=None)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                    "editor.json"))
  args = parser.parse_args(argv)
  report = {"machine": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}
  checkpoint = args.checkpoint
  if checkpoint is None:
    from tests import editing_fixtures  # pylint: disable=g-import-not-at-top
    config = config_files.load(args.config)
    config.checkpoint.async_save = False
    checkpoint = editing_fixtures.make_tiny_checkpoint(tempfile.mkdtemp(prefix="bench_editor_"),
                                                       config)
    report["checkpoint"] = f"random weights of {os.path.relpath(args.config, ROOT)}"
  else:
    report["checkpoint"] = checkpoint
  start = time.perf_counter()
  bundle = inference.load_model_for_inference(checkpoint)
  report["load_seconds"] = time.perf_counter() - start
  report["resolution"] = list(bundle.resolution)
  scene = app_lib.synthetic_scene(0, bundle).keep_largest(bundle.max_objects)
  edit = editing.as_edit(scene)
  report["num_objects"] = scene.num_objects

  def geometry_path():
    moved = editing.translate(edit, 0, (0.05, 0.0, 0.0), "camera", allow_invalid=True)
    draw.draw_wireframes(scene.image, moved, 0, app_lib.DISPLAY_WIDTH)
    draw.pick_object(moved, 0.5, 0.5)

  geometry_path()  # Warm caches.
  geo = _timed(geometry_path, max(20, 4 * args.repeats))
  report["geometry_path_seconds_median"] = statistics.median(geo)

  moved = editing.translate(edit, 0, (0.05, 0.0, 0.0), "camera", allow_invalid=True)
  steps_default = int(bundle.config.sampler.num_inference_steps)
  for steps in (steps_default, 1):
    def render(steps=steps):
      editing.render(bundle, scene, moved, num_steps=steps, seed=0)
    first = _timed(render, 1)[0]
    rest = _timed(render, args.repeats)
    report[f"render_{steps}_steps_first_call_seconds"] = first
    report[f"render_{steps}_steps_seconds_median"] = statistics.median(rest)
  report["ratio_render_default_steps_over_geometry"] = (
      report[f"render_{steps_default}_steps_seconds_median"]
      / report["geometry_path_seconds_median"])
  report["load_average_after"] = os.getloadavg()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  for key, value in report.items():
    print(f"{key}: {value}")
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
