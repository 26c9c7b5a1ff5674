r"""The paper's ablations on the toy synthetic setting: one short training run per variant.

  python -m benchmarks.ablations --workdir ./workdir/ablations [--minutes 4 | --steps N] \
      [--config configs/synthetic.py] [--variants paper,frozen_encoder,...] [--num_scenes 4] \
      [--vae_dir WORKDIR/vae] [--data_dir WORKDIR/data] [--from_run paper=RUN_DIR]

At the 3D preset's budget, against the preset demo's own run (its data, VAE and checkpoint):

  python -m benchmarks.ablations --config configs/synthetic_3d.py --workdir ./workdir/abl_3d \
      --variants paper,shuffled_pose,single_frame --steps 17586 --num_scenes 32 \
      --from_run paper=workdir/demo_3d/train --data_dir workdir/demo_3d/data \
      --vae_dir workdir/demo_3d/vae --out benchmarks/results/demo_3d/ablations.json \
      --chart benchmarks/results/demo_3d/ablations.png

Each variant is the toy config (`configs/synthetic.py`) with one switch flipped (defaults = the
paper's choice):

  paper           fine-tuned visual encoder, full background token, paired frames
  frozen_encoder  optimizer.frozen_prefixes = ('tokenizer/encoder',)   (paper: fine-tuned wins)
  bg_no_pose      model.conditioning.background_token = 'no_pose'      (paper: full > no pose)
  bg_none         model.conditioning.background_token = 'none'         (paper: no pose > none)
  single_frame    data.min_gap = data.max_gap = 0: source = target      (paper: paired wins)
  shuffled_pose   model.conditioning.shuffle_pose = True: a control that must lose

All variants share the synthetic data (WORKDIR/data, `neural_assets.demo`'s generator step) and
the warmed-up frozen VAE (WORKDIR/vae, or `--vae_dir` to reuse a demo's), train from scratch for
the same wall-clock `--minutes` (`training.max_train_seconds`, counted after a first step that
compiles, so compile time is not charged; the steps reached are reported, since a shared
machine's load changes them) or to the same `--steps` (load-independent), and are scored the same
way:
- held-out metrics: `trainer.evaluate_checkpoint` on the eval split with the paper's frame pairs
  (gap >= `--eval_min_gap`, whatever the variant trained on), image and object level;
- edit fidelity: `neural_assets/demo/edit_benchmark.py` on `--num_scenes` held-out scenes (its
  means over the edit types of the model row).
Results: WORKDIR/<variant>/result.json (a finished variant is skipped when re-run, so a dead run
resumes), `--out` JSON (benchmarks/results/ablations.json) and a bar chart (`--chart`,
benchmarks/results/ablations.png), and a table on stdout.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from typing import Any, Mapping, Optional, Sequence

from neural_assets import config_files

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RESULTS = os.path.join(_ROOT, "benchmarks", "results")

# name -> (description, {dotted config key: value}).
VARIANTS = {
    "paper": ("paper: fine-tuned encoder, full background, paired frames", {}),
    "frozen_encoder": ("visual encoder frozen",
                       {"optimizer.frozen_prefixes": ("tokenizer/encoder",)}),
    "bg_no_pose": ("background token without camera pose",
                   {"model.conditioning.background_token": "no_pose"}),
    "bg_none": ("no background token", {"model.conditioning.background_token": "none"}),
    "single_frame": ("single frame (source = target)", {"data.min_gap": 0, "data.max_gap": 0}),
    "shuffled_pose": ("pose tokens of shuffled objects (control)",
                      {"model.conditioning.shuffle_pose": True}),
}
# The paper's directions (winner, loser): checked against what was measured.
DIRECTIONS = (("paper", "frozen_encoder"), ("paper", "bg_no_pose"), ("bg_no_pose", "bg_none"),
              ("paper", "single_frame"), ("paper", "shuffled_pose"))
# (JSON key, label, higher is better) of the charted scores.
CHART_METRICS = (
    ("heldout/image/psnr", "held-out image PSNR (dB)", True),
    ("heldout/object/psnr", "held-out object PSNR (dB)", True),
    ("heldout/image/lpips", "held-out image LPIPS", False),
    ("edit/image/psnr", "edit image PSNR vs GT (dB)", True),
    ("edit/region/psnr", "edit region PSNR vs GT (dB)", True),
    ("edit/region/lpips", "edit region LPIPS vs GT", False),
    ("edit/localisation/iou", "edit localisation IoU", True),
)


def variant_config(config, name: str):
  """The config with variant `name`'s switches set (a deep copy)."""
  if name not in VARIANTS:
    raise ValueError(f"Unknown variant {name!r}; known: {sorted(VARIANTS)}.")
  config = copy.deepcopy(config)
  for key, value in VARIANTS[name][1].items():
    *path, leaf = key.split(".")
    section = config
    for part in path:
      section = section[part]
    if leaf not in section:
      raise KeyError(f"Variant {name}: the config has no {key}.")
    section[leaf] = value
  return config


