"""Drawing an edit's 3D boxes as wireframes and picking an object by a click (pure geometry).

The wireframe of a box is its 12 edges between projected corners (canonical corner order of
`geometry.box_corners`: an edge joins corners whose indices differ in one bit). It costs no model
call, so a front end redraws it on every change. Coordinates are normalised (u, v) as everywhere
in this code base; `pixel = u * width`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from neural_assets import geometry
from neural_assets.editing.ops import Edit

# [12, 2] corner index pairs: corners i and i ^ bit for each of the three axis bits.
BOX_EDGES = np.array([(i, i ^ bit) for bit in (4, 2, 1) for i in range(8) if not i & bit],
                     np.int32)
# One colour per object index (cycled), chosen to stand out on natural images.
PALETTE = ((255, 215, 0), (0, 200, 255), (255, 80, 160), (120, 255, 80), (255, 140, 0),
           (170, 120, 255), (0, 255, 200), (255, 255, 255))
INVALID_COLOR = (255, 40, 40)


def upscaled(image: np.ndarray, min_width: int) -> np.ndarray:
  """[H, W, 3] uint8 -> the image scaled by an integer factor (nearest) to >= `min_width` wide,
  so a tiny model's 16x16 frame shows its pixels and leaves room for lines and labels."""
  factor = max(1, -(-min_width // image.shape[1]))
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def draw_wireframes(image: np.ndarray, edit: Edit, selected: int | None = None,
                    min_width: int = 384) -> np.ndarray:
  """The edit's target 3D boxes drawn over `image` (any size; upscaled to `min_width`).

  Removed objects are not drawn; objects with an invalid target box (forced edits) are drawn in
  red; the `selected` one with thicker lines. Edges with a corner behind the camera are skipped.

  Args:
    image: [H, W, 3] uint8 (normally the edit's source image).
    edit: gives the target corners (`Edit.target_corners`, target camera).
    selected: index into `edit.assets` to highlight, or None.
  Returns:
    [H', W', 3] uint8.
  """
  canvas = Image.fromarray(upscaled(np.asarray(image, np.uint8), min_width))
  width, height = canvas.size
  draw = ImageDraw.Draw(canvas)
  uvd = edit.target_corners()  # [M, 8, 3]
  valid, _ = edit.validity()
  line = max(1, width // 192)
  for k in np.argsort([k == selected for k in range(len(edit.assets))], kind="stable"):
    # The selected object is drawn last, on top.
    if edit.assets[k].removed:
      continue
    color = PALETTE[k % len(PALETTE)] if valid[k] else INVALID_COLOR
    thick = 2 * line if k == selected else line
    pts = np.stack([uvd[k, :, 0] * width, uvd[k, :, 1] * height], axis=-1)
    front = uvd[k, :, 2] > edit.min_depth
    for a, b in BOX_EDGES:
      if front[a] and front[b]:
        draw.line([tuple(pts[a]), tuple(pts[b])], fill=color, width=thick)
    if front.any():
      # The label sits at the projected box's top-left corner, kept inside the image.
      x = float(np.clip(pts[front, 0].min(), 0, width - 14))
      y = float(np.clip(pts[front, 1].min() - 12, 0, height - 12))
      text = f"{k}*" if k == selected else str(k)
      draw.rectangle([x, y, x + 7 * len(text) + 3, y + 11], fill=color)
      draw.text((x + 2, y), text, fill=(0, 0, 0))
  return np.asarray(canvas)


def pick_object(edit: Edit, u: float, v: float,
                candidates: Sequence[bool] | None = None) -> int | None:
  """The object under the normalised image point (u, v) in the edit's target camera.

  Among objects (not removed, in front of the camera) whose projected 2D box contains the point,
  the nearest to the camera (smallest centre depth); if none contains it, the one whose box
  centre is nearest to the point. None when there is no object at all.
  """
  if not edit.assets:
    return None
  uvd = edit.target_corners()  # [M, 8, 3]
  boxes = geometry.box2d_from_corners(uvd)  # [M, 4] y0, x0, y1, x1 (clipped to the image)
  usable = np.array([not a.removed for a in edit.assets]) & np.all(uvd[..., 2] > 0, axis=-1)
  if candidates is not None:
    usable &= np.asarray(candidates, bool)
  if not usable.any():
    return None
  inside = usable & (boxes[:, 0] <= v) & (v <= boxes[:, 2]) & (boxes[:, 1] <= u) & (
      u <= boxes[:, 3])
  if inside.any():
    depth = np.where(inside, uvd[..., 2].mean(axis=-1), np.inf)
    return int(np.argmin(depth))
  centre = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2], -1)
  dist = np.where(usable, np.hypot(centre[:, 0] - u, centre[:, 1] - v), np.inf)
  return int(np.argmin(dist))
