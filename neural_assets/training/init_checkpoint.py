"""`config.training.init_checkpoint`: the weights a new run starts from.

Either a converted checkpoint (the --out_dir of `python -m neural_assets.convert`: an orbax
PyTree of {'unet', 'tokenizer': {'encoder'}, 'vae'}) or a training checkpoint (a step dir, its
checkpoints/ dir or the workdir: the newest step; only its `params` and `frozen_params['vae']`).

  resolve_init_checkpoint(path) -> (kind, directory)   cheap: directory listings only
  check_init_checkpoint(config)                          fails fast, before the model is built
  load_pretrained(state, path, setup, use_ema)           overwrites the parts of a fresh state
"""
from __future__ import annotations

import functools
from typing import Any

from absl import logging
from etils import epath
import flax
import jax
import ml_collections
import orbax.checkpoint as ocp

from neural_assets.convert.checkpoint_io import CheckpointMismatchError
from neural_assets.training import checkpoint_files
from neural_assets.training import train_state as train_state_lib
from neural_assets.training.train_state import TrainState


class InitCheckpointError(ValueError):
  """`config.training.init_checkpoint` is missing or is not a checkpoint training can start from."""


_INIT_EXPECTED = ("expected a converted initial checkpoint (the --out_dir of `python -m "
                  "neural_assets.convert`: an orbax PyTree with unet/, tokenizer/encoder, vae/) or "
                  "a training checkpoint (<workdir>/checkpoints/<step>, its checkpoints/ dir or "
                  "the workdir itself: the newest step is used)")


def resolve_init_checkpoint(path: str) -> tuple[str, epath.Path]:
  """What `config.training.init_checkpoint` points at: ('converted' | 'training', directory).

  'training' resolves a workdir or its checkpoints/ dir to the newest step directory. Cheap (a
  few directory listings), so it runs before any model is built.
  Raises:
    InitCheckpointError: the path does not exist, or holds no checkpoint of either kind.
  """
  where = epath.Path(path).absolute()
  if not where.exists():
    raise InitCheckpointError(f"config.training.init_checkpoint={path!r} does not exist; "
                              f"{_INIT_EXPECTED}.")
  if (where / "state").is_dir():
    return "training", where
  for candidate in (where, where / "checkpoints"):
    steps = checkpoint_files.step_dirs(candidate)
    if steps:
      logging.info("init_checkpoint %s is a training run; initialising from its newest "
                   "checkpoint %s.", path, steps[-1])
      return "training", steps[-1]
  if not (where / "_METADATA").exists() and not (where / "manifest.ocdbt").exists():
    found = sorted(p.name for p in where.iterdir())[:10] if where.is_dir() else "a file"
    raise InitCheckpointError(f"config.training.init_checkpoint={path!r} is not a checkpoint "
                              f"(it holds {found}); {_INIT_EXPECTED}.")
  return "converted", where


def check_init_checkpoint(config: ml_collections.ConfigDict) -> None:
  """Fails fast (before any model is built) on an init_checkpoint that is not there."""
  if config.training.init_checkpoint:
    resolve_init_checkpoint(config.training.init_checkpoint)


def _saved_arrays(kind: str, source: epath.Path, path: str) -> dict[str, Any]:
  """{'unet/...' | 'tokenizer/...' | 'vae/...': array metadata} of the checkpoint."""
  try:
    tree = checkpoint_files.tree_metadata(source / "state" if kind == "training" else source)
    if kind == "training":
      tree = {**dict(tree["params"]), "vae": dict(tree["frozen_params"])["vae"]}
    flat_saved = flax.traverse_util.flatten_dict(dict(tree), sep="/")
    for meta in flat_saved.values():
      tuple(meta.shape)  # Every leaf must be an array.
  except Exception as e:  # pylint: disable=broad-except
    raise InitCheckpointError(
        f"config.training.init_checkpoint={path!r}: {source} looks like a {kind} checkpoint but "
        f"its contents could not be read as one ({type(e).__name__}: {e}); "
        f"{_INIT_EXPECTED}.") from e
  return flat_saved