# Config keys that say how long or how loudly a run trained, not what it trained: an adopted run
# (`--from_run`) may differ from the variant's config in these only.
_RUN_LENGTH_KEYS = ("training.num_train_steps", "training.max_train_seconds",
                    "training.log_every_steps", "training.image_summary_every_steps",
                    "training.num_image_summaries", "checkpoint.", "demo.")
# Config keys added after runs were saved, with the value that does what the code did before
# them: a run's config.json without the key trained with that value.
_ADDED_KEY_DEFAULTS = {"optimizer.hold_steps": 0}


def adopt_run(cfg, run_dir: str, train_dir: str, steps: Optional[int],
              allowed: Sequence[str] = ()) -> int:
  """Scores an existing run as a variant (e.g. the 3D preset demo's WORKDIR/train as `paper`):
  copies its checkpoint of step `steps` (default its newest) into `train_dir`. Returns the step.

  Raises:
    ValueError: the run's config.json differs from the variant's config in what it trained
    (anything but `_RUN_LENGTH_KEYS` and the keys or prefixes in `allowed`: model, data,
    optimizer, seeds, the data and VAE paths). A key the run's config.json predates counts as
    its `_ADDED_KEY_DEFAULTS` value.
  """
  import shutil  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from neural_assets.training import checkpoint_files  # pylint: disable=g-import-not-at-top
  step_dir, step = checkpoint_files.find_checkpoint(run_dir, steps)
  config_path = os.path.join(os.path.dirname(os.path.dirname(step_dir)), "config.json")
  with open(config_path) as f:
    theirs = traverse_util.flatten_dict(json.load(f), sep=".")
  theirs = {**{k: v for k, v in _ADDED_KEY_DEFAULTS.items() if k not in theirs}, **theirs}
  ours = traverse_util.flatten_dict(json.loads(cfg.to_json_best_effort()), sep=".")
  differ = sorted(k for k in set(theirs) | set(ours)
                  if not k.startswith(_RUN_LENGTH_KEYS + tuple(allowed))
                  and theirs.get(k) != ours.get(k))
  if differ:
    raise ValueError(f"{run_dir} did not train this variant's config ({config_path}); differs in "
                     + ", ".join(f"{k}: {theirs.get(k)!r} vs {ours.get(k)!r}" for k in differ))
  target = os.path.join(train_dir, "checkpoints", str(step))
  if not os.path.isdir(target):
    shutil.copytree(step_dir, target + ".tmp", dirs_exist_ok=True)
    os.replace(target + ".tmp", target)  # A dead copy is never taken for a checkpoint.
  return step


