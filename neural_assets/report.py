"""The demo's HTML report: image grids, training curves, metrics table, config and run facts.

Everything here is a pure function of arrays / dicts that writes files, so it is testable
without a model:

  grid = images.image_grid([[source, target, sample], ...])     # [rows*H, cols*W, 3] uint8
  curves = read_event_scalars(workdir)                          # {'train/loss': (steps, values)}
  write_report(out_dir, grids=[Grid('recon', 'Reconstruction', grid, ['source', ...])],
               curves=curves, metrics={'model': {...}, 'copy source frame': {...}},
               config_text=config.to_json_best_effort(indent=2), run_info={'steps': 120})

`out_dir/index.html` references the PNGs written next to it (`grid_<name>.png`,
`curves_<group>.png`), so the folder is self-contained; `embed_images=True` inlines them as
base64 as well, so the single HTML file can travel alone. A Grid with `animation` frames also
gets an animated GIF (`anim_<name>.gif`, e.g. an edit trajectory) shown under its image.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from neural_assets.images import to_uint8, write_png

# Direction of improvement of each metric name (the part after 'image/' or 'object/').
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "dino": True, "lpips": False, "fid": False}
_LEVEL_ORDER = ("image", "object")
_METRIC_ORDER = ("psnr", "ssim", "lpips", "fid", "dino", "count")


@dataclasses.dataclass(frozen=True)
class Grid:
  """One figure of the report.

  name: file-safe id (the PNG is `grid_<name>.png`); title: heading; image: [H, W, 3] uint8 or
  float in [0, 1]; columns: optional column labels shown above the image; caption: free text.
  animation: optional [F, H', W', 3] uint8 frames, written as `anim_<name>.gif` (upscaled as the
  grids, looping at `animation_fps`) and shown under the image with `animation_caption`.
  """
  name: str
  title: str
  image: np.ndarray
  columns: Sequence[str] = ()
  caption: str = ""
  animation: Optional[np.ndarray] = None
  animation_caption: str = ""
  animation_fps: float = 6.0


# ---------------------------------------------------------------------------------------------
# Images.


def draw_boxes(image: Any, boxes: Any, color: Sequence[int] = (255, 0, 0),
               thickness: int = 1) -> np.ndarray:
  """Outlines normalised [y0, x0, y1, x1] boxes [K, 4] on an image -> [H, W, 3] uint8 copy.

  All-zero rows (padded slots) are skipped.
  """
  out = to_uint8(image).copy()
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  height, width = out.shape[:2]
  for y0, x0, y1, x1 in boxes:
    if not np.any([y0, x0, y1, x1]):
      continue
    top, bottom = int(np.clip(y0 * height, 0, height - 1)), int(np.clip(y1 * height - 1, 0,
                                                                        height - 1))
    left, right = int(np.clip(x0 * width, 0, width - 1)), int(np.clip(x1 * width - 1, 0,
                                                                      width - 1))
    t = thickness
    out[top:top + t, left:right + 1] = color
    out[max(bottom - t + 1, 0):bottom + 1, left:right + 1] = color
    out[top:bottom + 1, left:left + t] = color
    out[top:bottom + 1, max(right - t + 1, 0):right + 1] = color
  return out


# ---------------------------------------------------------------------------------------------
# Curves.


def read_event_scalars(logdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Scalars of the TensorBoard event files directly in `logdir` (what clu's writer makes).

  Returns {tag: (steps [T] int64, values [T] float64)} sorted by step (a step written twice, e.g.
  by a resumed run, keeps its last value). Reads both TF2 tensor summaries and legacy scalars.
  """
  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  # pylint: enable=g-import-not-at-top
  accumulator = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0,
                             event_accumulator.IMAGES: 1, event_accumulator.HISTOGRAMS: 1})
  accumulator.Reload()
  tags = accumulator.Tags()
  raw: dict[str, dict[int, float]] = {}
  for tag in tags.get(event_accumulator.TENSORS, []):
    for event in accumulator.Tensors(tag):
      value = tensor_util.make_ndarray(event.tensor_proto)
      if value.size == 1 and np.issubdtype(value.dtype, np.number):
        raw.setdefault(tag, {})[int(event.step)] = float(value.reshape(()))
  for tag in tags.get(event_accumulator.SCALARS, []):
    for event in accumulator.Scalars(tag):
      raw.setdefault(tag, {})[int(event.step)] = float(event.value)
  curves = {}
  for tag, points in raw.items():
    steps = np.array(sorted(points), np.int64)
    curves[tag] = (steps, np.array([points[s] for s in steps], np.float64))
  return curves