def load_pretrained(state: TrainState, path: str, setup: Any, use_ema: bool) -> TrainState:
  """Overwrites the parts of `state` found in the checkpoint at `path`.

  `path` is either
  - a converted checkpoint (from `python -m neural_assets.convert`): an orbax PyTree of
    {'unet', 'tokenizer': {'encoder'}, 'vae'}; model parts it lacks (the tokenizer's new layers)
    keep their initialisation (logged); or
  - a training checkpoint (a step dir, a checkpoints/ dir or a workdir: the newest step): its
    trained `params` and `frozen_params['vae']` are loaded (not its optimizer state or step: this
    is a new run starting from those weights).
  Each leaf goes to params['unet' | 'tokenizer'] or frozen_params['vae'] at the same path, read
  directly into its sharding. Any leaf whose path or shape this model does not have raises
  CheckpointMismatchError. `setup` is the run's `state_setup.Setup`.
  Raises:
    InitCheckpointError: `path` is missing or is neither kind of checkpoint.
  """
  kind, source = resolve_init_checkpoint(path)
  abstract = setup.abstract_state
  targets = {"unet": abstract.params["unet"], "tokenizer": abstract.params["tokenizer"],
             "vae": abstract.frozen_params["vae"]}
  flat_targets = flax.traverse_util.flatten_dict(targets, sep="/")
  flat_saved = _saved_arrays(kind, source, path)
  problems = []
  for name, meta in sorted(flat_saved.items()):
    if name not in flat_targets:
      problems.append(f"{name} {tuple(meta.shape)} has no place in the model")
    elif tuple(meta.shape) != tuple(flat_targets[name].shape):
      problems.append(f"{name} has shape {tuple(meta.shape)} in the checkpoint but "
                      f"{tuple(flat_targets[name].shape)} in the model built from the config")
  if problems:
    raise CheckpointMismatchError(
        f"Initial checkpoint {path} ({kind}) does not match the model config:\n  " +
        "\n  ".join(problems[:8]) + (f"\n  ... {len(problems) - 8} more" if len(problems) > 8
                                     else ""))
  target = flax.traverse_util.unflatten_dict({k: flat_targets[k] for k in flat_saved}, sep="/")
  if kind == "training":
    restored = checkpoint_files.restore_partial(source, {
        "params": {k: v for k, v in target.items() if k != "vae"},
        "frozen_params": {"vae": target["vae"]}})
    loaded = {**restored["params"], "vae": restored["frozen_params"]["vae"]}
  else:
    loaded = ocp.StandardCheckpointer().restore(source, target)
  loaded = flax.traverse_util.flatten_dict(loaded, sep="/")
  kept = sorted({k.split("/")[0] + ("/" + k.split("/")[1] if k.startswith("tokenizer") else "")
                 for k in flat_targets if k not in loaded})
  logging.info("Loaded %d arrays from %s (%s checkpoint); left at initialisation: %s",
               len(loaded), source, kind, kept or "nothing")
  flat_params = flax.traverse_util.flatten_dict(state.params, sep="/")
  flat_frozen = flax.traverse_util.flatten_dict(state.frozen_params, sep="/")
  for name, value in loaded.items():
    if name.startswith("vae/"):
      flat_frozen[name] = value
    else:
      flat_params[name] = value
  params = flax.traverse_util.unflatten_dict(flat_params, sep="/")
  frozen = flax.traverse_util.unflatten_dict(flat_frozen, sep="/")

  @functools.partial(jax.jit, out_shardings=setup.state_shardings)
  def rebuild(params, frozen, rng):
    return train_state_lib.create(params, frozen, setup.tx, jax.random.wrap_key_data(rng),
                                  use_ema)
  return rebuild(params, frozen, state.rng)
