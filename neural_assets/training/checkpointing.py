"""Orbax checkpoints of the train state + data-iterator state, with resume and SIGTERM handling.

A checkpoint step directory holds three items:
  state  the `TrainState` pytree (params, frozen params, optimizer state, EMA, step, RNG),
         written sharded by every process (async by default);
  data   the data iterator's state, one JSON file per process (each process reads its own
         shard of the data, so each has its own position);
  meta   JSON: parameter shapes and the config the run was started with, for error messages.

Resume = run the same command again: `restore_latest` finds the newest step. A checkpoint from
another config (a parameter path or shape that differs) or one that cannot be read raises
`CheckpointError` naming the step and what is wrong; nothing is written or deleted in that case,
so the last good checkpoint is never overwritten. Orbax writes each step to a temporary directory
and renames it only once complete, so a run killed mid-save leaves no half checkpoint.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import signal
import threading
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from neural_assets.training.sharding import path_str


class CheckpointError(RuntimeError):
  """A checkpoint cannot be restored into this run (corrupt, or written by another config)."""


# ---------------------------------------------------------------------------------------------
# Data iterator state: one JSON file per process.


class DataStateHandler(ocp.CheckpointHandler):
  """Writes / reads this process's data-iterator state as `process_<i>-of-<n>.json`."""

  def save(self, directory: epath.Path, args: "DataStateSave"):
    state = args.state
    if isinstance(state, bytes):
      payload = {"encoding": "base64", "value": base64.b64encode(state).decode("ascii")}
    else:
      payload = {"encoding": "json", "value": state}
    (directory / _process_file()).write_text(json.dumps(payload))

  def restore(self, directory: epath.Path, args: Optional["DataStateRestore"] = None) -> Any:
    del args
    path = directory / _process_file()
    if not path.exists():
      present = sorted(p.name for p in directory.iterdir())
      raise CheckpointError(
          f"No data-iterator state {path} for process {jax.process_index()} of "
          f"{jax.process_count()} (found {present}): was the checkpoint written with a different "
          "number of processes?")
    payload = json.loads(path.read_text())
    if payload["encoding"] == "base64":
      return base64.b64decode(payload["value"])
    return payload["value"]

  def metadata(self, directory: epath.Path) -> Any:
    del directory
    return None

  def finalize(self, directory: epath.Path) -> None:
    del directory

  def close(self):
    pass


def _process_file() -> str:
  return f"process_{jax.process_index()}-of-{jax.process_count()}.json"


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: Any  # What the iterator's get_state() returned: a JSON-able dict or bytes.


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


# ---------------------------------------------------------------------------------------------


