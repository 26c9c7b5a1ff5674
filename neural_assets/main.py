r"""Trains and evaluates Neural Assets.

  python -m neural_assets.main --config=configs/movi_e.py --workdir=/tmp/movi_e \
      [--config.optimizer.lr=1e-4] [--mode=train|eval|train_and_eval]

Re-running the same command resumes from the newest checkpoint in `--workdir`.

Multi-process runs (one process per host): pass `--coordinator_address=HOST:PORT
--num_processes=N --process_id=I` (or let `jax.distributed.initialize()` discover them on a
managed cluster with `--distributed`). `--cpu_collectives=gloo` enables cross-process collectives
between CPU devices (tests, CPU clusters).
"""
from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from neural_assets import config_checks
from neural_assets import config_files

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (e.g. configs/smoke.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and summaries.")
_MODE = flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval"],
                          "train: training only; eval: evaluate the newest checkpoint once; "
                          "train_and_eval: training with periodic evaluation.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with cluster auto-detection.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "HOST:PORT of process 0 for a multi-process run.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_LOCAL_DEVICES = flags.DEFINE_integer(
    "num_cpu_devices", None, "Number of CPU devices per process (CPU runs and tests only).")
_CPU_COLLECTIVES = flags.DEFINE_enum(
    "cpu_collectives", None, ["gloo", "mpi"],
    "Cross-process collectives implementation for CPU devices.")

flags.mark_flags_as_required(["config", "workdir"])


def _initialize_jax() -> None:
  if _LOCAL_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _LOCAL_DEVICES.value)
  if _CPU_COLLECTIVES.value:
    jax.config.update("jax_cpu_collectives_implementation", _CPU_COLLECTIVES.value)
  if _COORDINATOR.value or _NUM_PROCESSES.value:
    missing = [name for name, flag in (("coordinator_address", _COORDINATOR),
                                       ("num_processes", _NUM_PROCESSES),
                                       ("process_id", _PROCESS_ID)) if flag.value is None]
    if missing:
      raise app.UsageError(f"A multi-process run needs --{', --'.join(missing)} as well.")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()


def _base_config(argv):
  """The config file named by --config, without the --config.* overrides (None if unreadable)."""
  values = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  values += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
  if not values:
    return None
  try:
    return config_files.load(values[-1])
  except Exception:  # pylint: disable=broad-except
    return None


def _fail(message: str) -> None:
  print(f"FATAL Flags parsing error: {message}\nPass --helpshort or --helpfull to see help on "
        "flags.", file=sys.stderr)
  sys.exit(1)


def parse_flags(argv):
  """absl's flag parsing, with one line (not chained tracebacks) for a bad config override and a
  range check of the resulting config (`config_checks`)."""
  try:
    rest = flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    base = _base_config(argv)
    line = config_checks.unknown_override(base, argv) if base is not None else None
    if line is None:
      # Another flag error (a value of the wrong type, a missing file): its own message.
      line = " ".join(str(e).split())
    _fail(line)
  if _CONFIG.value is not None:
    try:
      config_checks.check_config(_CONFIG.value)
    except config_checks.ConfigError as e:
      _fail(str(e))
  return rest


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _initialize_jax()
  logging.info("JAX process %d / %d, local devices %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  workdir = _WORKDIR.value
  if "://" not in workdir:  # Cloud paths (gs://...) are used as they are.
    workdir = os.path.abspath(os.path.expanduser(workdir))
  config = _CONFIG.value
  # Imported here so that flag and config errors surface before the heavy imports.
  # pylint: disable=g-import-not-at-top
  from data_pipelines.video_record import DataFileError
  from neural_assets.convert.checkpoint_io import CheckpointMismatchError
  from neural_assets.training import checkpointing
  from neural_assets.training import trainer
  from neural_assets.training.init_checkpoint import InitCheckpointError
  # pylint: enable=g-import-not-at-top
  refusals = (checkpointing.CheckpointError, checkpointing.CheckpointSaveError,
              InitCheckpointError, trainer.TrainingDivergedError,
              CheckpointMismatchError, config_checks.ConfigError, FileNotFoundError,
              DataFileError)
  try:
    if _MODE.value == "eval":
      trainer.evaluate_checkpoint(config, workdir)
    else:
      trainer.train_and_evaluate(config, workdir, run_eval=_MODE.value == "train_and_eval")
  except refusals as e:
    # A refusal with its reason and fix, once; the traceback would only repeat it.
    print(f"ERROR ({type(e).__name__}): {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
