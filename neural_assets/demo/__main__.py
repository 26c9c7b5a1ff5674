r"""`python -m neural_assets.demo`: the embedded demo: synthetic data, bounded training, evaluation vs a baseline, edits, report.

  python -m neural_assets.demo --workdir=./workdir/demo [--minutes=12] \
      [--config=configs/synthetic.py] [--config.optimizer.lr=1e-4] [--num_train_videos=64]
  python -m neural_assets.demo --preset=3d      # configs/synthetic_3d.py, ./workdir/demo_3d

Presets (`--preset`, `run.PRESETS`): `default` = configs/synthetic.py (~15 minutes on 2 cores),
`3d` = configs/synthetic_3d.py (the toy 3D world, <= 60 minutes). A preset picks the config
file and the default workdir; the config holds the default --minutes and
--num_fidelity_scenes (`config.demo.minutes`, `config.demo.fidelity_scenes`).

Steps (each skipped when its output already exists, so re-running resumes):
  1. WORKDIR/data: synthetic MOVi-E-like videos (`data_pipelines/synthetic.py` CLI), train and
     eval splits; sizes from `config.synthetic` (see `data_spec`) unless a flag overrides them.
  1b. WORKDIR/vae: the config's small VAE fitted as an autoencoder on the synthetic frames for
     `--vae_minutes` (part of the budget; once per workdir): the paper starts from SD's trained
     VAE, and a random frozen VAE decodes every sample to noise.
  2. WORKDIR/train: `trainer.train_and_evaluate` for the rest of `--minutes` of wall-clock
     (`config.training.max_train_seconds`, set-up and compilation included; a backstop through the trainer's on_step makes it save and stop if
     it overruns), resuming from the newest checkpoint. A tqdm bar shows time, step and loss.
  3. Evaluation of the newest checkpoint on the eval split with the trainer's `evaluate` (DDIM +
     guidance through the Evaluator, image and object level), and of the copy-source-frame
     baseline (the source frame returned unchanged as the prediction) and of the target through
     the VAE (the ceiling), through the very same code.
  3b. The token-swap test (`evaluation.conditioning_errors`): the denoising error per timestep
     bucket with the true tokens vs another held-out scene's tokens vs the null context; and
     the held-out scenes written as WORKDIR/scenes/*.npz (`python -m neural_assets.edit_cli --scene`).
  4. Each edit type of `neural_assets.editing` on a few eval scenes: the render before and
     after, the edited object's box drawn.
  4b. The edit-fidelity benchmark (`neural_assets/demo/edit_benchmark.py`) on
     `--num_fidelity_scenes` held-out scenes: every edit type scored against the generator's
     ground-truth render of the edited 3D state, into WORKDIR/edit_fidelity (table in the report).
  5. WORKDIR/report/index.html (`neural_assets.report`) and WORKDIR/report/results.json.

Eval pairs use `--eval_min_gap` (default 1): with a gap of 0 the source *is* the target and the
copy baseline's PSNR is infinite.
"""
from __future__ import annotations

import json
import logging as py_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from neural_assets import range_checks
from neural_assets.demo import host_devices
from neural_assets.demo import run as run_lib
from neural_assets.demo.run import run_demo

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_DEFAULT_CONFIG = os.path.join(_REPO, "configs", "synthetic.py")

# `--preset` becomes `--config=<its file>` in sys.argv before the config flag is defined:
# config_flags reads sys.argv at definition time to register the `--config.<field>` overrides.
if __name__ == "__main__":
  try:
    sys.argv = run_lib.preset_argv(sys.argv)
  except ValueError as _error:
    sys.exit(f"FATAL Flags parsing error: {_error}")

_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Experiment config (default: configs/synthetic.py).",
    lock_config=False)
_PRESET = flags.DEFINE_enum(
    "preset", "default", sorted(run_lib.PRESETS), "Which demo: 'default' (configs/synthetic.py, "
    "~15 min) or '3d' (configs/synthetic_3d.py: the toy 3D world, <= 60 min). Chooses the config "
    "file (not with --config) and the default --workdir.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Demo directory: data/, train/, report/ go here (default ./workdir/demo, "
    "./workdir/demo_<preset> for other presets).")
_MINUTES = flags.DEFINE_float(
    "minutes", None, "Wall-clock budget of this run for the VAE warm-up and training, in minutes "
    "(default: config.demo.minutes, 12 for configs/synthetic.py: data, latent cache, evaluation, "
    "edits and edit fidelity add ~3 min: ~15 in all on 2 cores; "
    "0: no training, only evaluate the newest checkpoint and write the report).")
