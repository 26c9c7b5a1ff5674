r"""The edit-fidelity benchmark: edits of held-out synthetic scenes against the generator's truth.

  python -m benchmarks.edit_fidelity --checkpoint WORKDIR [--num_scenes 32] [--seed 1000] \
      [--out_dir DIR] [--lpips_weights pretrained|none|FILES] [--num_steps N] [--guidance G]

Scores a checkpoint with `neural_assets/demo/edit_benchmark.run` (what it renders and scores is
described there; the demo scores its own checkpoint the same way).

Writes to `--out_dir` (default: CHECKPOINT/edit_fidelity, i.e. WORKDIR/edit_fidelity for a demo
workdir, which the demo report links; `evaluation/edit_report.py`): `edit_fidelity.json`
(`takes_effect` {type: bool}, `differences` {type: {baseline: {metric: {mean, low, high, n,
better, better_than_zero}}}}, `means` {type: {method: {metric: mean, scenes}}}, `per_scene`
[{video, notes (the edit applied), scores {type: {method: {metric}}}, ground_truth_change {type:
fraction}}], settings (seeds, magnitudes, bootstrap), machine and load), `table.md`,
`index.html` and one PNG grid per edit type, and prints the tables: per edit type whether it
takes effect (model - baseline with 95% bootstrap intervals, paired over scenes), then the
means. The JSON also goes to `--results_json` (benchmarks/results/ by default).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional, Sequence

from data_pipelines.synthetic_edits import DEFAULT_SEED
from neural_assets.demo import edit_benchmark
from neural_assets.evaluation.edit_effects import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED,
                                                   DEFAULT_NUM_SCENES)
from neural_assets.evaluation.edit_fidelity import MIN_GROUND_TRUTH_CHANGE
from neural_assets.evaluation.edit_report import default_out_dir, format_report_tables

_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        "edit_fidelity.json")


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="Demo workdir, training workdir, checkpoints/ dir or step dir.")
  parser.add_argument("--step", type=int, default=None)
  parser.add_argument("--num_scenes", type=int, default=DEFAULT_NUM_SCENES,
                      help="Held-out scenes per edit type (the intervals need ~32).")
  parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                      help="Held-out generator stream (not the training / eval seeds).")
  parser.add_argument("--out_dir", default=None, help="Default: CHECKPOINT/edit_fidelity.")
  parser.add_argument("--results_json", default=_RESULTS, help="'' to skip.")
  parser.add_argument("--lpips_weights", default=None,
                      help='"pretrained" (installed v0.1 weights), "none" or files (lpips.py). '
                      "Default: the experiment's evaluation.lpips, as its held-out eval scores.")
  parser.add_argument("--lpips_net", default=None, help="alex | vgg. Default: the experiment's.")
  parser.add_argument("--diff_threshold", type=float, default=0.1)
  parser.add_argument("--crop_size", type=int, default=64)
  parser.add_argument("--render_seed", type=int, default=0)
  parser.add_argument("--guidance", type=float, default=None)
  parser.add_argument("--num_steps", type=int, default=None)
  parser.add_argument("--min_change", type=float, default=MIN_GROUND_TRUTH_CHANGE,
                      help="Fraction of an edit's scored region its ground truth must change.")
  parser.add_argument("--bootstrap_seed", type=int, default=BOOTSTRAP_SEED)
  parser.add_argument("--bootstrap_resamples", type=int, default=BOOTSTRAP_RESAMPLES)
  parser.add_argument("--label", default="")
  args = parser.parse_args(argv)
  bundle = edit_benchmark.load_bundle(args.checkpoint, args.step)
  out_dir = args.out_dir or default_out_dir(args.checkpoint)
  lpips_fn = edit_benchmark.experiment_lpips(bundle, args.lpips_weights, args.lpips_net)
  report = edit_benchmark.run(bundle, num_scenes=args.num_scenes, seed=args.seed,
                              out_dir=out_dir, lpips_fn=lpips_fn,
                              diff_threshold=args.diff_threshold,
                              crop_size=args.crop_size, render_seed=args.render_seed,
                              guidance_scale=args.guidance, num_steps=args.num_steps,
                              label=args.label or args.checkpoint, min_change=args.min_change,
                              bootstrap_seed=args.bootstrap_seed,
                              n_resamples=args.bootstrap_resamples)
  print(format_report_tables(report))
  print(f"\nWrote {out_dir}/index.html, edit_fidelity.json, table.md and the grids "
        f"({report['seconds']} s, {report['machine']}, load {report['load_1min_start_end']}).")
  if args.results_json:
    os.makedirs(os.path.dirname(os.path.abspath(args.results_json)), exist_ok=True)
    with open(args.results_json, "w") as f:
      json.dump(report, f, indent=2, default=str)
  return report


if __name__ == "__main__":
  main()
