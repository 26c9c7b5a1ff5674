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


def read_json(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def read_safetensors(directory: str, filename: str) -> dict[str, np.ndarray]:
  """Reads `directory/filename` (or its sharded `*.safetensors.index.json` form) as numpy.

  Only safetensors is read: `.bin` / `.pt` pickles are refused, never unpickled.
  """
  path = os.path.join(directory, filename)
  index = path + ".index.json"
  if os.path.exists(path):
    tensors = load_file(path)
  elif os.path.exists(index):
    shards = sorted(set(read_json(index)["weight_map"].values()))
    tensors = {}
    for shard in shards:
      tensors.update(load_file(os.path.join(directory, shard)))
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