def score_checkpoint(cfg, paper_data, train_dir: str, edit_dir: str, num_scenes: int,
                     eval_min_gap: int = 1, seed: Optional[int] = None,
                     num_steps: Optional[int] = None, label: str = "", log=print):
  """Held-out metrics (`trainer.evaluate_checkpoint`, the paper's frame pairs: `paper_data`'s
  gaps, at least `eval_min_gap`, whatever `cfg` trained on) and the edit-fidelity benchmark on
  `num_scenes` held-out scenes (written to `edit_dir`) of `train_dir`'s newest checkpoint.
  Returns (held-out metrics, the benchmark's result + 'json_path', evaluation seconds)."""
  # pylint: disable=g-import-not-at-top
  from neural_assets.demo import edit_benchmark
  from neural_assets.training import trainer
  # pylint: enable=g-import-not-at-top
  eval_cfg = copy.deepcopy(cfg)
  eval_cfg.data.min_gap = max(int(paper_data.min_gap), eval_min_gap)
  eval_cfg.data.max_gap = paper_data.max_gap
  t1 = time.time()
  heldout = trainer.evaluate_checkpoint(eval_cfg, train_dir)
  eval_seconds = time.time() - t1
  bundle = edit_benchmark.load_bundle(train_dir)
  edits = edit_benchmark.run(bundle, num_scenes=num_scenes, out_dir=edit_dir, label=label,
                             seed=edit_benchmark.DEFAULT_SEED if seed is None else seed,
                             num_steps=num_steps, log=log,
                             lpips_fn=edit_benchmark.load_lpips(cfg.evaluation.lpips.weights,
                                                                cfg.evaluation.lpips.net))
  edits["json_path"] = os.path.join(edit_dir, "edit_fidelity.json")
  return heldout, edits, eval_seconds


def run_variant(config, name: str, workdir: str, minutes: float, num_scenes: int,
                eval_min_gap: int = 1, seed: Optional[int] = None, num_steps: Optional[int] = None,
                train_steps: Optional[int] = None, from_run: Optional[str] = None,
                log=print) -> dict[str, Any]:
  """Trains one variant for `minutes` (or to `train_steps` steps; or adopts the run in
  `from_run`, see `adopt_run`), then scores it; returns (and saves) its result."""
  from neural_assets.training import trainer  # pylint: disable=g-import-not-at-top
  out_dir = os.path.join(workdir, name)
  result_path = os.path.join(out_dir, "result.json")
  if os.path.exists(result_path):
    with open(result_path) as f:
      log(f"{name}: already done ({result_path}).")
      return json.load(f)
  cfg = variant_config(config, name)
  cfg.training.image_summary_every_steps = 0  # Not needed; its compile would cost minutes.
  train_dir = os.path.join(out_dir, "train")
  load_start = os.getloadavg()[0]
  compile_seconds = train_seconds = None
  if from_run:
    steps = adopt_run(cfg, from_run, train_dir, train_steps)
    log(f"{name}: adopted step {steps} of {from_run}.")
  elif train_steps:
    # A step budget: what a variant learns does not depend on the host's load.
    cfg.training.num_train_steps = int(train_steps)
    cfg.training.max_train_seconds = 0.0
    log(f"{name}: training to step {train_steps} ({VARIANTS[name][0]}) ...")
    t0 = time.time()
    steps = int(trainer.train_and_evaluate(cfg, train_dir, run_eval=False).step)
    train_seconds = time.time() - t0
  else:
    # The budget is training time, not compile time (minutes on a loaded CPU, and different per
    # variant): one step first (compiles, through the persistent cache when set), then the
    # budget from there.
    cfg.training.num_train_steps = max(int(cfg.training.num_train_steps), 10 ** 6)  # time-bound.
    t0 = time.time()
    first = copy.deepcopy(cfg)  # The same graph (schedules depend on num_train_steps).
    first.training.max_train_seconds = 1e-3  # Stops (and saves) after its first step.
    trainer.train_and_evaluate(first, train_dir, run_eval=False)
    compile_seconds = time.time() - t0
    cfg.training.max_train_seconds = 60.0 * minutes
    log(f"{name}: first step {compile_seconds:.0f} s; training for {minutes} min "
        f"({VARIANTS[name][0]}) ...")
    t0 = time.time()
    steps = int(trainer.train_and_evaluate(cfg, train_dir, run_eval=False).step)
    train_seconds = time.time() - t0
  heldout, edits, eval_seconds = score_checkpoint(
      cfg, config.data, train_dir, os.path.join(out_dir, "edit_fidelity"), num_scenes,
      eval_min_gap, seed, num_steps, name, log)
  result = {
      "variant": name, "description": VARIANTS[name][0],
      "switches": {k: list(v) if isinstance(v, tuple) else v
                   for k, v in VARIANTS[name][1].items()},
      "steps": steps, "train_minutes": None if (train_steps or from_run) else minutes,
      "train_steps": train_steps, "adopted_from": from_run,
      "train_wall_seconds": None if train_seconds is None else round(train_seconds, 1),
      "first_step_seconds": None if compile_seconds is None else round(compile_seconds, 1),
      "eval_seconds": round(eval_seconds, 1), "edit_seconds": edits["seconds"],
      "load_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
      "heldout": {k.replace("eval/", "heldout/"): v for k, v in heldout.items()},
      "edit": {f"edit/{k}": v for k, v in edits["summary"]["model"].items()},
      "edit_means": edits["means"],
      "edit_fidelity_json": edits["json_path"],
  }
  os.makedirs(out_dir, exist_ok=True)
  with open(result_path, "w") as f:
    json.dump(result, f, indent=2, default=str)
  return result