def shapes_of(tree: Any) -> dict[str, list[int]]:
  """{'a/b/c': shape} of every array leaf (for comparing a checkpoint with a run)."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {path_str(kp): [int(d) for d in np.shape(leaf)] for kp, leaf in flat}


def describe_mismatch(saved: dict[str, list[int]], wanted: dict[str, list[int]],
                      limit: int = 5) -> list[str]:
  """Human-readable differences between two {path: shape} maps (empty when they agree)."""
  problems = []
  # Parameters first: they name the model change; optimizer-state paths repeat them.
  for path in sorted(set(saved) | set(wanted), key=lambda p: (not p.startswith("params/"), p)):
    if path not in saved:
      problems.append(f"{path} {tuple(wanted[path])} is in this run but not in the checkpoint")
    elif path not in wanted:
      problems.append(f"{path} {tuple(saved[path])} is in the checkpoint but not in this run")
    elif list(saved[path]) != list(wanted[path]):
      problems.append(f"{path} has shape {tuple(saved[path])} in the checkpoint but "
                      f"{tuple(wanted[path])} in this run")
  if len(problems) > limit:
    problems = problems[:limit] + [f"... and {len(problems) - limit} more"]
  return problems


class Checkpointer:
  """Saves and restores (TrainState, data-iterator state) under `directory`.

  Args:
    directory: where step directories go (`<workdir>/checkpoints`).
    max_to_keep: how many recent checkpoints to keep.
    async_save: write in a background thread while training continues.
    config_json: the run's config, stored for error messages.
  """

  def __init__(self, directory: str, max_to_keep: int, async_save: bool = True,
               config_json: str = "{}"):
    self.directory = epath.Path(directory)
    self._config_json = config_json
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data", "meta"),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": DataStateHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def all_steps(self) -> list[int]:
    self._manager.reload()
    return list(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_state: Any) -> None:
    """Starts saving `state` (a TrainState) and `data_state` as checkpoint `step`."""
    meta = {"step": int(step), "shapes": shapes_of(state), "config": self._config_json}
    self._manager.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                data=DataStateSave(data_state),
                                meta=ocp.args.JsonSave(meta)),
        force=True)
    logging.info("Checkpoint %d: save started in %s", step, self.directory)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
    """Restores checkpoint `step` into the shapes / shardings of `abstract_state`.

    Args:
      step: a step in `all_steps()`.
      abstract_state: TrainState of jax.ShapeDtypeStruct with `.sharding` set.
    Returns:
      (TrainState of sharded jax Arrays, data-iterator state).
    Raises:
      CheckpointError: unreadable / corrupt checkpoint, or one written by a different config.
    """
    where = self.directory / str(step)
    others = [s for s in self.all_steps() if s != step]
    keep_note = (f"Nothing was modified. Other checkpoints here: {others or 'none'}; to resume "
                 f"from an earlier one, move {where} aside.")
    try:
      meta = self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"Checkpoint {where} is unreadable or corrupt (its metadata could not "
                            f"be read: {type(e).__name__}: {e}). {keep_note}") from e
    problems = describe_mismatch(meta.get("shapes", {}), shapes_of(abstract_state))
    if problems:
      raise CheckpointError(
          f"Checkpoint {where} was written by a run with a different model/optimizer config "
          f"and cannot be restored into this one:\n  " + "\n  ".join(problems) +
          f"\nUse a new --workdir for a new config. {keep_note}")
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                        data=DataStateRestore()))
      state = restored["state"]
      # Force the reads to finish here, so a bad file surfaces as a CheckpointError.
      jax.block_until_ready(state)
    except CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"Checkpoint {where} is corrupt and could not be restored "
                            f"({type(e).__name__}: {e}). {keep_note}") from e
    _check_finite(state, where, keep_note)
    return state, restored["data"]

  def wait(self) -> None:
    """Blocks until pending async saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _check_finite(state: Any, where: Any, keep_note: str) -> None:
  # A flipped byte in a float payload decodes to some number; NaN/Inf in the weights is the part
  # that can be seen without a checksum and would poison the run silently.
  flat = [(path_str(kp), leaf) for kp, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
          if np.issubdtype(leaf.dtype, np.floating)]
  if not flat:
    return
  finite = jax.jit(lambda xs: [jax.numpy.all(jax.numpy.isfinite(x)) for x in xs])(
      [leaf for _, leaf in flat])
  bad = [path for (path, _), ok in zip(flat, finite) if not bool(ok)][:3]
  if bad:
    raise CheckpointError(f"Checkpoint {where} holds non-finite values in {bad}; it is corrupt "
                          f"or was saved from a diverged run. {keep_note}")


# ---------------------------------------------------------------------------------------------
# SIGTERM: finish the current step, save, exit cleanly.


class PreemptionWatcher:
  """Turns SIGTERM into a flag the loop polls; all processes agree on it.

  Multi-process runs combine the flags of all processes (any one stops everyone), so every
  process saves the same step.
  """

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None

  def install(self) -> "PreemptionWatcher":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)
    return self

  def uninstall(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_signal(self, signum, frame):
    del frame
    logging.warning("Received signal %d: will save a checkpoint and stop after this step.",
                    signum)
    self._flag.set()

  def request_stop(self) -> None:
    self._flag.set()

  def should_stop(self) -> bool:
    local = self._flag.is_set()
    if jax.process_count() == 1:
      return local
    flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
    return bool(np.any(flags))
