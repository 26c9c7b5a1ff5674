"""Demo step 5: the whole demo (`run_demo`) and its report."""
from __future__ import annotations

import copy
import json
import os
import platform
import time
from typing import Any, Mapping, Optional

from absl import logging
import jax
import ml_collections
import numpy as np

from neural_assets import images
from neural_assets import report as report_lib
from neural_assets.demo.data import data_spec, ensure_data, write_scenes
from neural_assets.demo.edits import run_edits
from neural_assets.demo.settings import demo_settings
from neural_assets.demo.evaluation import (conditioning_errors, evaluate_model_and_baseline,
                                           restore_latest)
from neural_assets.demo.training import train_with_budget
from neural_assets.demo.vae_warmup import ensure_vae

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# `--preset` of `python -m neural_assets.demo` / `bash demo.sh`: name -> config file. The config
# holds the rest (`config.demo.minutes`, `config.demo.fidelity_scenes`); each preset has its own
# default workdir (`default_workdir`), so runs of different worlds never resume each other.
PRESETS = {"default": os.path.join(_REPO, "configs", "synthetic.py"),
           "3d": os.path.join(_REPO, "configs", "synthetic_3d.py")}


def default_workdir(preset: str) -> str:
  """./workdir/demo for the default preset, ./workdir/demo_<preset> for the others."""
  return os.path.join(".", "workdir", "demo" if preset == "default" else f"demo_{preset}")


def preset_argv(argv: list[str]) -> list[str]:
  """argv with `--preset=NAME` (or `--preset NAME`) turned into `--config=<its file>`.

  Raises:
    ValueError: an unknown preset, or a preset other than the default together with --config.
  """
  out, preset, config_given, i = [], None, False, 0
  while i < len(argv):
    arg = argv[i]
    if arg == "--preset" and i + 1 < len(argv):
      preset, i = argv[i + 1], i + 2
      continue
    if arg.startswith("--preset="):
      preset = arg.split("=", 1)[1]
    else:
      config_given |= arg == "--config" or arg.startswith("--config=")
      out.append(arg)
    i += 1
  if preset is None:
    return out
  if preset not in PRESETS:
    raise ValueError(f"Unknown --preset={preset!r}; known: {sorted(PRESETS)}.")
  if config_given and preset != "default":
    raise ValueError(f"--preset={preset} chooses the config ({PRESETS[preset]}); drop --config "
                     "or the preset.")
  if config_given:
    return out + [f"--preset={preset}"]
  return out[:1] + [f"--config={PRESETS[preset]}", f"--preset={preset}"] + out[1:]


