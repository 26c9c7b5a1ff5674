"""Reading training checkpoints without a `checkpointing.Checkpointer`: the one place that knows
where step directories are and how to read part of one.

Layout (written by `checkpointing.Checkpointer`, see DESIGN.md): `<workdir>/checkpoints/<step>/`
holds `state/` (orbax PyTree of the `TrainState`), `data/` and `meta/`.

  step_dirs(directory)          complete step directories directly under `directory`
  find_checkpoint(path, step)   a workdir / demo workdir / checkpoints dir / step dir -> step dir
  tree_metadata(directory)      the array metadata tree of an orbax PyTree checkpoint
  restore_partial(step_dir, item)  some arrays of `<step_dir>/state`, each into its sharding,
                                checked against the checksums recorded at save
"""
from __future__ import annotations

import os
from typing import Any

from etils import epath
import jax
import orbax.checkpoint as ocp

from neural_assets.training import checkpointing


def step_dirs(directory: Any) -> list[epath.Path]:
  """Step directories (`<n>/state`) directly under `directory`, oldest first; [] if none.

  Orbax writes `<step>.orbax-checkpoint-tmp-*` first and renames it when complete, so a name of
  digits only is a complete step.
  """
  directory = epath.Path(directory)
  if not directory.is_dir():
    return []
  steps = [d for d in directory.iterdir() if d.name.isdigit() and (d / "state").is_dir()]
  return sorted(steps, key=lambda d: int(d.name))


def find_checkpoint(path: str, step: int | None = None) -> tuple[str, int]:
  """Resolves a training workdir, a demo workdir, a `checkpoints/` directory or a step directory.

  Returns:
    (step directory holding `state/` and `meta/`, step).
  Raises:
    FileNotFoundError: nothing that looks like a checkpoint, or `step` is not there.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(os.path.join(path, "state")):
    name = os.path.basename(path)
    if step is not None and name != str(step):
      raise FileNotFoundError(f"{path} is the checkpoint of step {name}, not {step}.")
    return path, int(name) if name.isdigit() else -1
  # A training workdir, the demo's workdir (`neural_assets.demo`: WORKDIR/train) or the
  # checkpoints directory itself.
  candidates = [os.path.join(path, "checkpoints"), os.path.join(path, "train", "checkpoints")]
  root = next((c for c in candidates if os.path.isdir(c)), path)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"No checkpoint at {path}: not a directory.")
  steps = [int(d.name) for d in step_dirs(root)]
  if not steps:
    raise FileNotFoundError(f"No checkpoint under {root} (want <workdir>/checkpoints/<step>/state "
                            "as written by neural_assets.main).")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise FileNotFoundError(f"No checkpoint of step {step} under {root}; found {steps}.")
  return os.path.join(root, str(step)), step


def tree_metadata(directory: Any) -> Any:
  """The tree of array metadata (`.shape`, `.dtype`) of the orbax PyTree checkpoint in
  `directory` (a step's `state/`, or a converted checkpoint)."""
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    saved = checkpointer.metadata(directory)
  finally:
    checkpointer.close()
  saved = getattr(saved, "item_metadata", saved)
  return getattr(saved, "tree", saved)


def restore_partial(step_dir: Any, item: Any) -> Any:
  """Reads only the arrays named by `item` from `<step_dir>/state`.

  Args:
    step_dir: a step directory (`find_checkpoint`, `step_dirs`).
    item: a subtree of the `TrainState`, keyed like it (e.g. {'params': ..., 'frozen_params':
      {'vae': ...}}), of `jax.ShapeDtypeStruct` with `.sharding`: each array is read directly
      into that sharding.
  Returns:
    `item` with jax Arrays.
  Raises:
    CheckpointError: an array differs from the checksum recorded at save, or holds NaN/Inf.
  """
  step_dir = epath.Path(step_dir)
  restore_args = jax.tree_util.tree_map(lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding),
                                        item)
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    restored = checkpointer.restore(
        step_dir / "state", args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                        partial_restore=True))
  finally:
    checkpointer.close()
  checkpointing.verify_partial(step_dir, restored)
  return restored