def scores(result: Mapping[str, Any]) -> dict[str, Optional[float]]:
  return {**result["heldout"], **result["edit"]}


def _verdict(interval: Mapping[str, Any]) -> str:
  """'holds' (the winner better over the whole interval), 'reversed' or 'within noise'."""
  if interval["low"] is None:
    return "within noise"
  if interval["better_than_zero"]:
    return "holds"
  lower = interval["better"] == "lower"
  return "reversed" if (interval["low"] > 0 if lower else interval["high"] < 0) else "within noise"


def edit_intervals(winner: Mapping[str, Any], loser: Mapping[str, Any]
                   ) -> Optional[dict[str, dict[str, dict[str, Any]]]]:
  """Winner - loser on the same held-out edit scenes, per edit type and over all of them
  (`edit_effects.model_differences`, 95% bootstrap intervals), each with its `_verdict`; None
  when either variant's per-scene scores are missing."""
  from neural_assets.evaluation import edit_effects  # pylint: disable=g-import-not-at-top
  per_scene = []
  for result in (winner, loser):
    path = result.get("edit_fidelity_json")
    if not path or not os.path.exists(path):
      return None
    with open(path) as f:
      per_scene.append(json.load(f)["per_scene"])
  out = edit_effects.model_differences(*per_scene)
  for by_metric in out.values():
    for interval in by_metric.values():
      interval["verdict"] = _verdict(interval)
  return out