def demo_defaults(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config's budget knobs: minutes (VAE warm-up + training) and edit-fidelity scenes."""
  demo = demo_settings(config)
  return {"minutes": demo.minutes, "fidelity_scenes": demo.fidelity_scenes}


def fidelity_tables(fidelity: Mapping[str, Any], num_scenes: int
                    ) -> dict[str, tuple[str, dict[str, dict[str, Any]]]]:
  """The report's edit-fidelity tables: the verdict per edit type with its intervals, and the
  means per edit type and method (each row marked)."""
  # pylint: disable=g-import-not-at-top
  from neural_assets.evaluation import edit_effects
  from neural_assets.evaluation import edit_fidelity
  from neural_assets.evaluation import edit_report
  # pylint: enable=g-import-not-at-top
  seed = fidelity["settings"]["held_out_seed"]
  effects = fidelity["takes_effect"]
  fewer = (f" (the benchmark's default is {edit_effects.DEFAULT_NUM_SCENES}; the demo scores "
           f"fewer to fit its budget, so its intervals are wider)"
           if num_scenes < edit_effects.DEFAULT_NUM_SCENES else "")
  verdict = {}
  for edit, by_baseline in fidelity["differences"].items():
    row = {"takes effect": "YES" if effects[edit] else "no"}
    for baseline, by_metric in by_baseline.items():
      short = "unedited" if baseline == "model, unedited" else "source"
      for metric, d in by_metric.items():
        row[f"\u0394 vs {short}: {metric}"] = edit_report.format_difference(d, metric)
    verdict[edit] = row
  taking = [e for e, ok in effects.items() if ok]
  title = "Does each edit take effect? (edit fidelity against the generator's ground truth)"
  caption = (f"{num_scenes} held-out scenes{fewer} (generator seed {seed}). "
             + edit_report.EFFECTS_CAPTION
             + f" At this budget {len(taking)} of {len(effects)} edit types take effect"
             + (f": {', '.join(taking)}." if taking else "."))
  means_title = "How well edits work (edit fidelity against the generator's ground truth)"
  means_caption = (
      f"Per edit type, mean over {num_scenes} held-out scenes (generator seed {seed}): the "
      "model's render of the edit, its render of the unedited scene and the source frame, each "
      "scored against the ground-truth render of the edited 3D state. Region = the edited "
      "object's boxes before and after; localisation IoU = where the model drew the object vs "
      "its true mask. 'takes effect': the verdict of the table above for the row's edit type.")
  means = {f"{edit} | {method}":
           {"takes effect": "YES" if effects[edit] else "no",
            **{m: values[m] for m in edit_fidelity.METRICS if values.get(m) is not None}}
           for edit, by_method in fidelity["means"].items()
           for method, values in by_method.items() if method != "ground truth (ceiling)"}
  return {title: (caption, verdict), means_title: (means_caption, means)}


def reconstruction_grid(examples: Mapping[str, np.ndarray]) -> report_lib.Grid:
  """Per held-out pair: source | target | model | copy-source | VAE ceiling, target boxes drawn
  (green) on all but the source (its own boxes, red)."""
  rows = []
  for i in range(len(examples["sample"])):
    mask = examples["slot_mask"][i]
    target_boxes = examples["target_boxes"][i][mask]
    green = lambda image: report_lib.draw_boxes(image, target_boxes, color=(0, 160, 0))  # noqa: E731
    rows.append([
        report_lib.draw_boxes(examples["source_image"][i], examples["source_boxes"][i][mask]),
        green(examples["target_image"][i]),
        green(np.clip(examples["sample"][i], 0.0, 1.0)),
        green(examples["source_image"][i]),
        green(np.clip(examples["vae_reconstruction"][i], 0.0, 1.0)),
    ])
  return report_lib.Grid(
      "reconstruction", "Held-out pairs: model vs copy-source", images.image_grid(rows),
      columns=("source (+ source boxes)", "target (+ target boxes)",
               "model: DDIM + guidance from source appearance + target poses",
               "copy-source baseline (the source frame)", "target through the VAE (ceiling)"),
      caption="Green: the objects' target boxes, where the model must put them.")


def _load_info() -> dict[str, Any]:
  load1, load5, _ = os.getloadavg()
  return {"load1": round(load1, 2), "load5": round(load5, 2)}


def run_demo(config: ml_collections.ConfigDict, workdir: str, minutes: float, *,
             data_overrides: Optional[Mapping[str, Optional[int]]] = None, data_workers: int = 1,
             num_shown: int = 4, num_edit_scenes: int = 3, eval_min_gap: int = 1,
             num_fidelity_scenes: Optional[int] = None,
             backstop_seconds: float = 120.0, vae_minutes: Optional[float] = None
             ) -> dict[str, Any]:
  """The whole demo (module docstring); returns what results.json holds. `vae_minutes` None:
  `config.demo.vae_minutes` (`settings.DEFAULTS`). `num_fidelity_scenes` > 0: the edit-fidelity
  benchmark (`demo/edit_benchmark.py`) scores the checkpoint's edits against the generator's
  ground truth into WORKDIR/edit_fidelity, linked from the report (None:
  `config.demo.fidelity_scenes`, see `demo_defaults`)."""
  t0 = time.time()
  if num_fidelity_scenes is None:
    num_fidelity_scenes = demo_defaults(config)["fidelity_scenes"]
  if vae_minutes is None:
    vae_minutes = demo_settings(config).vae_minutes
  workdir = os.path.abspath(os.path.expanduser(workdir))
  data_dir, train_dir = os.path.join(workdir, "data"), os.path.join(workdir, "train")
  report_dir = os.path.join(workdir, "report")
  config = copy.deepcopy(config)
  config.data.data_dir = data_dir
  run_info: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                              "jax devices": str(jax.devices()),
                              "load at start (1 / 5 min)": _load_info()}

  spec = data_spec(config, **(data_overrides or {}))
  run_info["data"] = (f"{spec['num_train_videos']} train / {spec['num_eval_videos']} eval videos, "
                      f"{spec['num_frames']} frames, {spec['resolution']} px")
  run_info["data generation seconds"] = round(ensure_data(data_dir, spec, data_workers), 1)

  budget_s = 60.0 * minutes
  vae_dir = os.path.join(workdir, "vae")
  had_vae = os.path.exists(os.path.join(vae_dir, "vae.json"))
  vae_info = ensure_vae(config, vae_dir, min(60.0 * vae_minutes, budget_s / 2))
  if vae_info is not None:
    # The same scaling in every run on this workdir: it is part of what the model learnt.
    config.model.vae.scaling_factor = float(vae_info["scaling_factor"])
    config.training.init_checkpoint = os.path.join(vae_dir, "checkpoint")
    run_info["VAE warm-up"] = {k: round(v, 4) if isinstance(v, float) else v
                               for k, v in vae_info.items()}
    if not had_vae:
      # At least a second of training (a VAE warm-up that overran on a loaded machine must not
      # leave a negative budget; 0 would mean "no limit" to the trainer).
      budget_s = max(budget_s - vae_info["seconds"], 1.0)

  if minutes > 0:
    training = train_with_budget(config, train_dir, budget_s, backstop_seconds)
    run_info.update({
        "training budget seconds": round(budget_s, 1),
        "training wall-clock seconds (incl. compile, checkpoint)": round(
            training["train_seconds"], 1),
        "steps at start of this run": training["steps_before"],
        "steps at end": training["steps_after"],
        "steps this run": training["steps_after"] - training["steps_before"],
        "stopped by the backstop (budget + backstop_seconds)": training["stopped_by_backstop"],
        "load after training (1 / 5 min)": _load_info()})

  eval_config = copy.deepcopy(config)
  eval_config.data.eval_min_gap = eval_min_gap
  t_eval = time.time()
  restored = restore_latest(eval_config, train_dir)
  evaluation = evaluate_model_and_baseline(eval_config, restored, train_dir, num_shown)
  run_info["evaluated step"] = restored.step
  run_info["eval examples"] = int(evaluation["model"]["image/count"])
  run_info["evaluation seconds (restore, model + baseline)"] = round(time.time() - t_eval, 1)

  # Is the conditioning used? Denoising error with the true tokens vs another scene's.
  t_cond = time.time()
  # pylint: disable=g-import-not-at-top
  from neural_assets.training import eval_sampling
  from neural_assets.training import train_state as train_state_lib
  # pylint: enable=g-import-not-at-top
  eval_batches = list(eval_sampling.eval_batches(eval_config))
  params, weights = train_state_lib.eval_weights(restored.state, eval_config.eval.use_ema)
  run_info["scored weights"] = ("EMA (optimizer.ema_decay with its warm-up)" if weights == "ema"
                                else "raw (no EMA kept, or eval.use_ema=False)")
  conditioning = conditioning_errors(
      eval_config, restored.model, restored.vae, params, restored.state.frozen_params["vae"],
      [b for b in eval_batches if len(b["video_index"]) >= 2])
  run_info["token-swap test seconds"] = round(time.time() - t_cond, 1)
  scene_paths = write_scenes(eval_config, eval_batches, os.path.join(workdir, "scenes"))
  run_info["held-out scenes (.npz, for python -m neural_assets.edit_cli --scene)"] = (
      f"{len(scene_paths)} in {os.path.join(workdir, 'scenes')}")

  grids = [reconstruction_grid(evaluation["examples"])]
  if num_edit_scenes > 0:
    t_edit = time.time()
    grids += run_edits(eval_config, restored, evaluation["examples"], num_edit_scenes)
    run_info["edit seconds"] = round(time.time() - t_edit, 1)

  tables, links = {}, {}
  if num_fidelity_scenes > 0:
    # pylint: disable=g-import-not-at-top
    from neural_assets import inference
    from neural_assets.demo import edit_benchmark
    # pylint: enable=g-import-not-at-top
    t_fidelity = time.time()
    bundle = inference.bundle_from_train_state(eval_config, restored.state, restored.step,
                                               use_ema=bool(eval_config.eval.use_ema))
    fidelity = edit_benchmark.run_for_workdir(bundle, workdir, num_scenes=num_fidelity_scenes,
                                              log=logging.info)
    run_info["edit fidelity seconds"] = round(time.time() - t_fidelity, 1)
    run_info["edit types taking effect"] = (
        f"{sum(fidelity['takes_effect'].values())} of {len(fidelity['takes_effect'])} on "
        f"{num_fidelity_scenes} held-out scenes")
    tables.update(fidelity_tables(fidelity, num_fidelity_scenes))
    for title in tables:
      links[title] = os.path.relpath(fidelity["index"], report_dir)

  curves = report_lib.read_event_scalars(train_dir)
  metrics = {name: {k: v for k, v in m.items() if k.split("/")[0] in ("image", "object")}
             for name, m in (("model", evaluation["model"]),
                             ("copy source frame", evaluation["baseline"]),
                             ("VAE reconstruction of the target (ceiling)", evaluation["vae"]))}
  run_info["model eval seconds (DDIM sampling + metrics)"] = round(evaluation["seconds"], 1)
  run_info["total demo seconds"] = round(time.time() - t0, 1)
  run_info["load at end (1 / 5 min)"] = _load_info()
  bucket_names = [f"t in [{t0_}, {t1_})" for t0_, t1_ in conditioning["buckets"]]
  conditioning_rows = {
      "MSE, true tokens": dict(zip(bucket_names, conditioning["true"])),
      "MSE, another scene's tokens": dict(zip(bucket_names, conditioning["swapped"])),
      "MSE, null context (all dropped)": dict(zip(bucket_names, conditioning["null"])),
      "ratio true / another scene's": {**dict(zip(bucket_names, conditioning["swap_ratio"])),
                                       "mid timesteps": conditioning["mid_swap_ratio"]},
      "ratio true / null": dict(zip(bucket_names, conditioning["null_ratio"])),
  }
  notes = [
      "Synthetic MOVi-E-like scenes rendered by data_pipelines/synthetic.py; the model is trained "
      "from scratch (no pretrained SD / DINO weights offline) on CPU for a bounded time, so the "
      "numbers show that the pipeline runs end to end, not the paper's quality.",
      "The frozen VAE is " + ("warmed up first as an autoencoder on the synthetic frames (see "
                              "'VAE warm-up')" if vae_info else "randomly initialised (samples "
                              "decode to noise)") + "; its reconstruction of the target is the "
      "best score the model can reach (the ceiling row).",
      f"Eval pairs: frame gap >= {max(int(eval_config.data.min_gap), eval_min_gap)}; the "
      "copy-source-frame baseline "
      "predicts the source frame unchanged and is scored by the same Evaluator.",
      f"Token-swap test: at mid timesteps the denoising error with the true tokens is "
      f"{100 * (1 - conditioning['mid_swap_ratio']):.0f}% below the error with another scene's "
      "tokens (the conditioning is used when this is well above 0).",
  ]
  html_path = report_lib.write_report(
      report_dir, grids=grids, metrics=metrics, curves=curves,
      config_text=config.to_json_best_effort(indent=2),
      run_info={k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in run_info.items()},
      notes=notes,
      tables={"Is the conditioning used? (token-swap test)": (
          "Denoising MSE on the held-out pairs per timestep bucket, same noise and timesteps, "
          "with the example's own tokens, another held-out scene's tokens and the null context; "
          "a ratio of 0.8 means the true tokens' error is 20% lower.", conditioning_rows),
              **tables},
      links=links)
  results = dict(metrics=metrics, run_info=run_info, report=html_path,
                 grids=[g.name for g in grids], conditioning=conditioning)
  if num_fidelity_scenes > 0:
    results["edit_fidelity"] = {k: fidelity[k] for k in ("takes_effect", "differences", "means")}
  with open(os.path.join(report_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, default=str)
  logging.info("Report: %s", html_path)
  return results