_NUM_TRAIN_VIDEOS = flags.DEFINE_integer("num_train_videos", None,
                                         "Override config.synthetic.num_train_videos.")
_NUM_EVAL_VIDEOS = flags.DEFINE_integer("num_eval_videos", None,
                                        "Override config.synthetic.num_eval_videos.")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", None, "Override config.synthetic.num_frames.")
_DATA_WORKERS = flags.DEFINE_integer("data_workers", 2, "Processes rendering synthetic videos.")
_NUM_EDIT_SCENES = flags.DEFINE_integer("num_edit_scenes", 3,
                                        "Eval scenes shown per edit type (0: no edits).")
_NUM_SHOWN = flags.DEFINE_integer("num_shown", 4, "Eval examples in the reconstruction grid.")
_NUM_FIDELITY_SCENES = flags.DEFINE_integer(
    "num_fidelity_scenes", None, "Held-out scenes of the edit-fidelity benchmark (every edit "
    "type scored against the generator's ground truth; WORKDIR/edit_fidelity; 0: skip; default: "
    "config.demo.fidelity_scenes, 8 for configs/synthetic.py: fewer than the benchmark's 32).")
_EVAL_MIN_GAP = flags.DEFINE_integer(
    "eval_min_gap", 1, "Minimum frame gap of the evaluation pairs (see the module docstring).")
_VAE_MINUTES = flags.DEFINE_float(
    "vae_minutes", None, "Part of --minutes spent first warming up the VAE on the synthetic frames "
    "(default: config.demo.vae_minutes) "
    "(once per workdir; 0: keep a randomly initialised VAE, whose samples are noise).")
_BACKSTOP_SECONDS = flags.DEFINE_float(
    "backstop_seconds", 120.0, "Grace after the budget before the demo's on_step asks the "
    "trainer to save and stop; <0 disables.")

# Numbers are checked at parse time (NaN / inf included), naming the flag and the valid range.
_FLAG_RANGES = (("minutes", "a finite number", 0), ("vae_minutes", "a finite number", 0),
                ("backstop_seconds", "a finite number", None),
                ("num_train_videos", "an integer", 1), ("num_eval_videos", "an integer", 1),
                ("num_frames", "an integer", 2), ("data_workers", "an integer", 1),
                ("num_edit_scenes", "an integer", 0), ("num_shown", "an integer", 1),
                ("num_fidelity_scenes", "an integer", 0),
                ("eval_min_gap", "an integer", 0))
for _name, _kind, _low in _FLAG_RANGES:
  flags.register_validator(_name, *range_checks.absl_validator(_name, _kind, _low))


class _QuietLibraries(py_logging.Filter):
  """Drops INFO chatter of the checkpoint and compiler libraries (warnings still pass)."""

  def __init__(self, noisy_paths: tuple[str, ...] = ("/orbax/", "/jax/_src/", "/etils/",
                                                     "/tensorboard/")):
    super().__init__()
    self.noisy_paths = noisy_paths

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or not any(
        p in record.pathname for p in self.noisy_paths)


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  defaults = run_lib.demo_defaults(config)
  minutes = defaults["minutes"] if _MINUTES.value is None else _MINUTES.value
  if minutes < 0:
    raise app.UsageError(f"--minutes must be >= 0, got {minutes}.")
  workdir = _WORKDIR.value or run_lib.default_workdir(_PRESET.value)
  fidelity_scenes = (defaults["fidelity_scenes"] if _NUM_FIDELITY_SCENES.value is None
                     else _NUM_FIDELITY_SCENES.value)
  host_devices.prepare_process(config)  # May restart this process; before JAX starts.
  results = run_demo(
      config, workdir, minutes,
      data_overrides=dict(num_train_videos=_NUM_TRAIN_VIDEOS.value,
                          num_eval_videos=_NUM_EVAL_VIDEOS.value, num_frames=_NUM_FRAMES.value),
      data_workers=_DATA_WORKERS.value, num_shown=_NUM_SHOWN.value,
      num_edit_scenes=_NUM_EDIT_SCENES.value, eval_min_gap=_EVAL_MIN_GAP.value,
      num_fidelity_scenes=fidelity_scenes,
      backstop_seconds=_BACKSTOP_SECONDS.value, vae_minutes=_VAE_MINUTES.value)
  print(json.dumps({"metrics": results["metrics"], "run_info": results["run_info"],
                    "report": results["report"]}, indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
