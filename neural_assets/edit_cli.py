r"""Edits a scene with a trained Neural Assets model; writes the renders as PNGs and videos.

  python -m neural_assets.edit_cli --checkpoint WORKDIR --scene scene.npz \
      --op "rotate 1 yaw=90" --op "translate 0 x=0.5" --op "remove 2" \
      --op "translate 0 z=1 frame=camera; rotate 0 yaw=45" --out_dir /tmp/edits \
      [--other_scene other.npz] [--guidance_scale 2 --num_steps 50 --seed 0 --num_variations 1]
  python -m neural_assets.edit_cli --checkpoint WORKDIR --scene scene.npz --out_dir /tmp/motion \
      --trajectory "rotate 1 yaw=0:360:24" --trajectory "camera orbit=-30:30:24" \
      [--fps 12 --format mp4,gif,webp --no-shared_noise --video_scale 4 --batch_size 8]

Each --op is one edit of the source scene (several operations joined by ';' make one composite
edit; the grammar is `neural_assets.editing.op_grammar`, listed below). Writes `source.png`, `edit_<k>_<op>.png` (`..._v<v>.png` with several variations) and
`grid.png` (one row per variation: source | edit 1 | edit 2 ...). Scenes are `.npz` files written
by `neural_assets.editing.Scene.save` (the demo writes its held-out scenes to WORKDIR/scenes/) or
edited scenes written by `Edit.save` (the app's "edited scene" download; the ops then apply on
top of that edit, and `--op reconstruct` renders it as it is). Object indices are those of the
scene (and of objects appended by earlier operations of the same edit: `duplicate` / `insert`
append).

Trajectories: each --trajectory is an op whose numbers may be paths
(`neural_assets.editing.trajectory`): `yaw=0:360:24` = 24 frames from 0 to 360 (both
included), `x=0:1` = the same time line with N from another path, `z=0,0.8,0:16` = a smooth
curve through waypoints; every frame is the op at that frame applied to the scene. Writes
`trajectory_<k>_<op>.<format>` per --format (MP4 needs an even frame size: --video_scale 2).
Every frame uses --seed; with --shared_noise (default) all frames start from the same initial
noise (temporally stable), with --no-shared_noise frame k uses seed + k. Trajectories render
one sample each (--num_variations applies to the --op stills).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import numpy as np
from PIL import Image

from neural_assets import editing
from neural_assets import inference
from neural_assets.editing import op_grammar
from neural_assets.editing import trajectory as trajectory_lib
from neural_assets.images import image_grid, slug
from neural_assets.range_checks import finite_float, int_at_least

DEFAULT_VIDEO_FORMATS = "mp4,gif"


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m neural_assets.edit_cli", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=(op_grammar.__doc__[op_grammar.__doc__.index("Operations"):] + "\n\n"
              + __doc__[__doc__.index("Trajectories"):]))
  inference.add_checkpoint_arguments(parser)
  parser.add_argument("--scene", required=True,
                      help="Scene .npz (editing.Scene.save, e.g. the demo's WORKDIR/scenes/*.npz) "
                      "or edited scene .npz (editing.Edit.save, e.g. downloaded from the app).")
  parser.add_argument("--op", action="append", default=[],
                      help="An edit (repeatable); at least one --op or --trajectory.")
  parser.add_argument("--trajectory", action="append", default=[],
                      help='An edit along a path, rendered as a video, e.g. "rotate 1 '
                      'yaw=0:360:24" (repeatable; grammar above).')
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--other_scene", default=None, help="Scene .npz for insert / background.")
  parser.add_argument("--guidance_scale", type=finite_float(low=0.0), default=None,
                      help="Classifier-free guidance scale (default: config.sampler).")
  parser.add_argument("--num_steps", type=int_at_least(1), default=None,
                      help="DDIM steps (default: config.sampler).")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_variations", type=int_at_least(1), default=1)
  parser.add_argument("--fps", type=finite_float(low=1e-3), default=None,
                      help="Frames per second of the trajectory videos (default: "
                      f"{trajectory_lib.DEFAULT_FPS:g}).")
  parser.add_argument("--format", default=DEFAULT_VIDEO_FORMATS,
                      help="Comma-separated video formats of the trajectories, of "
                      f"{', '.join(trajectory_lib.VIDEO_FORMATS)} (default: %(default)s).")
  parser.add_argument("--shared_noise", action=argparse.BooleanOptionalAction, default=True,
                      help="All frames of a trajectory start from the same initial noise "
                      "(default); --no-shared_noise: frame k uses seed + k.")
  parser.add_argument("--video_scale", type=int_at_least(1), default=1,
                      help="Nearest-neighbour upscaling of the video frames.")
  parser.add_argument("--batch_size", type=int_at_least(1),
                      default=trajectory_lib.DEFAULT_BATCH_SIZE,
                      help="Trajectory frames per sampler call (memory vs speed).")
  return parser


def write_stills(bundle: inference.ModelBundle, scene: editing.Scene,
                 edits: Sequence[editing.Edit], args: argparse.Namespace) -> None:
  """The --op renders: source.png, one PNG per edit and variation, and grid.png."""
  images = editing.render(bundle, scene, *edits, guidance_scale=args.guidance_scale,
                          num_steps=args.num_steps, seed=args.seed,
                          num_variations=args.num_variations)  # [E, V, H, W, 3]
  height, width = images.shape[2:4]
  source = np.asarray(Image.fromarray(scene.image).resize((width, height),
                                                          Image.Resampling.BILINEAR))
  Image.fromarray(source).save(os.path.join(args.out_dir, "source.png"))
  written = []
  for k, (op, per_edit) in enumerate(zip(args.op, images)):
    for v, image in enumerate(per_edit):
      suffix = f"_v{v}" if args.num_variations > 1 else ""
      path = os.path.join(args.out_dir, f"edit_{k:02d}_{slug(op)}{suffix}.png")
      Image.fromarray(image).save(path)
      written.append(path)
  rows = [[source] + [images[k, v] for k in range(len(edits))]
          for v in range(args.num_variations)]
  grid_path = os.path.join(args.out_dir, "grid.png")
  Image.fromarray(image_grid(rows, border=False)).save(grid_path)
  print(f"Wrote {len(written)} edit image(s) and {grid_path} (columns: source | "
        + " | ".join(args.op) + ")")


def main(argv: Sequence[str] | None = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  if args.num_variations < 1:
    parser.error(f"--num_variations must be >= 1, got {args.num_variations}.")
  if not args.op and not args.trajectory:
    parser.error("Give at least one --op or --trajectory.")
  formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
  unknown = sorted(set(formats) - set(trajectory_lib.VIDEO_FORMATS))
  if not formats or unknown:
    parser.error(f"--format {args.format!r}: want some of {trajectory_lib.VIDEO_FORMATS}.")
  try:
    start = editing.load_scene_or_edit(args.scene)
    other = editing.Scene.load(args.other_scene) if args.other_scene else None
  except (OSError, ValueError) as e:
    parser.error(str(e))
  # Parse and apply every op before loading the model, so a typo fails in a second.
  try:
    edits = [op_grammar.build_edit(start, op, other) for op in args.op]
  except op_grammar.OpParseError as e:
    parser.error(str(e))
  try:
    motions = [trajectory_lib.build_trajectory(start, spec, other) for spec in args.trajectory]
  except trajectory_lib.TrajectoryError as e:
    parser.error(str(e))
  scene = editing.as_edit(start).source
  bundle = inference.load_model_from_args(args)
  if motions and "mp4" in formats and any(
      (r * args.video_scale) % trajectory_lib.MP4_SIZE_MULTIPLE for r in bundle.resolution):
    parser.error(f"MP4 needs an even frame size; the model renders {bundle.resolution} "
                 "(x --video_scale): pass --video_scale 2 or --format gif,webp.")
  os.makedirs(args.out_dir, exist_ok=True)
  if edits:
    write_stills(bundle, scene, edits, args)
  for k, (spec, frames_edits) in enumerate(zip(args.trajectory, motions)):
    frames = trajectory_lib.render_frames(
        bundle, frames_edits, seed=args.seed, shared_noise=args.shared_noise,
        guidance_scale=args.guidance_scale, num_steps=args.num_steps, batch_size=args.batch_size,
        progress=lambda done, total: print(f"  trajectory {k}: {done}/{total} frames",
                                           flush=True))
    stem = os.path.join(args.out_dir, f"trajectory_{k:02d}_{slug(spec)}")
    paths = trajectory_lib.write_videos(frames, stem, formats, args.fps or
                                        trajectory_lib.DEFAULT_FPS, args.video_scale)
    print(f"Wrote {len(frames)} frames of {spec!r}: " + ", ".join(paths))
  return 0


if __name__ == "__main__":
  sys.exit(main())