def plot_curves(curves: Mapping[str, tuple[Any, Any]], path: str, title: str = "",
                columns: int = 3) -> str:
  """One subplot per tag (sorted), step on x; writes a PNG. Raises if `curves` is empty."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  if not curves:
    raise ValueError("plot_curves needs at least one curve.")
  tags = sorted(curves)
  cols = min(columns, len(tags))
  rows = -(-len(tags) // cols)
  figure = Figure(figsize=(4.0 * cols, 2.8 * rows), dpi=100)
  for i, tag in enumerate(tags):
    steps, values = (np.asarray(a) for a in curves[tag])
    axis = figure.add_subplot(rows, cols, i + 1)
    axis.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3)
    axis.set_title(tag, fontsize=9)
    axis.set_xlabel("step", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.grid(alpha=0.3)
  if title:
    figure.suptitle(title)
  figure.tight_layout()
  figure.savefig(path, format="png")
  return path


def group_curves(curves: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """{'train/loss': c, 'eval/image/psnr': d} -> {'train': {'train/loss': c}, 'eval': {...}}."""
  groups: dict[str, dict[str, Any]] = {}
  for tag, curve in curves.items():
    groups.setdefault(tag.split("/")[0] if "/" in tag else "other", {})[tag] = curve
  return groups


# ---------------------------------------------------------------------------------------------
# Tables.


def metric_sort_key(name: str) -> tuple[int, int, str]:
  level, _, metric = name.partition("/")
  level_rank = _LEVEL_ORDER.index(level) if level in _LEVEL_ORDER else len(_LEVEL_ORDER)
  metric_rank = _METRIC_ORDER.index(metric) if metric in _METRIC_ORDER else len(_METRIC_ORDER)
  return level_rank, metric_rank, name


def format_value(value: Any) -> str:
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    return f"{float(value):.4f}"
  return html.escape(str(value))


def _format_metric(name: str, value: Any) -> str:
  if name.endswith("/count") and float(value).is_integer():
    return str(int(value))  # Counts arrive as floats from the metric writers.
  return format_value(value)


def metrics_table_html(metrics: Mapping[str, Mapping[str, Any]]) -> str:
  """HTML table: one row per method (e.g. 'model', 'copy source frame'), one column per metric.

  Columns are the union of the rows' keys ('image/psnr', 'object/ssim', ...), ordered by level
  then metric; the header marks the direction of improvement; missing cells show '-'; values
  have 4 decimals, '<level>/count' columns are integers.
  """
  if not metrics:
    raise ValueError("metrics_table_html needs at least one row.")
  names = sorted({k for row in metrics.values() for k in row}, key=metric_sort_key)
  header = []
  for name in names:
    better = HIGHER_IS_BETTER.get(name.rpartition("/")[2])
    arrow = "" if better is None else (" &uarr;" if better else " &darr;")
    header.append(f"<th>{html.escape(name)}{arrow}</th>")
  lines = ["<table class='metrics'>", "<tr><th>method</th>" + "".join(header) + "</tr>"]
  for method, row in metrics.items():
    cells = "".join(f"<td>{_format_metric(n, row[n]) if n in row else '-'}</td>" for n in names)
    lines.append(f"<tr><td>{html.escape(method)}</td>{cells}</tr>")
  lines.append("</table>")
  return "\n".join(lines)


def key_value_table_html(values: Mapping[str, Any]) -> str:
  rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{format_value(v)}</td></tr>"
                 for k, v in values.items())
  return f"<table class='info'>{rows}</table>"


# ---------------------------------------------------------------------------------------------
# The page.

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 3px 8px; font-size: 13px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
img { image-rendering: pixelated; max-width: 100%; border: 1px solid #ddd; }
.columns { font-size: 12px; color: #444; }
pre { background: #f5f5f5; padding: 1em; font-size: 11px; max-height: 30em; overflow: auto; }
"""


