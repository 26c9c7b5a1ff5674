"""The --op grammar: one string -> an `Edit` of a scene (the edit CLI, trajectories, notebooks).

  build_edit(scene, "rotate 1 yaw=90; translate 0 x=0.5", other_scene=None) -> Edit

Several operations joined by ';' make one composite edit, applied left to right. Object indices
are those of the scene (and of objects appended by earlier operations of the same edit:
`duplicate` / `insert` append).

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
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from neural_assets.editing import ops
from neural_assets.editing.scene import Scene

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


EditFn = Callable[[ops.Edit], ops.Edit]


def _parse_one(text: str, other_scene: Scene | None) -> EditFn:
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
  if frame not in ops.FRAMES:
    raise OpParseError(f"frame={frame!r} (expected one of {ops.FRAMES})")
  force = options.get("force", "0").lower() in ("1", "true", "yes")
  xyz = tuple(values.get(k, 0.0) for k in ("x", "y", "z"))
  if name in ("insert", "background") and other_scene is None:
    raise OpParseError(f"{name} needs --other_scene")

  if name == "translate":
    return lambda e: ops.translate(e, index, xyz, frame, allow_invalid=force)
  if name == "rotate":
    return lambda e: ops.rotate(e, index, values.get("yaw", 0.0), values.get("pitch", 0.0),
                                    values.get("roll", 0.0), allow_invalid=force)
  if name == "rescale":
    if "factor" in values and any(k in values for k in ("x", "y", "z")):
      raise OpParseError("give either one factor or per-axis x=, y=, z=")
    factor = values.get("factor", None)
    if factor is None:
      factor = tuple(values.get(k, 1.0) for k in ("x", "y", "z"))
    return lambda e: ops.rescale(e, index, factor, allow_invalid=force)
  if name == "remove":
    return lambda e: ops.remove(e, index)
  if name == "duplicate":
    def dup(e):
      new = ops.duplicate(e, index, xyz, frame, allow_invalid=force)
      angles = [values.get(k, 0.0) for k in ("yaw", "pitch", "roll")]
      if any(angles):
        new = ops.rotate(new, len(new.assets) - 1, *angles, allow_invalid=force)
      return new
    return dup
  if name == "insert":
    return lambda e: ops.insert(e, other_scene, index, xyz, frame, allow_invalid=force)
  if name == "background":
    return lambda e: ops.replace_background(e, other_scene)
  if name == "camera":
    def camera(e):
      angles = [values.get(k, 0.0) for k in ("yaw", "pitch", "roll")]
      if any(xyz) or any(angles):
        e = ops.move_camera(e, xyz, *angles, allow_invalid=force)
      if values.get("orbit", 0.0):
        e = ops.orbit_camera(e, values["orbit"], allow_invalid=force)
      return e
    return camera
  return ops.as_edit  # reconstruct.


# How a refused edit is forced from the command line (the API's `allow_invalid=True`).
FORCE_HINT = "Add force=1 to the op to apply it anyway"


def build_edit(scene: Scene | ops.Edit, op: str,
               other_scene: Scene | None = None) -> ops.Edit:
  """Applies one --op string (operations joined by ';') to `scene` (or on top of an edit).

  Raises:
    OpParseError: naming the op, for a syntax error or an edit that cannot be applied.
  """
  edit = ops.as_edit(scene)
  for part in op.split(";"):
    try:
      edit = _parse_one(part, other_scene)(edit)
    except ops.EditRefused as e:
      raise OpParseError(f"Bad --op {op!r}: {e.message(FORCE_HINT)}") from e
    except (OpParseError, ops.EditError) as e:
      raise OpParseError(f"Bad --op {op!r}: {e}") from e
  # The user's op text names the edit (titles, file names).
  return dataclasses.replace(edit, steps=(op.strip(),))
