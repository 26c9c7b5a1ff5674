"""The edit-fidelity report: text tables, `index.html` and one PNG grid per edit type.

`write_outputs(out_dir, report, per_scene)` writes `edit_fidelity.json` (the run's report, see
`benchmarks/edit_fidelity.py`), `table.md` (the verdict table with the intervals, then the
means, each row marked), `index.html` (the same) and one PNG grid per edit type
(`grid_<type>.png`: rows = scenes; columns source | ground truth | model | model, unedited |
localisation: green = ground-truth mask only, red = model only, yellow = both).
"""
from __future__ import annotations

import html
import json
import os
from typing import Any, Mapping, Optional, Sequence

from neural_assets import images
from neural_assets.evaluation import edit_cases
from neural_assets.evaluation.edit_effects import BASELINES, DIFFERENCE_METRICS
from neural_assets.evaluation.edit_fidelity import METHODS, METRICS


def _fmt(value, metric):
  if value is None:
    return "n/a"
  return f"{value:.2f}" if "psnr" in metric else f"{value:.3f}"


def format_table(means: Mapping[str, Any], methods: Sequence[str] = METHODS,
                 effects: Optional[Mapping[str, bool]] = None) -> str:
  """Markdown table: one row per (edit type, method); with `effects`, each row says whether its
  edit type takes effect."""
  marks = ["takes effect"] if effects is not None else []
  header = "| edit | " + " | ".join(marks + ["method", "scenes"] + list(METRICS)) + " |"
  lines = [header, "|" + "---|" * (len(METRICS) + 3 + len(marks))]
  for name, by_method in means.items():
    mark = [("YES" if effects[name] else "no")] if effects is not None else []
    for method in methods:
      row = by_method[method]
      lines.append(f"| {name} | " + " | ".join(mark + [method, str(row["scenes"])]) + " | "
                   + " | ".join(_fmt(row[m], m) for m in METRICS) + " |")
  return "\n".join(lines)


def format_difference(d: Mapping[str, Any], metric: str) -> str:
  if d["mean"] is None:
    return "n/a"
  digits = 2 if "psnr" in metric else 3
  mark = "*" if d["better_than_zero"] else ""
  if d["low"] is None:
    return f"{d['mean']:+.{digits}f} (n={d['n']})"
  return f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]{mark}"


def _effect_columns() -> list[str]:
  return [f"{metric} vs {baseline}" for baseline in BASELINES for metric in DIFFERENCE_METRICS]


def _effect_cells(by_baseline: Mapping[str, Any]) -> list[str]:
  return [format_difference(by_baseline[b][m], m) for b in BASELINES for m in DIFFERENCE_METRICS]


def format_effects(differences: Mapping[str, Any], effects: Mapping[str, bool]) -> str:
  """Markdown table: per edit type, whether it takes effect and model - baseline with its
  interval (* = the whole interval on the better side of zero)."""
  columns = _effect_columns()
  lines = ["| edit | takes effect | scenes | " + " | ".join(columns) + " |",
           "|" + "---|" * (len(columns) + 3)]
  for name, by_baseline in differences.items():
    n = max(d["n"] for b in by_baseline.values() for d in b.values())
    lines.append(f"| {name} | {'YES' if effects[name] else 'no'} | {n} | "
                 + " | ".join(_effect_cells(by_baseline)) + " |")
  return "\n".join(lines)


def default_out_dir(checkpoint: str) -> str:
  """CHECKPOINT/edit_fidelity for a (demo or training) workdir; beside `checkpoints/` else."""
  path = os.path.abspath(os.path.expanduser(checkpoint))
  while os.path.basename(path).isdigit() or os.path.basename(path) in ("checkpoints", "train"):
    if os.path.basename(path) == "train" and not os.path.isdir(os.path.join(path, "checkpoints")):
      break
    path = os.path.dirname(path)
  return os.path.join(path, "edit_fidelity")


