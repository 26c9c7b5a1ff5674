"""The edit cases of the edit-fidelity benchmark: every edit type applied to one scene.

Each edit type of the editing API is applied through its public functions
(`neural_assets.editing`): translate in the image plane and in depth, rotate (yaw), rescale,
remove, duplicate, insert an object of another scene, background swap, camera move and camera
orbit. Magnitudes: the constants below, tried in order (with the objects by decreasing size)
until the editing API accepts one and the caller's check holds (the benchmark's: its ground
truth differs visibly from the unedited one, `edit_fidelity.MIN_GROUND_TRUTH_CHANGE`). An
`EditCase` also names the localisation pair (the render with the object vs without it) and the
assets whose boxes make the scored region (`evaluation/edit_fidelity.py`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from neural_assets import editing

EDIT_TYPES = ("translate (image plane)", "translate (depth)", "rotate (yaw)", "rescale", "remove",
              "duplicate", "insert", "background swap", "camera move", "camera orbit")
# Edit magnitudes, tried in order (with the objects by decreasing size) until the editing API
# accepts one and the caller's check holds (the benchmark's: its ground truth changes by
# edit_fidelity.MIN_GROUND_TRUTH_CHANGE).
IMAGE_PLANE_OFFSETS = (1.0, -1.0, 0.6, -0.6)  # camera x, world units.
DEPTH_FACTORS = (0.6, 1.6, 0.75, 1.35)  # the object's new depth / its depth, along its ray
# (its image position stays; its apparent size changes by 1 / factor).
YAW_DEGREES = (90.0, -90.0, 45.0, 180.0)
RESCALE_FACTORS = (1.6, 0.6, 2.0, 0.5)
DUPLICATE_OFFSETS = (1.5, -1.5, 1.0, -1.0)  # camera x.
CAMERA_OFFSETS = ((1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0))
ORBIT_DEGREES = (20.0, -20.0, 30.0, -30.0)


@dataclasses.dataclass(frozen=True, eq=False)
class EditCase:
  """One edit type applied to one scene.

  Attributes:
    edit: the edit. obj: the edited asset (index into `with_edit.assets`; None: no object).
    with_edit / without_edit: the localisation pair (the object present / absent).
    in_unedited: the object exists in the unedited scene (False for added objects).
    region_assets: assets whose boxes before / after make the scored region (empty: none).
  """
  edit: editing.Edit
  obj: Optional[int]
  with_edit: Optional[editing.Edit]
  without_edit: Optional[editing.Edit]
  in_unedited: bool
  region_assets: tuple[int, ...]


def make_cases(scene: editing.Scene, others: Sequence[editing.Scene], max_objects: int,
               accept: Optional[Callable[[str, "EditCase"], bool]] = None,
               unedited: Optional[editing.Edit] = None) -> dict[str, Optional[EditCase]]:
  """Every edit type on `scene` (`others` donate the inserted object and the background, tried
  in order; empty: insert and background swap get None).

  Each op is tried on the objects by decreasing 2D box size and the magnitudes above until the
  editing API accepts it (it refuses invalid boxes), it fits the model's slots (adding an object
  to a full scene first removes its smallest other object) and `accept(type, case)` (e.g. its
  ground truth changes visibly) holds. None: nothing was accepted. `unedited`: the caller's
  `as_edit(scene)`, so that `remove`'s localisation pair shares its render.
  """
  if isinstance(others, editing.Scene):
    others = [others]
  order = scene.largest_first()
  unedited = editing.as_edit(scene) if unedited is None else unedited

  def room(k):
    if scene.num_objects < max_objects:
      return unedited
    smallest = [i for i in reversed(order) if i != k]
    return editing.remove(unedited, smallest[0]) if smallest else unedited

  def along_ray(k, factor):
    """Camera-frame offset moving object k's centre to `factor` x its depth along its ray."""
    center = scene.world_to_camera[:3, :3] @ scene.centers[k] + scene.world_to_camera[:3, 3]
    return tuple(float(c) for c in (factor - 1.0) * center)

  per_object = {
      "translate (image plane)": [lambda k, m=m: editing.translate(scene, k, (m, 0.0, 0.0),
                                                                   frame="camera")
                                  for m in IMAGE_PLANE_OFFSETS],
      "translate (depth)": [lambda k, f=f: editing.translate(scene, k, along_ray(k, f),
                                                             frame="camera")
                            for f in DEPTH_FACTORS],
      "rotate (yaw)": [lambda k, a=a: editing.rotate(scene, k, yaw=a) for a in YAW_DEGREES],
      "rescale": [lambda k, f=f: editing.rescale(scene, k, f) for f in RESCALE_FACTORS],
      "remove": [lambda k: editing.remove(scene, k)],
      "duplicate": [lambda k, m=m: editing.duplicate(room(k), k, (m, 0.0, 0.0), frame="camera")
                    for m in DUPLICATE_OFFSETS],
  }
  scene_level = {
      "insert": [lambda o=o, j=j: editing.insert(room(None), o, j)
                 for o in others for j in o.largest_first()],
      "background swap": [lambda o=o: editing.replace_background(scene, o) for o in others],
      "camera move": [lambda o=o: editing.move_camera(scene, o) for o in CAMERA_OFFSETS],
      "camera orbit": [lambda d=d: editing.orbit_camera(scene, d) for d in ORBIT_DEGREES],
  }

  def fits(edit):
    return int(edit.active().sum()) <= max_objects

  def object_case(name, edit, k):
    if name == "remove":
      return EditCase(edit, k, unedited, edit, True, (k,))
    if name == "duplicate":
      new = len(edit.assets) - 1
      return EditCase(edit, new, edit, editing.remove(edit, new), False, (new,))
    return EditCase(edit, k, edit, editing.remove(edit, k), True, (k,))

  def scene_case(name, edit):
    if name == "insert":
      new = len(edit.assets) - 1
      return EditCase(edit, new, edit, editing.remove(edit, new), False, (new,))
    if name == "background swap":  # Localised as the pixels it changes (with vs unedited).
      return EditCase(edit, None, edit, unedited, False, ())
    # Camera edits: localise the largest object that stays valid; region = all.
    active = edit.active()
    k = next((i for i in order if active[i]), None)
    if k is None:
      return None
    return EditCase(edit, k, edit, editing.remove(edit, k), True,
                    tuple(int(i) for i in np.flatnonzero(active)))

  def attempts(name):
    if name in per_object:
      return [(attempt, k) for k in order for attempt in per_object[name]]
    return [(attempt, None) for attempt in scene_level[name]]

  cases: dict[str, Optional[EditCase]] = {}
  for name in EDIT_TYPES:
    found = None
    for attempt, k in attempts(name):
      try:
        edit = attempt(k) if k is not None else attempt()
      except editing.EditError:
        continue
      if not fits(edit):
        continue
      case = object_case(name, edit, k) if k is not None else scene_case(name, edit)
      if case is not None and (accept is None or accept(name, case)):
        found = case
        break
    cases[name] = found
  return cases


def render_list(cases: Mapping[str, Optional[EditCase]], unedited: editing.Edit
                ) -> list[editing.Edit]:
  """Every distinct edit a scene needs rendered: unedited, each edit, each localisation pair,
  and the unedited scene without each localised object (the `model, unedited` baseline)."""
  edits, seen = [unedited], {id(unedited)}

  def add(e):
    if e is not None and id(e) not in seen:
      seen.add(id(e))
      edits.append(e)

  for case in cases.values():
    if case is None:
      continue
    add(case.edit)
    add(case.with_edit)
    add(case.without_edit)
  return edits

