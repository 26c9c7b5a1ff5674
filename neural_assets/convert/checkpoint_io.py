"""Reading PyTorch-library checkpoints (safetensors only) into Flax parameter trees.

The loaders in this package map each PyTorch parameter name to a Flax path and layout; this module
holds what they share: reading tensors without unpickling, and placing converted arrays into a
parameter template with a clear error on the first key or shape that does not match.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file


class CheckpointMismatchError(ValueError):
  """A checkpoint does not match the model built from its config."""


class CorruptWeightsError(ValueError):
  """A weight file is damaged (unreadable) or holds NaN / Inf values."""


def read_json(path: str) -> dict[str, Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CorruptWeightsError(f"{path} is not valid JSON ({e}): the file is damaged; download "
                              "or export it again.") from e


def load_safetensors_file(path: str) -> dict[str, np.ndarray]:
  """Reads one safetensors file; refuses a damaged file or NaN / Inf weights, naming the file.

  A NaN or Inf in published weights is corruption (or a diverged export), and converted into a
  training checkpoint it would only show up as NaN losses later.
  """
  try:
    tensors = load_file(path)
  except Exception as e:  # pylint: disable=broad-except
    reason = " ".join(str(e).split())  # The Rust error's own lines, on one line.
    raise CorruptWeightsError(f"{path} is not a readable safetensors file ({type(e).__name__}: "
                              f"{reason}); it is truncated or damaged: download or export it "
                              "again.") from e
  bad = {name: int(v.size - np.count_nonzero(np.isfinite(v)))
         for name, v in tensors.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))}
  if bad:
    first = sorted(bad)[:3]
    raise CorruptWeightsError(
        f"{path} holds NaN/Inf values in {len(bad)} tensor(s): " +
        ", ".join(f"{name} ({bad[name]} of {tensors[name].size})" for name in first) +
        (" ..." if len(bad) > 3 else "") +
        "; the file is damaged or was exported from a diverged model: refusing to convert it.")
  return tensors


def read_safetensors(directory: str, filename: str) -> dict[str, np.ndarray]:
  """Reads `directory/filename` (or its sharded `*.safetensors.index.json` form) as numpy.

  Only safetensors is read: `.bin` / `.pt` pickles are refused, never unpickled.
  Raises:
    CorruptWeightsError: a damaged file, or NaN / Inf weights (named).
  """
  path = os.path.join(directory, filename)
  index = path + ".index.json"
  if os.path.exists(path):
    tensors = load_safetensors_file(path)
  elif os.path.exists(index):
    shards = sorted(set(read_json(index)["weight_map"].values()))
    tensors = {}
    for shard in shards:
      tensors.update(load_safetensors_file(os.path.join(directory, shard)))
  else:
    pickles = [f for f in os.listdir(directory) if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    hint = (f" Found pickle files {pickles}: convert them to safetensors first (pickles are never "
            "loaded, they can execute code)." if pickles else "")
    raise FileNotFoundError(f"No {filename} in {directory}.{hint}")
  return {k: np.asarray(v, dtype=np.float32) if v.dtype.kind == "f" else v
          for k, v in tensors.items()}


def torch_conv_to_flax(w: np.ndarray) -> np.ndarray:
  """[O, I, kh, kw] (PyTorch) -> [kh, kw, I, O] (Flax)."""
  return np.transpose(w, (2, 3, 1, 0))


def torch_linear_to_flax(w: np.ndarray) -> np.ndarray:
  """[O, I] (PyTorch) -> [I, O] (Flax)."""
  return np.transpose(w)


def fill_params(template: Mapping[str, Any], converted: Mapping[tuple[str, ...], np.ndarray],
                what: str) -> dict[str, Any]:
  """Returns `template`'s tree with every leaf taken from `converted` (keyed by Flax path).

  Raises CheckpointMismatchError naming the first parameter that is missing, extra or of the
  wrong shape, so a checkpoint from another model never loads silently.
  """
  flat = traverse_util.flatten_dict(dict(template))
  for path in sorted(flat):
    name = "/".join(path)
    if path not in converted:
      raise CheckpointMismatchError(
          f"{what}: parameter {name} {tuple(flat[path].shape)} expected by the config is not in "
          "the checkpoint.")
    got = converted[path]
    if tuple(got.shape) != tuple(flat[path].shape):
      raise CheckpointMismatchError(
          f"{what}: parameter {name} has shape {tuple(got.shape)} in the checkpoint but "
          f"{tuple(flat[path].shape)} in the model built from the config.")
  extra = sorted(set(converted) - set(flat))
  if extra:
    raise CheckpointMismatchError(
        f"{what}: checkpoint parameter {'/'.join(extra[0])} has no place in the model built from "
        f"the config ({len(extra)} unused in all).")
  return traverse_util.unflatten_dict(
      {p: np.asarray(converted[p], dtype=flat[p].dtype) for p in flat})
