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

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

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
  from neural_assets.training import trainer  # pylint: disable=g-import-not-at-top
  if _MODE.value == "eval":
    trainer.evaluate_checkpoint(config, workdir)
  else:
    trainer.train_and_evaluate(config, workdir, run_eval=_MODE.value == "train_and_eval")


if __name__ == "__main__":
  app.run(main)
