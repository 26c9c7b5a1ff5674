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

Integrity: `meta` records a checksum of every array of the state (computed on device, so sharded
arrays need no gather); restore recomputes them and refuses the step, naming the arrays, when one
differs (a flipped bit or byte on disk decodes to a plausible number that nothing else would
catch). A state holding NaN/Inf is never saved (the save is skipped with an error; the previous
checkpoint stays the newest). A full disk surfaces as one `CheckpointSaveError` ("no space left
on device" and the path); the checkpoints already complete are kept.

The directory is created by the first save, not before: a run refused at start (another config's
checkpoint, a corrupt one) leaves the directory exactly as it was.
"""
from __future__ import annotations

import base64
import dataclasses
import errno
import json
import logging as std_logging
import re
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from neural_assets.training.sharding import path_str


class CheckpointError(RuntimeError):
  """A checkpoint cannot be restored into this run (corrupt, or written by another config)."""


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written (e.g. no space left on device)."""


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


def _as_uint32_words(x: jax.Array) -> jax.Array:
  """The bits of `x` as uint32 words (64-bit elements give two words, <32-bit ones one each)."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  width = jnp.dtype(x.dtype).itemsize
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[width]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _checksum(x: jax.Array) -> jax.Array:
  """uint32 sum of every word times an odd weight from its position (mod 2^32).

  A change of any single element changes the sum (odd weights are invertible mod 2^32), and the
  sum does not depend on how the array is sharded, so save and restore agree across meshes.
  """
  words = _as_uint32_words(x)
  index = jnp.zeros(words.shape, jnp.uint32)
  stride = 1
  for dim in reversed(range(words.ndim)):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, words.shape, dim) * jnp.uint32(stride)
    stride = (stride * words.shape[dim]) % (1 << 32)
  weight = index * jnp.uint32(2654435761) * jnp.uint32(2) + jnp.uint32(1)
  return jnp.sum(words * weight, dtype=jnp.uint32)


@jax.jit
def _fingerprints(leaves: list[jax.Array]) -> tuple[list[jax.Array], list[jax.Array]]:
  checksums = [_checksum(x) for x in leaves]
  finite = [jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact)
            else jnp.bool_(True) for x in leaves]
  return checksums, finite


def fingerprint(tree: Any) -> tuple[dict[str, int], list[str]]:
  """({path: checksum} of every array leaf, [paths of leaves holding NaN/Inf])."""
  flat = [(path_str(kp), leaf) for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]
  if not flat:
    return {}, []
  checksums, finite = _fingerprints([leaf for _, leaf in flat])
  def local(x):  # Replicated scalars: every process holds the value, so read the local copy.
    return np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x)
  sums = {path: int(local(c)) for (path, _), c in zip(flat, checksums)}
  bad = [path for (path, _), ok in zip(flat, finite) if not bool(local(ok))]
  return sums, bad


def _no_space(error: BaseException) -> Optional[str]:
  """If `error` or its causes say the disk is full: the path it names ('' if none), else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return error.filename or ""
    text = str(error)
    if "no space left on device" in text.lower():
      # tensorstore: 'Failed writing: "<file>": ... No space left on device'.
      match = re.search(r'Failed writing: "([^"]+)"', text) or re.search(r'"(/[^"]+)"', text)
      return match.group(1) if match else ""
    error = error.__cause__ or error.__context__
  return None


class _QuietDiskFull(std_logging.Filter):
  """Drops orbax's own log records of a full disk (one per writer thread, each with a traceback);
  the Checkpointer reports it once as a CheckpointSaveError instead."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if "orbax" not in record.pathname:
      return True
    if record.exc_info and record.exc_info[1] is not None:
      if _no_space(record.exc_info[1]) is not None:
        return False
    return "no space left on device" not in record.getMessage().lower()


def _is_closed_loop_noise(unraisable: Any) -> bool:
  """A failed async save's leftover: a tensorstore write that completes after orbax closed the
  save's event loop posts its result with `loop.call_soon_threadsafe`, which raises
  "Event loop is closed" in tensorstore's own thread. The failure itself is reported by the
  save or wait that finds it (`CheckpointSaveError`)."""
  error = unraisable.exc_value
  if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
    return False
  frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
  return any(frame.name == "call_soon_threadsafe" for frame in frames)


class _UnraisableFilter:
  """While entered, drops the unraisable exceptions `drop` accepts and passes every other one to
  the hook that was installed before.

  Why a hook: the exception is raised in a thread that tensorstore runs, not in Python code of
  ours, so Python reports it only through `sys.unraisablehook` (no logger, no warning to
  filter). Entered for as long as a writable manager can have writes in flight (first save to
  `close`), and left so as not to undo a hook someone installed after it.
  """

  def __init__(self, drop: Callable[[Any], bool]):
    self._drop = drop
    self._previous = None

  def __enter__(self) -> "_UnraisableFilter":
    self._previous = sys.unraisablehook
    sys.unraisablehook = self._hook
    return self

  def __exit__(self, *exc_info) -> None:
    if sys.unraisablehook == self._hook:  # pylint: disable=comparison-with-callable
      sys.unraisablehook = self._previous
    self._previous = None

  def _hook(self, unraisable: Any) -> None:
    if self._drop(unraisable):
      return
    (self._previous or sys.__unraisablehook__)(unraisable)


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
    self._max_to_keep = max_to_keep
    self._async_save = async_save
    self._manager = None
    self._writable = False
    self._saved_steps: list[int] = []
    self._failed = False  # A save failed and was reported: later waits stay quiet.
    self._filter = None
    self._unraisable_filter = None

  def _make_manager(self, writable: bool) -> ocp.CheckpointManager:
    # Read-only until the first save: creating the directory, cleaning temporary directories of
    # killed runs or writing root metadata would change a workdir whose run is then refused.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=self._max_to_keep if writable else None,
        save_interval_steps=1 if writable else 0, create=writable,
        enable_async_checkpointing=self._async_save and writable,
        cleanup_tmp_directories=writable, read_only=not writable)
    return ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data", "meta"),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": DataStateHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def _reader(self) -> Optional[ocp.CheckpointManager]:
    if self._manager is None:
      if not self.directory.exists():
        return None
      self._manager = self._make_manager(writable=False)
    return self._manager

  def _writer(self) -> ocp.CheckpointManager:
    if not self._writable:
      if self._manager is not None:
        self._manager.close()
      self._quiet(True)
      self._manager = self._make_manager(writable=True)
      self._writable = True
    return self._manager

  def _quiet(self, on: bool) -> None:
    """Installs / removes the filters that keep a full disk from flooding the log: orbax's
    per-thread log records and the closed-loop leftovers of a failed async save."""
    absl_logger = logging.get_absl_logger()
    if on and self._filter is None:
      self._filter = _QuietDiskFull()
      absl_logger.addFilter(self._filter)
      self._unraisable_filter = _UnraisableFilter(_is_closed_loop_noise).__enter__()
    elif not on and self._filter is not None:
      absl_logger.removeFilter(self._filter)
      self._filter = None
      self._unraisable_filter.__exit__(None, None, None)
      self._unraisable_filter = None

  def all_steps(self) -> list[int]:
    manager = self._reader()
    if manager is None:
      return []
    manager.reload()
    return list(manager.all_steps())

  def latest_step(self) -> Optional[int]:
    manager = self._reader()
    return None if manager is None else manager.latest_step()

  def save(self, step: int, state: Any, data_state: Any) -> bool:
    """Starts saving `state` (a TrainState) and `data_state` as checkpoint `step`.

    Returns False (and logs why) when `state` holds NaN/Inf: such a state is never written.
    Raises:
      CheckpointSaveError: this or an earlier async save failed (e.g. the disk is full).
    """
    checksums, nonfinite = fingerprint(state)
    if nonfinite:
      logging.error(
          "Not saving checkpoint %d: non-finite values in %s%s. The newest checkpoint in %s "
          "stays step %s.", step, nonfinite[:3],
          f" and {len(nonfinite) - 3} more arrays" if len(nonfinite) > 3 else "",
          self.directory, self.latest_step())
      return False
    meta = {"step": int(step), "shapes": shapes_of(state), "config": self._config_json,
            "checksums": checksums}
    try:
      self._writer().save(
          int(step),
          args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=DataStateSave(data_state),
                                  meta=ocp.args.JsonSave(meta)),
          force=True)
    except Exception as e:  # pylint: disable=broad-except
      # Usually the previous (async) save failing, reported when this one waits for it.
      self._raise_save_error(e, self._saved_steps[-1] if self._saved_steps else step)
    self._saved_steps.append(int(step))
    logging.info("Checkpoint %d: save started in %s", step, self.directory)
    return True

  def _raise_save_error(self, error: BaseException, step: Any) -> None:
    """Re-raises a failed (possibly earlier, async) save as one CheckpointSaveError."""
    self._failed = True
    steps = []
    try:
      steps = self.all_steps()
    except Exception:  # pylint: disable=broad-except
      pass
    kept = (f"Complete checkpoints kept: {steps or 'none'}; rerun the same command to resume "
            "from the newest.")
    path = _no_space(error)
    if path is not None:
      # The failed step is in orbax's temporary path, e.g. '<dir>/6.orbax-checkpoint-tmp/...'.
      match = re.search(r"/(\d+)\.orbax-checkpoint-tmp", path)
      step = match.group(1) if match else step
      raise CheckpointSaveError(
          f"No space left on device while writing checkpoint {step} to {path or self.directory}."
          f" Free space there (or use another --workdir). {kept}") from None
    raise CheckpointSaveError(f"Writing checkpoint {step} in {self.directory} failed "
                              f"({type(error).__name__}: {error}). {kept}") from error

  def restore(self, step: int, abstract_state: Any, with_data: bool = True
              ) -> tuple[Any, Any]:
    """Restores checkpoint `step` into the shapes / shardings of `abstract_state`.

    Args:
      step: a step in `all_steps()`.
      abstract_state: TrainState of jax.ShapeDtypeStruct with `.sharding` set.
      with_data: also restore this process's data-iterator state (resuming training). False
        (evaluation, inference) reads the model state only, so a checkpoint written by any
        number of processes can be evaluated by any other.
    Returns:
      (TrainState of sharded jax Arrays, data-iterator state or None).
    Raises:
      CheckpointError: unreadable / corrupt checkpoint (including an array whose checksum differs
        from the one recorded at save), or one written by a different config.
    """
    where = self.directory / str(step)
    others = [s for s in self.all_steps() if s != step]
    keep_note = (f"Nothing was modified. Other checkpoints here: {others or 'none'}; to resume "
                 f"from an earlier one, move {where} aside.")
    manager = self._reader() or self._writer()
    try:
      meta = manager.restore(
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
      items = dict(state=ocp.args.StandardRestore(abstract_state))
      if with_data:
        items["data"] = DataStateRestore()
      restored = manager.restore(step, args=ocp.args.Composite(**items))
      state = restored["state"]
      # Force the reads to finish here, so a bad file surfaces as a CheckpointError.
      jax.block_until_ready(state)
    except CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"Checkpoint {where} is corrupt and could not be restored "
                            f"({type(e).__name__}: {e}). {keep_note}") from e
    checksums, nonfinite = fingerprint(state)
    saved = meta.get("checksums")
    if saved is None:
      logging.warning("Checkpoint %s records no checksums (written by an older version): its "
                      "arrays cannot be verified.", where)
    else:
      changed = sorted(p for p in checksums if p in saved and int(saved[p]) != checksums[p])
      if changed:
        raise CheckpointError(
            f"Checkpoint {where} is corrupt: the data of {changed[:3]}"
            f"{f' and {len(changed) - 3} more arrays' if len(changed) > 3 else ''} read back "
            f"differs from the checksum recorded when it was saved (damaged files under "
            f"{where / 'state'}). {keep_note}")
    if nonfinite:
      raise CheckpointError(f"Checkpoint {where} holds non-finite values in {nonfinite[:3]}; it "
                            f"is corrupt or was saved from a diverged run. {keep_note}")
    return state, (restored["data"] if with_data else None)

  def wait(self) -> None:
    """Blocks until pending async saves are on disk.

    Raises:
      CheckpointSaveError: a pending save failed (e.g. the disk is full).
    """
    if self._manager is None:
      return
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      if not self._failed:  # Already reported by the save that found it.
        self._raise_save_error(e, self._saved_steps[-1] if self._saved_steps else "?")

  def close(self) -> None:
    if self._manager is None:
      return
    try:
      self.wait()
    finally:
      try:
        self._manager.close()
      except Exception:  # pylint: disable=broad-except
        if not self._failed:
          raise
      finally:
        self._manager = None
        self._writable = False
        self._quiet(False)


def verify_partial(step_dir: Any, restored: Any) -> None:
  """Checks arrays read from part of a checkpoint's `state` (e.g. only the parameters) against
  the checksums its `meta` recorded; `restored` is keyed like the TrainState
  ({'params': ..., 'frozen_params': {'vae': ...}}).

  Raises:
    CheckpointError: an array differs from its recorded checksum, or holds NaN/Inf.
  """
  meta_path = epath.Path(step_dir) / "meta" / "metadata"
  saved = {}
  if meta_path.exists():
    try:
      saved = json.loads(meta_path.read_text()).get("checksums") or {}
    except (ValueError, AttributeError) as e:
      raise CheckpointError(f"Checkpoint {step_dir}: its metadata {meta_path} is damaged "
                            f"({e}).") from e
  checksums, nonfinite = fingerprint(restored)
  changed = sorted(p for p, c in checksums.items() if p in saved and int(saved[p]) != c)
  if changed:
    raise CheckpointError(f"Checkpoint {step_dir} is corrupt: the data of {changed[:3]} read back "
                          "differs from the checksum recorded when it was saved; use another "
                          "step.")
  if nonfinite:
    raise CheckpointError(f"Checkpoint {step_dir} holds non-finite values in {nonfinite[:3]}; "
                          "use another step.")


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