def _img_tag(path: str, alt: str, embed: bool) -> str:
  if embed:
    with open(path, "rb") as f:
      data = base64.b64encode(f.read()).decode("ascii")
    mime = "image/gif" if path.lower().endswith(".gif") else "image/png"
    src = f"data:{mime};base64,{data}"
  else:
    src = html.escape(os.path.basename(path))
  return f"<img src='{src}' alt='{html.escape(alt)}'>"


def write_report(out_dir: str, *, grids: Sequence[Grid],
                 metrics: Mapping[str, Mapping[str, Any]],
                 curves: Optional[Mapping[str, tuple[Any, Any]]] = None,
                 config_text: str = "", run_info: Optional[Mapping[str, Any]] = None,
                 title: str = "Neural Assets demo", notes: Sequence[str] = (),
                 image_scale: int = 4, embed_images: bool = False,
                 tables: Optional[Mapping[str, tuple[str, Mapping[str, Mapping[str, Any]]]]]
                 = None, links: Optional[Mapping[str, str]] = None) -> str:
  """Writes out_dir/index.html plus its PNGs; returns the HTML path.

  Args:
    out_dir: created if missing.
    grids: image figures, in page order (names must be unique).
    metrics: {method: {'image/psnr': value, ...}} for the metrics table (e.g. model vs the
      copy-source-frame baseline).
    curves: {tag: (steps, values)}; plotted one PNG per tag prefix ('train', 'eval', ...).
    config_text: the experiment config (JSON / text), shown verbatim.
    run_info: measured facts (wall-clock, steps, machine load, ...), shown as a table.
    notes: paragraphs of plain text shown under the title.
    image_scale: nearest-neighbour upscaling of the grid PNGs (small images stay visible).
    embed_images: inline the PNGs as base64 in the HTML as well.
    tables: {title: (caption, {row: {column: value}})}, more tables after the metrics.
    links: {title of a table: href}: a link under that table (e.g. its full report).
  """
  names = [g.name for g in grids]
  if len(set(names)) != len(names):
    raise ValueError(f"Grid names must be unique, got {names}.")
  os.makedirs(out_dir, exist_ok=True)
  parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
  parts += [f"<p>{html.escape(n)}</p>" for n in notes]
  if run_info:
    parts += ["<h2>Run</h2>", key_value_table_html(run_info)]
  parts += ["<h2>Metrics</h2>", metrics_table_html(metrics)]
  for table_title, (caption, rows) in (tables or {}).items():
    parts += [f"<h2>{html.escape(table_title)}</h2>", f"<p>{html.escape(caption)}</p>",
              metrics_table_html(rows)]
    if links and table_title in links:
      href = html.escape(links[table_title], quote=True)
      parts.append(f"<p><a href='{href}'>{html.escape(links[table_title])}</a></p>")
  for grid in grids:
    path = write_png(grid.image, os.path.join(out_dir, f"grid_{grid.name}.png"), image_scale)
    parts.append(f"<h2>{html.escape(grid.title)}</h2>")
    if grid.columns:
      parts.append(f"<p class='columns'>Columns: {html.escape(' | '.join(grid.columns))}</p>")
    if grid.caption:
      parts.append(f"<p>{html.escape(grid.caption)}</p>")
    parts.append(_img_tag(path, grid.title, embed_images))
    if grid.animation is not None:
      from neural_assets.editing import trajectory  # pylint: disable=g-import-not-at-top
      gif = trajectory.write_video(np.asarray(grid.animation),
                                   os.path.join(out_dir, f"anim_{grid.name}.gif"),
                                   grid.animation_fps, image_scale)
      if grid.animation_caption:
        parts.append(f"<p>{html.escape(grid.animation_caption)}</p>")
      parts.append(_img_tag(gif, f"{grid.title} (animation)", embed_images))
  if curves:
    parts.append("<h2>Training curves</h2>")
    for group, group_curves_ in sorted(group_curves(curves).items()):
      path = plot_curves(group_curves_, os.path.join(out_dir, f"curves_{group}.png"), group)
      parts.append(_img_tag(path, f"{group} curves", embed_images))
  if config_text:
    parts += ["<h2>Config</h2>", f"<pre>{html.escape(config_text)}</pre>"]
  parts.append("</body></html>")
  path = os.path.join(out_dir, "index.html")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(parts))
  return path
