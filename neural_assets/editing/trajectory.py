r"""Edit trajectories: a scene edited along a path, rendered frame by frame and written as video.

A trajectory is one `--op` string of `editing.op_grammar` (operations joined by ';') in which
numbers may be *paths* instead of constants. Frame k is the op with every path replaced by its
value at frame k, applied to the START scene (not to frame k-1), so each frame is an ordinary
edit and the editing API's checks (boxes behind the camera, off screen, ...) apply per frame.

Grammar (a value is a NUMBER or a PATH; object indices are never paths):
  A:B:N          N frames from A to B, both included, evenly spaced (linear)
  A:B            the same, N given by another path of the spec
  W0,W1,...,Wk:N through the waypoints W0..Wk, evenly spaced in time, on a monotone cubic
  W0,W1,...,Wk   (PCHIP: smooth, never overshoots a waypoint); N as above
Every path of one spec must have the same N (N >= 2), and at least one path must state it.
Examples:
  rotate 1 yaw=0:360:24                      turn object 1 through a full turn in 24 frames
                                             (0:345:24 loops seamlessly: 360 = 0 repeats)
  translate 0 x=0:1:24 z=0:2 frame=camera    slide object 0 right and away, a straight line
  translate 0 x=0,0.6,1:16 z=0,0.8,0         ... along a curve (an arc through 3 waypoints)
  rescale 2 1:1.8:12                         grow object 2 (also `rescale 2 factor=1:1.8:12`)
  camera orbit=-30:30:24                     orbit the camera about the objects' centre
  camera z=0:1.5:12                          dolly in along the optical axis
  rotate 1 yaw=0:180:12; camera orbit=0:20   several ops, paths shared in time

Rendering (`render_frames`): every frame's noise comes from the same `seed`. With
`shared_noise=True` (default) every frame starts from the same initial latent x_T (and draws the
same eta noise): what changes between frames is the conditioning only, so the frames stay
temporally coherent and frame k equals `editing.render(bundle, scene, edit_k, seed=seed)`. With
`shared_noise=False`, frame k uses seed `seed + k` (each frame is the still `render` makes with
that seed): independent samples, which flicker; the contrast shows what sharing buys.

Writing (`write_video`): MP4 (H.264, yuv420p, through imageio-ffmpeg), animated GIF and animated
WebP (through imageio's Pillow plugin); the format is the file extension.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from neural_assets.editing import op_grammar
from neural_assets.editing.ops import Edit
from neural_assets.editing.ops import EditError
from neural_assets.editing.render import render
from neural_assets.editing.scene import Scene

VIDEO_FORMATS = ("mp4", "gif", "webp")
DEFAULT_FPS = 12.0
DEFAULT_BATCH_SIZE = 8  # Frames per sampler call: one compiled shape, bounded memory.
# A guard against typos such as 0:360:2400 (hours of sampling); trajectories are seconds long.
MAX_FRAMES = 1000
MIN_FRAMES = 2  # A single frame is a still: use --op.
# H.264's yuv420p chroma is subsampled 2x2, so an MP4's height and width must be even.
MP4_SIZE_MULTIPLE = 2
MP4_CODEC = "libx264"
MP4_PIXEL_FORMAT = "yuv420p"  # What browsers play (yuv444p H.264 is not widely supported).
MP4_QUALITY = 8  # imageio-ffmpeg's 0-10 scale (10 = best): near-lossless for flat synthetic frames.
MS_PER_SECOND = 1000.0

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_CHARS = re.compile(r"[:,]")
_FACTOR_OPS = ("rescale", "scale")  # `rescale I F`: its positional factor may be a path.


class TrajectoryError(ValueError):
  """A trajectory spec that cannot be parsed, or one of whose frames cannot be applied."""


@dataclasses.dataclass(frozen=True)
class Path:
  """One path of a spec: `waypoints` [K >= 2] passed at evenly spaced times over the frames."""
  text: str
  waypoints: tuple[float, ...]
  num_frames: Optional[int]  # None: taken from another path of the spec.

  def values(self, num_frames: int) -> np.ndarray:
    """[num_frames] float64: the path sampled at frames 0..num_frames-1 (both ends included)."""
    times = np.linspace(0.0, 1.0, num_frames)
    knots = np.linspace(0.0, 1.0, len(self.waypoints))
    if len(self.waypoints) == 2:
      return np.interp(times, knots, self.waypoints)
    from scipy import interpolate  # pylint: disable=g-import-not-at-top
    return interpolate.PchipInterpolator(knots, self.waypoints)(times)


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """A parsed spec.

  Attributes:
    spec: the text as given.
    num_frames: F.
    ops: F op strings of `op_grammar`'s grammar, frame k's edit of the start scene.
    paths: {"<op index>:<key>": [F] values} of every path (for titles and tests).
  """
  spec: str
  num_frames: int
  ops: tuple[str, ...]
  paths: dict[str, np.ndarray]


def _parse_number(text: str, where: str) -> float:
  if not re.fullmatch(_NUMBER, text):
    raise TrajectoryError(f"{where}: {text!r} is not a number.")
  value = float(text)
  if not np.isfinite(value):
    raise TrajectoryError(f"{where}: {text!r} is not finite.")
  return value


def parse_path(text: str, where: str = "path") -> Path:
  """`A:B[:N]` or `W0,W1,...[:N]` -> Path (see the module docstring). Raises TrajectoryError."""
  parts = text.split(":")
  if any(p == "" for p in parts):
    raise TrajectoryError(f"{where}: {text!r} has an empty part (want A:B:N or W0,W1,...:N).")
  if "," in parts[0]:  # Waypoints, then an optional frame count.
    if len(parts) > 2 or (len(parts) == 2 and "," in parts[1]):
      raise TrajectoryError(f"{where}: {text!r}: waypoints take one ':N' at the end at most.")
    waypoints = [_parse_number(w, where) for w in parts[0].split(",")]
    count = parts[1] if len(parts) == 2 else None
  else:
    if len(parts) not in (2, 3) or any("," in p for p in parts[1:]):
      raise TrajectoryError(f"{where}: {text!r} is not A:B, A:B:N or W0,W1,...[:N].")
    waypoints = [_parse_number(p, where) for p in parts[:2]]
    count = parts[2] if len(parts) == 3 else None
  num_frames = None
  if count is not None:
    if not re.fullmatch(r"\d+", count):
      raise TrajectoryError(f"{where}: frame count {count!r} is not a whole number.")
    num_frames = int(count)
    if not MIN_FRAMES <= num_frames <= MAX_FRAMES:
      raise TrajectoryError(f"{where}: {num_frames} frames; want {MIN_FRAMES}..{MAX_FRAMES}.")
  return Path(text, tuple(waypoints), num_frames)


def _format(value: float) -> str:
  # repr round-trips the float exactly, so frame k's op means exactly the sampled value.
  return repr(float(value))


def parse_trajectory(spec: str) -> Trajectory:
  """Parses a trajectory spec (module docstring) into its per-frame op strings.

  Syntax only: whether the ops apply to a scene is `build_trajectory`'s job.
  """
  if not spec or not spec.strip():
    raise TrajectoryError("Empty trajectory.")
  op_words = [part.split() for part in spec.split(";")]
  paths: dict[tuple[int, int], tuple[str, Path]] = {}  # (op, word) -> (key, path)
  for i, words in enumerate(op_words):
    if not words:
      raise TrajectoryError(f"Trajectory {spec!r}: operation {i + 1} is empty.")
    positional = 0
    for j, word in enumerate(words[1:], start=1):
      key, sep, value = word.partition("=")
      if not sep:
        key, value = "", word
        positional += 1
      if not _PATH_CHARS.search(value):
        continue
      if not key and not (words[0].lower() in _FACTOR_OPS and positional == 2):
        raise TrajectoryError(f"Trajectory {spec!r}: {word!r} in {' '.join(words)!r}: only "
                              "key=value numbers and rescale's factor can be paths (an object "
                              "index cannot).")
      where = f"Trajectory {spec!r}, {word!r}"
      paths[(i, j)] = (key or "factor", parse_path(value, where))
  if not paths:
    raise TrajectoryError(f"Trajectory {spec!r} has no path: give a range such as yaw=0:360:24 "
                          "(a spec without one is a still: use --op).")
  counts = {p.num_frames for _, p in paths.values() if p.num_frames is not None}
  if not counts:
    raise TrajectoryError(f"Trajectory {spec!r}: give the frame count once, e.g. yaw=0:360:24 "
                          "(A:B:N or W0,W1,...:N).")
  if len(counts) > 1:
    raise TrajectoryError(f"Trajectory {spec!r}: its paths give different frame counts "
                          f"{sorted(counts)}; they share one time line (give N once or equally).")
  num_frames = counts.pop()
  sampled = {where: path.values(num_frames) for where, (_, path) in paths.items()}
  ops = []
  for k in range(num_frames):
    parts = []
    for i, words in enumerate(op_words):
      out = list(words)
      for (pi, pj), values in sampled.items():
        if pi == i:
          key = words[pj].partition("=")[0] if "=" in words[pj] else None
          out[pj] = f"{key}={_format(values[k])}" if key else _format(values[k])
      parts.append(" ".join(out))
    ops.append("; ".join(parts))
  named = {f"{i}:{paths[(i, j)][0]}": v for (i, j), v in sampled.items()}
  return Trajectory(spec.strip(), num_frames, tuple(ops), named)


def build_trajectory(start: Union[Scene, Edit], spec: Union[str, Trajectory],
                     other_scene: Optional[Scene] = None) -> list[Edit]:
  """The F edits of a trajectory, each frame's op applied to `start` (a Scene or an Edit).

  Raises:
    TrajectoryError: a syntax error, or a frame the editing API refuses (the message names the
      frame and its values; `force=1` in the spec applies such frames, as for --op).
  """
  trajectory = spec if isinstance(spec, Trajectory) else parse_trajectory(spec)
  edits = []
  for k, op in enumerate(trajectory.ops):
    try:
      edit = op_grammar.build_edit(start, op, other_scene)
    except op_grammar.OpParseError as e:
      raise TrajectoryError(f"Trajectory {trajectory.spec!r}, frame {k + 1} of "
                            f"{trajectory.num_frames} ({op!r}): {e}") from e
    # Frames keep the spec as their name, with where they are on it.
    edits.append(dataclasses.replace(edit, steps=(f"{trajectory.spec} [frame {k + 1}/"
                                                  f"{trajectory.num_frames}]",)))
  return edits


ProgressFn = Callable[[int, int], Any]  # (frames done, frames in all) -> ignored.


def render_frames(bundle: Any, edits: Sequence[Edit], *, seed: int = 0, shared_noise: bool = True,
                  guidance_scale: Optional[float] = None, num_steps: Optional[int] = None,
                  batch_size: int = DEFAULT_BATCH_SIZE,
                  progress: Optional[ProgressFn] = None) -> np.ndarray:
  """Renders a trajectory's edits (all of one source scene) with `editing.render`.

  Args:
    bundle: a `ModelBundle` (`inference.load_model_for_inference`).
    edits: F edits (`build_trajectory`).
    seed: the noise seed (module docstring for `shared_noise`).
    batch_size: frames per sampler call with shared noise; the last call is padded with its last
      frame, so every call has one shape (one compilation). Per-frame noise renders one frame
      per call (each its own seed).
    progress: called with (frames done, F) after every sampler call.

  Returns:
    [F, H, W, 3] uint8 frames at the model's resolution.
  """
  if not edits:
    raise TrajectoryError("A trajectory needs at least one frame to render.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  scene = edits[0].source
  for k, edit in enumerate(edits):
    if edit.source is not scene:
      raise EditError(f"Frame {k} edits another scene than frame 0: a trajectory has one.")
  progress = progress or (lambda *_: None)
  sample = dict(guidance_scale=guidance_scale, num_steps=num_steps)
  frames = []
  if shared_noise:
    size = min(batch_size, len(edits))
    for start in range(0, len(edits), size):
      chunk = list(edits[start:start + size])
      real = len(chunk)
      chunk += [chunk[-1]] * (size - real)
      frames.append(render(bundle, scene, *chunk, seed=seed, **sample)[:real, 0])
      progress(start + real, len(edits))
  else:
    for k, edit in enumerate(edits):
      frames.append(render(bundle, scene, edit, seed=seed + k, **sample)[:, 0])
      progress(k + 1, len(edits))
  return np.concatenate(frames)


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
  """[F, H, W, 3] -> [F, H*factor, W*factor, 3] (nearest: small model frames stay crisp)."""
  if factor < 1 or int(factor) != factor:
    raise ValueError(f"The upscaling factor must be a whole number >= 1, got {factor}.")
  factor = int(factor)
  return frames if factor == 1 else frames.repeat(factor, axis=1).repeat(factor, axis=2)


def video_format(path: str) -> str:
  """The format of a video path: its extension, one of VIDEO_FORMATS."""
  extension = os.path.splitext(path)[1].lower().lstrip(".")
  if extension not in VIDEO_FORMATS:
    raise ValueError(f"{path}: unknown video format {extension!r} (want the extension to be one "
                     f"of {VIDEO_FORMATS}).")
  return extension


def write_video(frames: np.ndarray, path: str, fps: float = DEFAULT_FPS, scale: int = 1) -> str:
  """Writes [F, H, W, 3] uint8 frames as MP4 / GIF / WebP (by `path`'s extension); returns path.

  GIF stores frame durations in 1/100 s, so its rate is rounded to that; Pillow merges identical
  consecutive GIF frames into one longer frame (the playback is the same). GIF colours are
  quantised to 256 per frame; WebP is written lossless; MP4 is H.264 (lossy).
  """
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"Expected [F, H, W, 3] uint8 frames, got {frames.shape} {frames.dtype}.")
  if frames.shape[0] < 1:
    raise ValueError("A video needs at least one frame.")
  if not np.isfinite(fps) or fps <= 0:
    raise ValueError(f"fps must be a positive number, got {fps}.")
  kind = video_format(path)
  frames = upscale(frames, scale)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if kind == "mp4":
    height, width = frames.shape[1:3]
    if height % MP4_SIZE_MULTIPLE or width % MP4_SIZE_MULTIPLE:
      raise ValueError(f"{path}: MP4 ({MP4_PIXEL_FORMAT}) needs an even height and width, got "
                       f"{height}x{width}; upscale by 2 or write a GIF / WebP.")
    # macro_block_size=1: imageio-ffmpeg would otherwise silently resize to a multiple of 16.
    iio.imwrite(path, frames, plugin="FFMPEG", fps=float(fps), codec=MP4_CODEC,
                pixelformat=MP4_PIXEL_FORMAT, quality=MP4_QUALITY, macro_block_size=1)
  else:
    duration = MS_PER_SECOND / float(fps)
    options = dict(lossless=True) if kind == "webp" else {}
    iio.imwrite(path, frames, plugin="pillow", extension=f".{kind}", duration=duration, loop=0,
                **options)
  return path


def read_video(path: str) -> np.ndarray:
  """[F, H, W, 3] uint8 frames of a file `write_video` wrote (for checks and tests)."""
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  kind = video_format(path)
  plugin = "FFMPEG" if kind == "mp4" else "pillow"
  frames = [np.asarray(f)[..., :3] for f in iio.imiter(path, plugin=plugin)]
  return np.stack(frames).astype(np.uint8)


def write_videos(frames: np.ndarray, stem: str, formats: Sequence[str] = ("mp4", "gif"),
                 fps: float = DEFAULT_FPS, scale: int = 1) -> list[str]:
  """`stem.<format>` for each of `formats`; returns the paths."""
  for kind in formats:
    if kind not in VIDEO_FORMATS:
      raise ValueError(f"Unknown video format {kind!r} (want some of {VIDEO_FORMATS}).")
  return [write_video(frames, f"{stem}.{kind}", fps, scale) for kind in formats]