def directions(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
  """For each paper direction (winner > loser) with both variants run: which scores agree, and
  (where both kept per-scene edit scores) the paired intervals of `edit_intervals`."""
  out = []
  for winner, loser in DIRECTIONS:
    if winner not in results or loser not in results:
      continue
    a, b = scores(results[winner]), scores(results[loser])
    agree = {}
    for key, _, higher in CHART_METRICS:
      if a.get(key) is None or b.get(key) is None:
        continue
      agree[key] = bool((a[key] > b[key]) if higher else (a[key] < b[key]))
    direction = {"paper": f"{winner} > {loser}", "holds_on": [k for k, v in agree.items() if v],
                 "fails_on": [k for k, v in agree.items() if not v]}
    intervals = edit_intervals(results[winner], results[loser])
    if intervals is not None:
      direction["edit_intervals"] = intervals
    out.append(direction)
  return out


def format_intervals(direction: Mapping[str, Any]) -> str:
  """The markdown table of one direction's `edit_intervals` (winner - loser, 95% intervals)."""
  from neural_assets.evaluation import edit_effects  # pylint: disable=g-import-not-at-top
  intervals = direction["edit_intervals"]
  metrics = edit_effects.DIFFERENCE_METRICS
  lines = [f"{direction['paper']} (winner - loser, 95% interval, scenes paired):", "",
           "| edit type | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
  for name, by_metric in intervals.items():
    cells = []
    for metric in metrics:
      d = by_metric[metric]
      if d["mean"] is None:
        cells.append("n/a")
        continue
      digits = 2 if "psnr" in metric else 3
      span = "" if d["low"] is None else f" [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"
      cells.append(f"{d['mean']:+.{digits}f}{span} {d['verdict']}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_table(results: Mapping[str, Mapping[str, Any]]) -> str:
  keys = [k for k, _, _ in CHART_METRICS]
  lines = ["| variant | steps | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
  for name, result in results.items():
    s = scores(result)
    cells = ["n/a" if s.get(k) is None else (f"{s[k]:.2f}" if "psnr" in k else f"{s[k]:.3f}")
             for k in keys]
    lines.append(f"| {name} | {result['steps']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def bar_chart(results: Mapping[str, Mapping[str, Any]], path: str, title: str = "") -> str:
  """One panel per charted score, one bar per variant."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(results)
  fig, axes = plt.subplots(1, len(CHART_METRICS), figsize=(3.2 * len(CHART_METRICS), 3.6))
  colors = plt.cm.tab10.colors
  for ax, (key, label, higher) in zip(axes, CHART_METRICS):
    values = [scores(results[n]).get(key) for n in names]
    shown = [v if v is not None else 0.0 for v in values]
    ax.bar(range(len(names)), shown, color=[colors[i % 10] for i in range(len(names))])
    finite = [v for v in values if v is not None]
    if finite and "iou" not in key:
      low, high = min(finite), max(finite)
      ax.set_ylim(max(0.0, low - 0.5 * (high - low + 0.5)), high + 0.25 * (high - low + 0.5))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_title(label + (" ↑" if higher else " ↓"), fontsize=9)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def prepare(config, workdir: str, vae_dir: Optional[str], vae_minutes: float,
            data_workers: int = 1, data_dir: Optional[str] = None,
            **data_overrides: Optional[int]):
  """Shared data (`data_dir`, default WORKDIR/data: the demo's synthetic splits of
  `config.synthetic`, generated once) and frozen VAE; returns the config that every variant
  starts from."""
  from neural_assets import demo  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(config)
  data_dir = os.path.abspath(data_dir or os.path.join(workdir, "data"))
  demo.ensure_data(data_dir, demo.data_spec(config, **data_overrides), data_workers)
  config.data.data_dir = data_dir
  vae_dir = vae_dir or os.path.join(workdir, "vae")
  info = demo.ensure_vae(config, vae_dir, 60.0 * vae_minutes)
  if info is not None:
    config.model.vae.scaling_factor = float(info["scaling_factor"])
    config.training.init_checkpoint = os.path.join(vae_dir, "checkpoint")
  return config


def write_report(results, args, start) -> dict[str, Any]:
  """The aggregate JSON and the chart of the variants finished so far."""
  report = {
      "config": os.path.relpath(args.config, _ROOT) if args.config.startswith(_ROOT)
                else args.config,
      "minutes_per_variant": None if args.steps else args.minutes,
      "steps_per_variant": args.steps,
      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
      "total_seconds": round(time.time() - start, 1),
      "results": results, "directions": directions(results),
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2, default=str)
  budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min of training"
  bar_chart(results, args.chart, f"{budget} per variant, {report['machine']}")
  return report


DATA_FLAGS = ("num_train_videos", "num_eval_videos", "num_frames")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
  """--num_train_videos / --num_eval_videos / --num_frames: the synthetic data size, when a run
  overrides the config's (as the demo's flags do)."""
  for key in DATA_FLAGS:
    parser.add_argument(f"--{key}", type=int, default=None,
                        help="Override the config's synthetic data size (as the demo's flags).")


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="./workdir/ablations")
  parser.add_argument("--config", default=os.path.join(_ROOT, "configs", "synthetic.py"))
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--minutes", type=float, default=4.0, help="Training minutes per variant.")
  parser.add_argument("--steps", type=int, default=None,
                      help="Train every variant to this many steps instead of for --minutes "
                           "(what each learns is then independent of the host's load).")
  parser.add_argument("--from_run", action="append", default=[],
                      help="VARIANT=RUN_DIR: score an existing run of that variant's config "
                           "(e.g. paper=WORKDIR/train of the 3D preset demo, with --data_dir and "
                           "--vae_dir its WORKDIR/data and WORKDIR/vae) at step --steps (default "
                           "its newest) instead of training it; refused if it trained another "
                           "config.")
  parser.add_argument("--data_dir", default=None,
                      help="The synthetic data (default WORKDIR/data, generated when missing).")
  parser.add_argument("--num_scenes", type=int, default=4, help="Held-out edit scenes.")
  parser.add_argument("--eval_min_gap", type=int, default=1)
  parser.add_argument("--edit_num_steps", type=int, default=None,
                      help="DDIM steps of the edit-fidelity renders (default: config.sampler).")
  parser.add_argument("--vae_dir", default=None,
                      help="A warmed-up VAE (e.g. a demo's WORKDIR/vae) to reuse; default: "
                           "WORKDIR/vae, trained for --vae_minutes when missing.")
  parser.add_argument("--vae_minutes", type=float, default=3.0)
  add_data_flags(parser)
  parser.add_argument("--set", action="append", default=[],
                      help="KEY=JSON config override for every variant, e.g. "
                           "training.log_every_steps=10 (tests shrink the config with it).")
  parser.add_argument("--out", default=os.path.join(_RESULTS, "ablations.json"))
  parser.add_argument("--chart", default=os.path.join(_RESULTS, "ablations.png"))
  parser.add_argument("--compilation_cache", default=None,
                      help="JAX persistent compilation cache (default WORKDIR/jax_cache; '' for "
                           "none): variants that share a graph, and re-runs, skip recompiling.")
  args = parser.parse_args(argv)
  workdir = os.path.abspath(os.path.expanduser(args.workdir))
  config = config_files.load(args.config, args.set)
  # As the demo: one XLA CPU device per core (and huge-page malloc), before JAX starts; the
  # variants then train on the demo's data-parallel step, at its speed.
  from neural_assets.demo import host_devices  # pylint: disable=g-import-not-at-top
  host_devices.prepare_process(config)  # May restart this process.
  if args.compilation_cache is None:
    args.compilation_cache = os.path.join(workdir, "jax_cache")
  if args.compilation_cache:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  names = [n.strip() for n in args.variants.split(",") if n.strip()]
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    parser.error(f"Unknown variants {unknown}; known: {sorted(VARIANTS)}.")
  from_runs = {}
  for item in args.from_run:
    name, sep, run_dir = item.partition("=")
    if not sep or name not in names:
      parser.error(f"--from_run {item!r}: want VARIANT=RUN_DIR with VARIANT in --variants.")
    from_runs[name] = os.path.abspath(os.path.expanduser(run_dir))
  start = time.time()
  base = prepare(config, workdir, args.vae_dir, args.vae_minutes, data_dir=args.data_dir,
                 num_train_videos=args.num_train_videos, num_eval_videos=args.num_eval_videos,
                 num_frames=args.num_frames)
  results = {}
  for name in names:
    results[name] = run_variant(base, name, workdir, args.minutes, args.num_scenes,
                                args.eval_min_gap, num_steps=args.edit_num_steps,
                                train_steps=args.steps, from_run=from_runs.get(name))
    report = write_report(results, args, start)  # after each variant: nothing is lost.
  print(format_table(results))
  for d in report["directions"]:
    print(f"{d['paper']}: holds on {d['holds_on']}; fails on {d['fails_on']}")
    if "edit_intervals" in d:
      print(format_intervals(d))
  print(f"Wrote {args.out} and {args.chart}.")
  return report


if __name__ == "__main__":
  main()
