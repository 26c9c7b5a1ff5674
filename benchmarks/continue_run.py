r"""Continues a demo run from one of its checkpoints with changed settings, and scores it.

  python -m benchmarks.continue_run --config configs/synthetic_3d.py --run workdir/demo_3d \
      --from_step 14000 --to_step 17586 --workdir /tmp/anneal --set 'optimizer.decay="linear"' \
      --set optimizer.hold_steps=13900 --set optimizer.decay_steps=3586 \
      --against workdir/demo_3d/edit_fidelity/edit_fidelity.json

What it is for: a change that acts late in training (a learning-rate anneal, a longer EMA, more
steps) tried on a long run without training its start again. `--run` is a demo WORKDIR (its
train/, data/ and vae/); `--config` must be the config that run trained (its train/config.json),
up to run length, logging and checkpointing (`ablations.adopt_run`'s check) and the keys given
with `--set` (KEY=JSON, applied on top; refused when the run's config differs elsewhere). The
checkpoint of `--from_step` is copied into WORKDIR/train and training resumes there, with the
changed config, up to `--to_step` (optimizer state, EMA, data order and step count continue);
then the newest checkpoint is scored as the ablations score a variant (held-out frame pairs and
the edit-fidelity benchmark on `--num_scenes` scenes, WORKDIR/edit_fidelity). `--against`: an
edit-fidelity JSON of the same scenes (e.g. the run's own, of the same step) to pair against,
per edit type, with 95% bootstrap intervals (`edit_effects.model_differences`).

Writes `--out` (default WORKDIR/result.json): the settings, steps, wall times, held-out metrics,
the edit summary, which edit types take effect, and the paired intervals.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Optional, Sequence

from benchmarks import ablations
from neural_assets import config_files


def override_keys(sets: Sequence[str]) -> list[str]:
  """The dotted keys of KEY=JSON overrides (`config_files.load`'s format)."""
  keys = []
  for item in sets:
    key, sep, _ = item.partition("=")
    if not sep or not key:
      raise ValueError(f"--set {item!r}: want KEY=JSON.")
    keys.append(key)
  return keys


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="The config the run trained.")
  parser.add_argument("--run", required=True, help="The demo WORKDIR (train/, data/, vae/).")
  parser.add_argument("--data_dir", default=None, help="Default: RUN/data.")
  parser.add_argument("--vae_dir", default=None, help="Default: RUN/vae.")
  ablations.add_data_flags(parser)
  parser.add_argument("--from_step", type=int, required=True)
  parser.add_argument("--to_step", type=int, required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--set", action="append", default=[],
                      help="KEY=JSON: what changes from --from_step on.")
  parser.add_argument("--against", default=None,
                      help="An edit_fidelity.json of the same held-out scenes to pair with.")
  parser.add_argument("--num_scenes", type=int, default=32)
  parser.add_argument("--eval_min_gap", type=int, default=1)
  parser.add_argument("--out", default=None, help="Default: WORKDIR/result.json.")
  args = parser.parse_args(argv)
  if args.to_step <= args.from_step:
    parser.error(f"--to_step {args.to_step} must be after --from_step {args.from_step}.")
  if args.against and not os.path.isfile(args.against):
    parser.error(f"--against {args.against}: no such file.")
  keys = override_keys(args.set)
  run = os.path.abspath(os.path.expanduser(args.run))
  workdir = os.path.abspath(os.path.expanduser(args.workdir))
  config = config_files.load(args.config, args.set)
  # pylint: disable=g-import-not-at-top  (the process set-up comes before JAX starts)
  from neural_assets.demo import host_devices
  host_devices.prepare_process(config)  # May restart this process.
  from neural_assets.training import trainer
  # pylint: enable=g-import-not-at-top
  start = time.time()
  cfg = ablations.prepare(config, workdir, args.vae_dir or os.path.join(run, "vae"), 0.0,
                          data_dir=args.data_dir or os.path.join(run, "data"),
                          num_train_videos=args.num_train_videos,
                          num_eval_videos=args.num_eval_videos, num_frames=args.num_frames)
  train_dir = os.path.join(workdir, "train")
  ablations.adopt_run(cfg, os.path.join(run, "train"), train_dir, args.from_step, allowed=keys)
  cfg.training.num_train_steps = args.to_step
  cfg.training.max_train_seconds = 0.0
  cfg.training.image_summary_every_steps = 0
  t0 = time.time()
  steps = int(trainer.train_and_evaluate(cfg, train_dir, run_eval=False).step)
  train_seconds = time.time() - t0
  heldout, edits, eval_seconds = ablations.score_checkpoint(
      cfg, config.data, train_dir, os.path.join(workdir, "edit_fidelity"), args.num_scenes,
      args.eval_min_gap, label=f"continued from {args.from_step}")
  result = {
      "run": run, "config": args.config, "set": args.set, "from_step": args.from_step,
      "steps": steps, "train_wall_seconds": round(train_seconds, 1),
      "eval_seconds": round(eval_seconds, 1), "edit_seconds": edits["seconds"],
      "total_seconds": round(time.time() - start, 1),
      "heldout": heldout, "edit": edits["summary"]["model"],
      "takes_effect": [k for k, v in edits["takes_effect"].items() if v],
      "edit_fidelity_json": os.path.relpath(edits["json_path"], workdir),
  }
  if args.against:
    direction = {"paper": f"continued - {args.against}", "edit_intervals": ablations.edit_intervals(
        {"edit_fidelity_json": edits["json_path"]}, {"edit_fidelity_json": args.against})}
    result["against"] = {"edit_fidelity_json": args.against,
                         "edit_intervals": direction["edit_intervals"]}
    print(ablations.format_intervals(direction))
  out = args.out or os.path.join(workdir, "result.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(result, f, indent=2, default=str)
  print(f"Trained {args.from_step} -> {steps} in {train_seconds:.0f} s; take effect: "
        f"{result['takes_effect']}; wrote {out}.")
  return result


if __name__ == "__main__":
  main()