def write_outputs(out_dir: str, report: Mapping[str, Any], per_scene) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "edit_fidelity.json"), "w") as f:
    json.dump(report, f, indent=2, default=str)
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(format_report_tables(report) + "\n")
  grids = []
  for name in edit_cases.EDIT_TYPES:
    rows = [s["images"][name] for s in per_scene if name in s["images"]]
    if not rows:
      continue
    path = f"grid_{images.slug(name)}.png"
    images.write_png(images.image_grid(rows), os.path.join(out_dir, path), scale=2)
    grids.append((name, path))
  columns = ("source (scored region boxed)", "ground truth", "model", "model, unedited",
             "localisation: green = truth only, red = model only, yellow = both")
  body = [f"<h1>Edit fidelity {html.escape(report.get('label') or '')}</h1>",
          f"<p>Checkpoint step {report['checkpoint_step']}; {report['settings']['num_scenes']} "
          f"held-out scenes (seed {report['settings']['held_out_seed']}); "
          f"{html.escape(report['machine'])}, load {report['load_1min_start_end']}, "
          f"{report['seconds']} s. Module docstring of "
          "neural_assets/evaluation/edit_fidelity.py: how each score is defined.</p>",
          "<h2>Does each edit take effect?</h2>", f"<p>{html.escape(EFFECTS_CAPTION)}</p>",
          _effects_html(report["differences"], report["takes_effect"]),
          "<h2>Means</h2>", _table_html(report["means"], report["takes_effect"])]
  for name, path in grids:
    body.append(f"<h2>{html.escape(name)}</h2><p>{' | '.join(map(html.escape, columns))}</p>"
                f"<img src='{path}' alt='{html.escape(name)}'>")
  with open(os.path.join(out_dir, "index.html"), "w") as f:
    f.write("<!doctype html><meta charset='utf-8'><title>Edit fidelity</title>"
            "<style>td,th{padding:2px 6px;border:1px solid #ccc}table{border-collapse:collapse}"
            "</style>" + "\n".join(body))


def _table_html(means, effects: Optional[Mapping[str, bool]] = None) -> str:
  marks = "<th>takes effect</th>" if effects is not None else ""
  rows = [f"<table><tr><th>edit</th>{marks}<th>method</th><th>scenes</th>"
          + "".join(f"<th>{m}</th>" for m in METRICS) + "</tr>"]
  for name, by_method in means.items():
    mark = (f"<td>{'YES' if effects[name] else 'no'}</td>" if effects is not None else "")
    for method in METHODS:
      row = by_method[method]
      rows.append(f"<tr><td>{html.escape(name)}</td>{mark}<td>{html.escape(method)}</td>"
                  f"<td>{row['scenes']}</td>"
                  + "".join(f"<td>{_fmt(row[m], m)}</td>" for m in METRICS) + "</tr>")
  return "".join(rows) + "</table>"


def _effects_html(differences, effects) -> str:
  rows = ["<table><tr><th>edit</th><th>takes effect</th><th>scenes</th>"
          + "".join(f"<th>{html.escape(c)}</th>" for c in _effect_columns()) + "</tr>"]
  for name, by_baseline in differences.items():
    n = max(d["n"] for b in by_baseline.values() for d in b.values())
    style = " style='background:#cfc'" if effects[name] else ""
    rows.append(f"<tr{style}><td>{html.escape(name)}</td>"
                f"<td>{'YES' if effects[name] else 'no'}</td><td>{n}</td>"
                + "".join(f"<td>{html.escape(c)}</td>" for c in _effect_cells(by_baseline))
                + "</tr>")
  return "".join(rows) + "</table>"


EFFECTS_CAPTION = (
    "Paired differences model - baseline over the same held-out scenes, mean [95% bootstrap "
    "interval] (* = the whole interval on the better side of zero: higher PSNR / IoU, lower "
    "LPIPS). An edit type takes effect when the model beats both its unedited render and the "
    "source frame in region PSNR and localisation IoU at the lower end of the interval.")


def format_report_tables(report: Mapping[str, Any]) -> str:
  """The text tables of a run: whether each edit takes effect (intervals), then the means."""
  return (f"{EFFECTS_CAPTION}\n\n"
          + format_effects(report["differences"], report["takes_effect"])
          + "\n\nMeans per edit type and method:\n\n"
          + format_table(report["means"], effects=report["takes_effect"]))
