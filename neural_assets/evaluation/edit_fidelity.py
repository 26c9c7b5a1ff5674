"""Edit fidelity: one scene's edits scored against their ground truth.

The benchmark is `benchmarks/edit_fidelity.py` (held-out synthetic scenes, the run, the CLI);
the ground truth comes from the synthetic generator (`data_pipelines/synthetic_edits.py`), the
edits from `evaluation/edit_cases.py`, the paired differences and "takes effect" from
`evaluation/edit_effects.py` and the tables, HTML and PNG grids from `evaluation/edit_report.py`.
This module scores: `score_edits` renders each edit with the model (`render_model`: the same
noise for every edit of a scene) and scores it and its baselines against the ground-truth render
of the edit (`ground_truth(edit)`).

Scores (per scene and edit type; means over scenes), each against the ground-truth render of the
edit:
- image level: PSNR (capped at PSNR_CAP dB, so identical images score the cap, not inf), SSIM
  and LPIPS (`--lpips_weights`, the installed pretrained AlexNet by default) on [0, 1] images;
- region level: the same three inside the union of the edited object's boxes before and after
  the edit (the boxes of its ground-truth masks in the unedited and edited renders; all objects
  for camera edits; the whole image for a background swap), as the smallest rectangle holding
  both, cropped and resized to `--crop_size` as the object-level metrics
  (`evaluation/object_regions.py`);
- localisation IoU. Choice: IoU between the edited object's ground-truth mask (its visible
  pixels in the ground-truth render of the edit; for `remove`, in the unedited render) and the
  pixels where the model's render WITH the object differs from its render WITHOUT it (same noise)
  by more than `--diff_threshold` in some colour channel (max over RGB of |difference|, [0, 1]); for `remove`,
  with = the unedited scene, without = the edit. Why: it asks the model itself where it drew the
  object, so it is independent of colour fidelity (a right-place, wrong-colour object still
  localises) and of the rest of the image; the generator has no shadows, so for the ground truth
  the same difference is exactly the object's visible silhouette (up to pixels whose colour
  matches what is behind within the threshold): a perfect model scores IoU 1. A background swap
  has no object: its localisation is the IoU of the pixels the swap changes (model: its render
  of the swap vs of the unedited scene; truth: the same pair of ground-truth renders).

An edit is used only if its ground truth differs from the unedited ground truth in at least
MIN_GROUND_TRUTH_CHANGE of the scored region's pixels (else the next magnitude / object is tried).

Methods, all scored against the same ground truth:
- `model`: the model's render of the edit;
- `model, unedited`: the model's render of the unedited scene (same noise): isolates whether the
  edit itself took effect. Its localisation = where it draws the object unedited (its render with
  vs without the object); nothing (IoU 0) for added objects, `remove` (it removes nothing) and
  a background swap (it changes nothing);
- `source frame`: the unedited source frame; localisation = the object's source-frame mask
  (nothing, as above, for added objects, `remove` and a background swap);
- `ground truth (ceiling)`: the ground-truth render itself through the same scoring: PSNR at the
  cap, SSIM 1, LPIPS 0, IoU ~1 (the tests check this exactly on a chosen scene).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from neural_assets import editing
from neural_assets.evaluation import edit_cases

METHODS = ("model", "model, unedited", "source frame", "ground truth (ceiling)")
METRICS = ("image/psnr", "image/ssim", "image/lpips", "region/psnr", "region/ssim",
           "region/lpips", "localisation/iou")
PSNR_CAP = 100.0
# An edit must change its ground truth visibly: at least this fraction of the scored region's
# pixels differs from the unedited ground truth (by more than `diff_threshold`, as in the
# localisation), else the next magnitude / object is tried (a 45-degree turn of a box can look
# the same). On the demo worlds the accepted edits change 20-90% (tests/test_edit_fidelity.py).
MIN_GROUND_TRUTH_CHANGE = 0.2
FULL_IMAGE_BOX = np.array([0.0, 0.0, 1.0, 1.0], np.float32)  # a background swap's region.

# (rgb [H, W, 3] uint8, asset index -> mask [H, W] bool): an edit's ground truth.
GroundTruthFn = Callable[[editing.Edit], tuple[np.ndarray, dict[int, np.ndarray]]]
# (scene, edits [E]) -> [E, H, W, 3] uint8 renders.
RenderFn = Callable[[editing.Scene, Sequence[editing.Edit]], np.ndarray]


def mask_box(mask: np.ndarray) -> Optional[np.ndarray]:
  """[H, W] bool -> normalised [y0, x0, y1, x1] of its pixels (pixel edges), None if empty."""
  ys, xs = np.nonzero(mask)
  if ys.size == 0:
    return None
  h, w = mask.shape
  return np.array([ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w],
                  np.float32)


def union_box(boxes: Sequence[Optional[np.ndarray]]) -> Optional[np.ndarray]:
  boxes = [b for b in boxes if b is not None]
  if not boxes:
    return None
  boxes = np.stack(boxes)
  return np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)])


def difference_mask(with_image: np.ndarray, without_image: np.ndarray,
                    threshold: float) -> np.ndarray:
  """[H, W] bool: max over RGB of |with - without| (in [0, 1]) above `threshold`."""
  diff = np.abs(with_image.astype(np.float32) - without_image.astype(np.float32)) / 255.0
  return diff.max(axis=-1) > threshold


def iou(predicted: Optional[np.ndarray], truth: np.ndarray) -> float:
  """IoU of two [H, W] bool masks (None = empty prediction); NaN when the truth is empty."""
  if not truth.any():
    return float("nan")
  if predicted is None:
    return 0.0
  return float((predicted & truth).sum() / (predicted | truth).sum())


class Scorer:
  """PSNR / SSIM / LPIPS of uint8 images and of box crops (jitted once per shape)."""

  def __init__(self, lpips_fn: Optional[Callable[[Any, Any], Any]] = None, crop_size: int = 64):
    import jax  # pylint: disable=g-import-not-at-top
    from neural_assets.evaluation import image_metrics  # pylint: disable=g-import-not-at-top
    from neural_assets.evaluation import object_regions  # pylint: disable=g-import-not-at-top
    self.lpips_fn, self.crop_size = lpips_fn, crop_size
    self._psnr = jax.jit(lambda x, y: image_metrics.psnr(x, y, 1.0))
    self._ssim = jax.jit(lambda x, y: image_metrics.ssim(x, y, 1.0))
    self._crop = jax.jit(lambda images, boxes: object_regions.crop_boxes(images, boxes,
                                                                          crop_size)[:, 0])

  def _scores(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """x, y: [B, H, W, 3] float in [0, 1] -> mean psnr (capped), ssim, lpips."""
    psnr = np.minimum(np.asarray(self._psnr(x, y), np.float64), PSNR_CAP)
    out = {"psnr": float(psnr.mean()), "ssim": float(np.asarray(self._ssim(x, y)).mean())}
    out["lpips"] = (float(np.asarray(self.lpips_fn(x, y)).mean()) if self.lpips_fn
                    else float("nan"))
    return out

  def image(self, pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return self._scores(pred[None] / 255.0, truth[None] / 255.0)

  def region(self, pred: np.ndarray, truth: np.ndarray,
             box: Optional[np.ndarray]) -> dict[str, float]:
    if box is None:
      return {"psnr": float("nan"), "ssim": float("nan"), "lpips": float("nan")}
    both = np.stack([pred, truth]).astype(np.float32) / 255.0
    crops = np.asarray(self._crop(both, np.broadcast_to(box, (2, 1, 4))))
    return self._scores(crops[:1], crops[1:])


def _without_in_unedited(unedited, k, cache):
  if k not in cache:
    cache[k] = editing.remove(unedited, k)
  return cache[k]


def changed_fraction(edited: np.ndarray, unedited: np.ndarray, box: Optional[np.ndarray],
                     threshold: float) -> float:
  """Fraction of the pixels inside normalised `box` (None: 0) where two [H, W, 3] uint8 images
  differ (`difference_mask`)."""
  if box is None:
    return 0.0
  h, w = edited.shape[:2]
  y0, x0 = int(np.floor(box[0] * h)), int(np.floor(box[1] * w))
  y1, x1 = max(int(np.ceil(box[2] * h)), y0 + 1), max(int(np.ceil(box[3] * w)), x0 + 1)
  return float(difference_mask(edited[y0:y1, x0:x1], unedited[y0:y1, x0:x1], threshold).mean())


def score_edits(scene: editing.Scene, donors: Sequence[editing.Scene],
                ground_truth: GroundTruthFn, max_objects: int, render_model: RenderFn,
                scorer: Scorer, diff_threshold: float = 0.1,
                min_change: float = MIN_GROUND_TRUTH_CHANGE) -> dict[str, Any]:
  """All edit types on one scene, every method scored against the ground truth.

  Args:
    scene: the scene to edit. donors: scenes donating inserted objects and backgrounds, in order.
    ground_truth: edit -> (rgb, masks), the ground-truth render of an edit of `scene` (and
      `donors`); called once per edit (it may cache by identity).
    render_model: (scene, edits) -> [E, H, W, 3] uint8 renders (the model; a test may pass the
      ground-truth renderer: a perfect model).
    min_change: an edit is used only if its ground truth differs from the unedited ground truth
      in at least this fraction of the scored region's pixels (`changed_fraction`).

  Returns:
    {'scores': {type: {method: {metric: value}}}, 'images': {type: [source, truth, model,
    unedited model, localisation overlay]}, 'notes': {type: edit name}, 'ground_truth_change':
    {type: changed fraction of its region}, 'unedited_psnr': PSNR of the unedited ground truth
    against the source frame}.
  """
  resolution = scene.image.shape[:2]
  unedited = editing.as_edit(scene)
  u_img, u_masks = ground_truth(unedited)

  def region_of(case):
    """The scored region: the edited objects' ground-truth boxes before and after (the whole
    image for a background swap)."""
    if case.with_edit is not None and case.obj is None:
      return FULL_IMAGE_BOX
    gt_masks = ground_truth(case.edit)[1]
    return union_box([mask_box(m[a]) for m in (u_masks, gt_masks) for a in case.region_assets
                      if a in m])

  changes: dict[str, float] = {}

  def visible(name, case):
    changes[name] = changed_fraction(ground_truth(case.edit)[0], u_img, region_of(case),
                                     diff_threshold)
    return changes[name] >= min_change

  cases = edit_cases.make_cases(scene, donors, max_objects, visible, unedited)
  no_k: dict[int, editing.Edit] = {}
  for case in cases.values():
    if case is not None and case.in_unedited and case.obj is not None:
      _without_in_unedited(unedited, case.obj, no_k)
  edits = edit_cases.render_list(cases, unedited) + list(no_k.values())
  model_images = dict(zip(map(id, edits), np.asarray(render_model(scene, edits))))
  scores, images, notes, kept_changes = {}, {}, {}, {}
  for name, case in cases.items():
    if case is None:
      notes[name] = "no variant accepted"
      continue
    notes[name] = case.edit.name
    kept_changes[name] = changes[name]
    gt_img = ground_truth(case.edit)[0]
    model_img, unedited_img = model_images[id(case.edit)], model_images[id(unedited)]
    region = region_of(case)
    loc = {method: float("nan") for method in METHODS}
    pred_mask = None
    if case.with_edit is not None:
      # Localisation: where the object is present (the `with` render) vs absent; for a
      # background swap, the pixels the swap changes.
      with_img, with_masks = ground_truth(case.with_edit)
      without_truth = ground_truth(case.without_edit)[0]
      gt_diff = difference_mask(with_img, without_truth, diff_threshold)
      gt_mask = (with_masks.get(case.obj, np.zeros(resolution, bool)) if case.obj is not None
                 else gt_diff)
      pred_mask = difference_mask(model_images[id(case.with_edit)],
                                  model_images[id(case.without_edit)], diff_threshold)
      loc["model"] = iou(pred_mask, gt_mask)
      loc["ground truth (ceiling)"] = iou(gt_diff, gt_mask)
      # The baselines leave the scene as it is: they localise the object where the unedited
      # scene has it, and nothing for a removal (`remove`: the edit is the `without` render).
      unedited_has = (case.obj is not None and case.in_unedited
                      and case.without_edit is not case.edit)
      loc["model, unedited"] = iou(
          difference_mask(unedited_img, model_images[id(no_k[case.obj])], diff_threshold)
          if unedited_has else None, gt_mask)
      loc["source frame"] = iou(u_masks.get(case.obj) if unedited_has else None, gt_mask)
    preds = {"model": model_img, "model, unedited": unedited_img, "source frame": scene.image,
             "ground truth (ceiling)": gt_img}
    scores[name] = {}
    for method, pred in preds.items():
      s = {f"image/{k}": v for k, v in scorer.image(pred, gt_img).items()}
      s.update({f"region/{k}": v for k, v in scorer.region(pred, gt_img, region).items()})
      s["localisation/iou"] = loc[method]
      scores[name][method] = s
    overlay = np.zeros(resolution + (3,), np.uint8)
    if pred_mask is not None:
      overlay[..., 1] = np.where(gt_mask, 255, 0)
      overlay[..., 0] = np.where(pred_mask, 255, 0)
    images[name] = [_draw_region(scene.image, region), gt_img, model_img, unedited_img, overlay]
  check = scorer.image(u_img, scene.image)["psnr"]
  return {"scores": scores, "images": images, "notes": notes,
          "ground_truth_change": kept_changes, "unedited_psnr": check}


def _draw_region(image, box):
  from neural_assets import report as report_lib  # pylint: disable=g-import-not-at-top
  if box is None:
    return image
  return report_lib.to_uint8(report_lib.draw_boxes(image, box[None], color=(255, 255, 0)))


def aggregate(per_scene: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
  """Mean (ignoring NaN) and count of every metric over the scenes: {type: {method: {...}}}."""
  out = {}
  for name in edit_cases.EDIT_TYPES:
    out[name] = {}
    for method in METHODS:
      values = {m: [s["scores"][name][method][m] for s in per_scene if name in s["scores"]]
                for m in METRICS}
      row = {}
      for m, v in values.items():
        v = np.asarray(v, np.float64)
        finite = v[~np.isnan(v)]
        row[m] = float(finite.mean()) if finite.size else None
      row["scenes"] = int(sum(name in s["scores"] for s in per_scene))
      out[name][method] = row
  return out


def summary(means: Mapping[str, Any], method: str = "model") -> dict[str, Optional[float]]:
  """Mean over edit types of each metric of one method (NaN / n/a types skipped)."""
  out = {}
  for m in METRICS:
    v = [means[name][method][m] for name in means if means[name][method][m] is not None]
    out[m] = float(np.mean(v)) if v else None
  return out
