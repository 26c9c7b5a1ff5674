r"""Edits a scene with a trained Neural Assets model; writes the renders as PNGs and videos.

  python -m neural_assets.edit --checkpoint WORKDIR --scene scene.npz \
      --op "rotate 1 yaw=90" --op "translate 0 x=0.5" --op "remove 2" \
      --op "translate 0 z=1 frame=camera; rotate 0 yaw=45" --out_dir /tmp/edits \
      [--other_scene other.npz] [--guidance_scale 2 --num_steps 50 --seed 0 --num_variations 1]
  python -m neural_assets.edit --checkpoint WORKDIR --scene scene.npz --out_dir /tmp/motion \
      --trajectory "rotate 1 yaw=0:360:24" --trajectory "camera orbit=-30:30:24" \
      [--fps 12 --format mp4,gif,webp --no-shared_noise --video_scale 4 --batch_size 8]

Each --op is one edit of the source scene (several operations joined by ';' make one composite
edit). Writes `source.png`, `edit_<k>_<op>.png` (`..._v<v>.png` with several variations) and
`grid.png` (one row per variation: source | edit 1 | edit 2 ...). Scenes are `.npz` files written
by `neural_assets.editing.Scene.save` (the demo writes its held-out scenes to WORKDIR/scenes/) or
edited scenes written by `Edit.save` (the app's "edited scene" download; the ops then apply on
top of that edit, and `--op reconstruct` renders it as it is). Object indices are those of the
scene (and of objects appended by earlier operations of the same edit: `duplicate` / `insert`
append).

Operations (angles in degrees, lengths in world units; add `force=1` to any op to apply it even
if an object ends up behind the camera or off-screen; such objects are left out of the render):
  translate I [x= y= z=] [frame=world|camera]   move object I
  rotate I [yaw= pitch= roll=]                   turn object I about its own axes
  rescale I F | rescale I [x= y= z=]             scale object I (alias: scale)
  remove I                                       remove object I
  duplicate I [x= y= z=] [frame=] [yaw= pitch= roll=]   copy object I, moved / turned
  insert J [x= y= z=] [frame=]                   object J of --other_scene, same camera-relative
                                                 pose as there, moved by x, y, z
  background                                     background of --other_scene
  camera [x= y= z=] [yaw= pitch= roll=] [orbit=] move / turn the camera in its own axes, orbit
                                                 about the objects' centre
  reconstruct                                    no change

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
import dataclasses
import os
import sys
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from neural_assets import editing
from neural_assets import inference
from neural_assets.editing import trajectory as trajectory_lib
from neural_assets.images import image_grid, slug
from neural_assets.cli_validation import finite_float, int_at_least

DEFAULT_VIDEO_FORMATS = "mp4,gif"

_FLOAT_KEYS = {
    "translate": ("x", "y", "z"),
    "rotate": ("yaw", "pitch", "roll"),
    "rescale": ("factor", "x", "y", "z"),
    "remove": (),
    "duplicate": ("x", "y", "z", "yaw", "pitch", "roll"),
    "insert": ("x", "y", "z"),
    "background": (),
    "camera": ("x", "y", "z", "yaw", "pitch", "roll", "orbit"),
    "reconstruct": (),
}
_ALIASES = {"scale": "rescale", "move": "translate", "identity": "reconstruct"}
_NUM_INDICES = {"translate": 1, "rotate": 1, "rescale": 1, "remove": 1, "duplicate": 1,
                "insert": 1, "background": 0, "camera": 0, "reconstruct": 0}
_FRAME_OPS = ("translate", "duplicate", "insert")


class OpParseError(ValueError):
  """An --op string that cannot be parsed or applied; the message names the op."""


EditFn = Callable[[editing.Edit], editing.Edit]


def _parse_one(text: str, other_scene: editing.Scene | None) -> EditFn:
  """One operation (no ';') -> a function Edit -> Edit."""
  words = text.split()
  if not words:
    raise OpParseError("empty operation")
  name = _ALIASES.get(words[0].lower(), words[0].lower())
  if name not in _FLOAT_KEYS:
    raise OpParseError(f"unknown operation {words[0]!r} (expected one of "
                       f"{sorted(_FLOAT_KEYS)})")
  positional, options = [], {}
  for word in words[1:]:
    if "=" in word:
      key, _, value = word.partition("=")
      if key in options:
        raise OpParseError(f"{key!r} given twice")
      options[key] = value
    elif options:
      raise OpParseError(f"positional argument {word!r} after key=value arguments")
    else:
      positional.append(word)
  allowed = set(_FLOAT_KEYS[name]) | {"force"} | ({"frame"} if name in _FRAME_OPS else set())
  unknown = sorted(set(options) - allowed)
  if unknown:
    raise OpParseError(f"unknown key(s) {unknown} for {name} (allowed: {sorted(allowed)})")
  num_indices = _NUM_INDICES[name]
  extra_positional = 1 if name == "rescale" else 0  # `rescale I F`.
  if not num_indices <= len(positional) <= num_indices + extra_positional:
    want = "an object index" if num_indices else "no positional argument"
    raise OpParseError(f"{name} takes {want}, got {positional}")
  try:
    index = int(positional[0]) if num_indices else None
  except ValueError:
    raise OpParseError(f"object index {positional[0]!r} is not an integer") from None
  values = {}
  for key in _FLOAT_KEYS[name]:
    if key in options:
      try:
        values[key] = float(options[key])
      except ValueError:
        raise OpParseError(f"{key}={options[key]!r} is not a number") from None
      if not np.isfinite(values[key]):
        raise OpParseError(f"{key}={options[key]!r} is not finite")
  if len(positional) == 2:
    try:
      values["factor"] = float(positional[1])
    except ValueError:
      raise OpParseError(f"scale factor {positional[1]!r} is not a number") from None
  frame = options.get("frame", "world")
  if frame not in editing.FRAMES:
    raise OpParseError(f"frame={frame!r} (expected one of {editing.FRAMES})")
  force = options.get("force", "0").lower() in ("1", "true", "yes")
  xyz = tuple(values.get(k, 0.0) for k in ("x", "y", "z"))
  if name in ("insert", "background") and other_scene is None:
    raise OpParseError(f"{name} needs --other_scene")

  if name == "translate":
    return lambda e: editing.translate(e, index, xyz, frame, allow_invalid=force)
  if name == "rotate":
    return lambda e: editing.rotate(e, index, values.get("yaw", 0.0), values.get("pitch", 0.0),
                                    values.get("roll", 0.0), allow_invalid=force)
  if name == "rescale":
    if "factor" in values and any(k in values for k in ("x", "y", "z")):
      raise OpParseError("give either one factor or per-axis x=, y=, z=")
    factor = values.get("factor", None)
    if factor is None:
      factor = tuple(values.get(k, 1.0) for k in ("x", "y", "z"))
    return lambda e: editing.rescale(e, index, factor, allow_invalid=force)
  if name == "remove":
    return lambda e: editing.remove(e, index)
  if name == "duplicate":
    def dup(e):
      new = editing.duplicate(e, index, xyz, frame, allow_invalid=force)
      angles = [values.get(k, 0.0) for k in ("yaw", "pitch", "roll")]
      if any(angles):
        new = editing.rotate(new, len(new.assets) - 1, *angles, allow_invalid=force)
      return new
    return dup
  if name == "insert":
    return lambda e: editing.insert(e, other_scene, index, xyz, frame, allow_invalid=force)
  if name == "background":
    return lambda e: editing.replace_background(e, other_scene)
  if name == "camera":
    def camera(e):
      angles = [values.get(k, 0.0) for k in ("yaw", "pitch", "roll")]
      if any(xyz) or any(angles):
        e = editing.move_camera(e, xyz, *angles, allow_invalid=force)
      if values.get("orbit", 0.0):
        e = editing.orbit_camera(e, values["orbit"], allow_invalid=force)
      return e
    return camera
  return editing.as_edit  # reconstruct.


# How a refused edit is forced from the command line (the API's `allow_invalid=True`).
FORCE_HINT = "Add force=1 to the op to apply it anyway"


def build_edit(scene: editing.Scene | editing.Edit, op: str,
               other_scene: editing.Scene | None = None) -> editing.Edit:
  """Applies one --op string (operations joined by ';') to `scene` (or on top of an edit).

  Raises:
    OpParseError: naming the op, for a syntax error or an edit that cannot be applied.
  """
  edit = editing.as_edit(scene)
  for part in op.split(";"):
    try:
      edit = _parse_one(part, other_scene)(edit)
    except editing.EditRefused as e:
      raise OpParseError(f"Bad --op {op!r}: {e.message(FORCE_HINT)}") from e
    except (OpParseError, editing.EditError) as e:
      raise OpParseError(f"Bad --op {op!r}: {e}") from e
  # The user's op text names the edit (titles, file names).
  return dataclasses.replace(edit, steps=(op.strip(),))


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m neural_assets.edit", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__[__doc__.index("Operations"):])
  parser.add_argument("--checkpoint", required=True,
                      help="Training workdir, the demo's workdir, a checkpoints/ dir or one "
                      "step dir.")
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
  parser.add_argument("--config", default=None,
                      help="Config .py / .json (default: the one stored with the checkpoint).")
  parser.add_argument("--step", type=int_at_least(0), default=None,
                      help="Checkpoint step (default: newest).")
  parser.add_argument("--no_ema", action="store_true", help="Use the raw, not the EMA, weights.")
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
    edits = [build_edit(start, op, other) for op in args.op]
  except OpParseError as e:
    parser.error(str(e))
  try:
    motions = [trajectory_lib.build_trajectory(start, spec, other) for spec in args.trajectory]
  except trajectory_lib.TrajectoryError as e:
    parser.error(str(e))
  scene = editing.as_edit(start).source
  bundle = inference.load_model_for_inference(args.checkpoint, args.config, args.step,
                                              use_ema=not args.no_ema)
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
