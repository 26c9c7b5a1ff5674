"""FSDP sharding by rules: parameter path -> PartitionSpec; batches split over ('data', 'fsdp').

A parameter's path is its pytree key path joined by '/', e.g. `unet/conv_in/kernel`; optimizer
state leaves carry the parameter path inside theirs (`.../mu/unet/conv_in/kernel`), so the same
rules shard Adam's moments exactly like their parameters. Rules are `(regex, spec)` pairs tried
in order with `re.search`; `spec` is a tuple with one entry per array dimension (a mesh axis
name, a tuple of names, or None). A parameter that no rule matches is split over 'fsdp' along its
largest dimension divisible by the fsdp size, or replicated when none is (or when it is smaller
than `min_size_to_shard` elements, where the all-gather costs more than the memory saved).
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from neural_assets.training import mesh as mesh_lib

Rule = tuple[str, Sequence[Any]]


class ShardingError(ValueError):
  """A sharding rule does not fit the parameter it matches."""


def path_str(key_path: Sequence[Any]) -> str:
  """'/'-joined names of a jax key path (dict keys, attribute names, sequence indices)."""
  parts = []
  for key in key_path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _axis_size(mesh: Mesh, entry: Any) -> int:
  if entry is None:
    return 1
  names = (entry,) if isinstance(entry, str) else tuple(entry)
  missing = [n for n in names if n not in mesh.shape]
  if missing:
    raise ShardingError(f"Mesh axes {missing} are not in the mesh {dict(mesh.shape)}.")
  return math.prod(mesh.shape[n] for n in names)


def partition_spec(path: str, shape: Sequence[int], mesh: Mesh, rules: Iterable[Rule] = (),
                   min_size_to_shard: int = 0) -> P:
  """PartitionSpec of one array `path` of `shape` (first matching rule, else the FSDP default)."""
  shape = tuple(int(d) for d in shape)
  for pattern, spec in rules:
    if re.search(pattern, path):
      spec = tuple(None if s in (None, "") else (s if isinstance(s, str) else tuple(s))
                   for s in spec)
      if len(spec) > len(shape):
        raise ShardingError(f"Rule {pattern!r} gives {len(spec)}-D spec {spec} for {path} of "
                            f"shape {shape}.")
      for dim, entry in zip(shape, spec):
        size = _axis_size(mesh, entry)
        if dim % size:
          raise ShardingError(
              f"Rule {pattern!r} splits {path} of shape {shape} with {spec}, but dimension {dim} "
              f"is not divisible by mesh axes {entry} of size {size} (mesh {dict(mesh.shape)}).")
      return P(*spec)
  fsdp = mesh.shape["fsdp"]
  if fsdp == 1 or not shape or math.prod(shape) < min_size_to_shard:
    return P()
  # Largest divisible dimension; on ties the last one (output features of Dense / Conv kernels).
  candidates = [(dim, axis) for axis, dim in enumerate(shape) if dim % fsdp == 0]
  if not candidates:
    return P()
  _, axis = max(candidates)
  spec = [None] * len(shape)
  spec[axis] = "fsdp"
  return P(*spec)


def tree_partition_specs(tree: Any, mesh: Mesh, rules: Iterable[Rule] = (),
                         min_size_to_shard: int = 0) -> Any:
  """PartitionSpec for every array leaf of `tree` (arrays or ShapeDtypeStructs)."""
  rules = tuple(rules)
  return jax.tree_util.tree_map_with_path(
      lambda kp, x: partition_spec(path_str(kp), np.shape(x), mesh, rules, min_size_to_shard),
      tree)


def tree_shardings(tree: Any, mesh: Mesh, rules: Iterable[Rule] = (),
                   min_size_to_shard: int = 0) -> Any:
  """NamedSharding for every array leaf of `tree`."""
  specs = tree_partition_specs(tree, mesh, rules, min_size_to_shard)
  return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), specs,
                                is_leaf=lambda x: isinstance(x, P))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over ('data', 'fsdp'), the rest replicated."""
  return NamedSharding(mesh, P(mesh_lib.batch_axes()))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Returns the per-process batch size; raises when the batch does not split evenly."""
  shards = mesh_lib.num_batch_shards(mesh)
  if global_batch_size % shards:
    raise ShardingError(
        f"Global batch size {global_batch_size} is not divisible by the {shards} batch shards "
        f"(mesh data x fsdp = {mesh.shape['data']} x {mesh.shape['fsdp']}).")
  if global_batch_size % jax.process_count():
    raise ShardingError(f"Global batch size {global_batch_size} is not divisible by the "
                        f"{jax.process_count()} processes.")
  return global_batch_size // jax.process_count()


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Turns this process's slice of the batch (numpy, leading dim B/P) into global jax Arrays.

  Every process must call this with its own, equally sized slice; the global batch is the
  concatenation in process order.
  """
  sharding = batch_sharding(mesh)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def per_device_bytes(abstract_tree: Any, shardings: Any) -> int:
  """Bytes that the largest-loaded device holds for `abstract_tree` under `shardings`.

  Computed from shapes only (ShapeDtypeStructs are fine); nothing is materialised.
  """
  leaves = jax.tree_util.tree_leaves(abstract_tree)
  shard_leaves = jax.tree_util.tree_leaves(
      shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  if len(leaves) != len(shard_leaves):
    raise ValueError(f"Tree has {len(leaves)} arrays but {len(shard_leaves)} shardings.")
  total = 0
  for leaf, sharding in zip(leaves, shard_leaves):
    shard_shape = sharding.shard_shape(tuple(leaf.shape))
    total += math.prod(shard_shape) * np.dtype(leaf.dtype).itemsize
  return total
