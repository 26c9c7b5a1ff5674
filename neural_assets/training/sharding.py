"""FSDP sharding by rules: parameter path -> PartitionSpec; batches split over ('data', 'fsdp').

A parameter's path is its pytree key path joined by '/', e.g. `unet/conv_in/kernel`; optimizer
state leaves carry the parameter path inside theirs (`.../mu/unet/conv_in/kernel`), so the same
rules shard Adam's moments exactly like their parameters. Rules are `(regex, spec)` pairs tried
in order with `re.search`; `spec` is a tuple with one entry per array dimension (a config axis
name 'data' | 'fsdp' | 'tensor', a mesh axis name such as 'fsdp_0', a tuple of names, or None;
'fsdp' stands for all of its factor axes, see `mesh.py`).

A parameter that no rule matches is split over the fsdp devices by the default rule, in the
spirit of MaxDiffusion's logical-axis rules but without per-layer names:
  - the fsdp axis is a product of prime-sized mesh axes (`mesh.py`); each factor goes to the
    parameter's preferred dimension that it still divides, preferring the largest dimension
    (ties: the last one, the output features of Dense / Conv kernels). A [3, 3, 320, 320] kernel
    at fsdp=256 = 2^8 gets 2^6 on its last dimension and 2^2 on the one before: 256 shards of
    [3, 3, 80, 5], exactly 1/256 of it, where one 256-way split of one dimension fits neither.
  - a parameter splits over all fsdp devices whenever fsdp divides its element count; otherwise
    over as many factors as its dimensions take (a [320] bias: 64 of 256), replicated over the
    rest. `split_dims=False` restores the single-dimension rule (one dimension divisible by the
    whole fsdp size, else replicated).
  - arrays smaller than `min_size_to_shard` elements stay replicated (where the all-gather costs
    more than the memory saved).
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


def _mesh_axes(mesh: Mesh, entry: Any) -> tuple[str, ...]:
  """Mesh axes of one spec entry (None, a name or a tuple of names; 'fsdp' expanded)."""
  if entry is None:
    return ()
  names = (entry,) if isinstance(entry, str) else tuple(entry)
  try:
    return tuple(a for name in names for a in mesh_lib.expand_axis(mesh, name))
  except mesh_lib.MeshError as e:
    raise ShardingError(f"Spec entry {entry!r}: {e}") from e


def _spec_entry(axes: Sequence[str]) -> Any:
  if not axes:
    return None
  return axes[0] if len(axes) == 1 else tuple(axes)


def _dims_by_preference(shape: Sequence[int]) -> list[int]:
  """Dimension indices, largest first; ties: the later dimension first."""
  return sorted(range(len(shape)), key=lambda i: (shape[i], i), reverse=True)


def default_spec(shape: Sequence[int], mesh: Mesh, min_size_to_shard: int = 0,
                 split_dims: bool = True) -> P:
  """The default FSDP PartitionSpec of an array of `shape` (module docstring)."""
  shape = tuple(int(d) for d in shape)
  axes = [a for a in mesh_lib.fsdp_axes(mesh) if mesh.shape[a] > 1]
  fsdp = math.prod(mesh.shape[a] for a in axes)
  if fsdp == 1 or not shape or math.prod(shape) < min_size_to_shard:
    return P()
  order = _dims_by_preference(shape)
  assigned: list[list[str]] = [[] for _ in shape]
  if not split_dims:
    divisible = [i for i in order if shape[i] % fsdp == 0]
    if not divisible:
      return P()
    assigned[divisible[0]] = list(axes)
  else:
    left = list(shape)  # What remains of each dimension after the factors placed so far.
    for axis in axes:
      size = mesh.shape[axis]
      for i in order:
        if left[i] % size == 0:
          assigned[i].append(axis)
          left[i] //= size
          break
  if not any(assigned):
    return P()
  return P(*(_spec_entry(a) for a in assigned))


def partition_spec(path: str, shape: Sequence[int], mesh: Mesh, rules: Iterable[Rule] = (),
                   min_size_to_shard: int = 0, split_dims: bool = True) -> P:
  """PartitionSpec of one array `path` of `shape` (first matching rule, else the FSDP default)."""
  shape = tuple(int(d) for d in shape)
  for pattern, spec in rules:
    if re.search(pattern, path):
      spec = tuple(None if s in (None, "") else s for s in spec)
      if len(spec) > len(shape):
        raise ShardingError(f"Rule {pattern!r} gives {len(spec)}-D spec {spec} for {path} of "
                            f"shape {shape}.")
      out = []
      for dim, entry in zip(shape, spec):
        axes = _mesh_axes(mesh, entry)
        size = math.prod(mesh.shape[a] for a in axes)
        if dim % size:
          raise ShardingError(
              f"Rule {pattern!r} splits {path} of shape {shape} with {spec}, but dimension {dim} "
              f"is not divisible by mesh axes {entry} of size {size} (mesh {dict(mesh.shape)}).")
        out.append(_spec_entry(axes))
      return P(*out)
  return default_spec(shape, mesh, min_size_to_shard, split_dims)


def tree_partition_specs(tree: Any, mesh: Mesh, rules: Iterable[Rule] = (),
                         min_size_to_shard: int = 0, split_dims: bool = True) -> Any:
  """PartitionSpec for every array leaf of `tree` (arrays or ShapeDtypeStructs)."""
  rules = tuple(rules)
  return jax.tree_util.tree_map_with_path(
      lambda kp, x: partition_spec(path_str(kp), np.shape(x), mesh, rules, min_size_to_shard,
                                   split_dims),
      tree)


def tree_shardings(tree: Any, mesh: Mesh, rules: Iterable[Rule] = (),
                   min_size_to_shard: int = 0, split_dims: bool = True) -> Any:
  """NamedSharding for every array leaf of `tree`."""
  specs = tree_partition_specs(tree, mesh, rules, min_size_to_shard, split_dims)
  return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), specs,
                                is_leaf=lambda x: isinstance(x, P))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over ('data', 'fsdp'), the rest replicated."""
  return NamedSharding(mesh, P(mesh_lib.batch_axes(mesh)))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Returns the per-process batch size; raises when the batch does not split evenly."""
  shards = mesh_lib.num_batch_shards(mesh)
  if global_batch_size % shards:
    raise ShardingError(
        f"Global batch size {global_batch_size} is not divisible by the {shards} batch shards "
        f"(mesh data x fsdp = {mesh.shape['data']} x {mesh_lib.axis_size(mesh, 'fsdp')}).")
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


def config_shardings(tree: Any, mesh: Mesh, sharding_config: Any) -> Any:
  """`tree_shardings` with the knobs of `config.sharding` (rules, min_size_to_shard, split_dims)."""
  return tree_shardings(tree, mesh, sharding_config.rules, sharding_config.min_size_to_shard,
                        sharding_config.split_dims)


def replicated_over_fsdp(abstract_tree: Any, shardings: Any, mesh: Mesh,
                         min_size: int) -> list[tuple[str, tuple[int, ...], int]]:
  """Leaves of at least `min_size` elements that are not split over all fsdp devices.

  Returns [(path, shape, fsdp ways they are split)] -- empty when every large leaf divides.
  """
  fsdp = set(mesh_lib.fsdp_axes(mesh))
  size = mesh_lib.axis_size(mesh, "fsdp")
  out = []
  flat = jax.tree_util.tree_leaves_with_path(abstract_tree)
  shard_leaves = jax.tree_util.tree_leaves(
      shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  for (kp, leaf), sharding in zip(flat, shard_leaves):
    if math.prod(leaf.shape) < min_size:
      continue
    used = [a for entry in sharding.spec if entry is not None
            for a in ((entry,) if isinstance(entry, str) else entry) if a in fsdp]
    ways = math.prod(mesh.shape[a] for a in used)
    if ways < size:
      out.append((path_str(kp), tuple(leaf.shape), ways))
  return out
