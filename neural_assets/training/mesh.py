"""The device mesh: every process's devices arranged on named axes ('data', 'fsdp'[, 'tensor']).

`config.mesh` gives one size per axis; one size may be -1 ("whatever is left"). The batch is split
over ('data', 'fsdp') and parameters over 'fsdp' (see `sharding.py`); 'tensor' is there for rules
that split single layers and is dropped when its size is 1 and not asked for.

Device order: `jax.devices()` lists devices process by process, so with 'data' outermost each
process owns a contiguous block of the global batch, which is what
`jax.make_array_from_process_local_data` expects.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

AXES = ("data", "fsdp", "tensor")


class MeshError(ValueError):
  """The requested mesh cannot be built from the available devices."""


def resolve_axis_sizes(sizes: Mapping[str, int], num_devices: int) -> dict[str, int]:
  """Returns {axis: size} with the single -1 filled in so that the product is `num_devices`.

  Raises MeshError naming the sizes when the product cannot equal the device count.
  """
  unknown = [k for k in sizes if k not in AXES]
  if unknown:
    raise MeshError(f"Unknown mesh axes {unknown}: expected a subset of {AXES}.")
  resolved = {axis: int(sizes.get(axis, 1)) for axis in AXES}
  free = [axis for axis, size in resolved.items() if size == -1]
  bad = {axis: size for axis, size in resolved.items() if size == 0 or size < -1}
  if bad:
    raise MeshError(f"Mesh axis sizes must be positive or -1, got {bad}.")
  if len(free) > 1:
    raise MeshError(f"At most one mesh axis may be -1, got {free} in {resolved}.")
  fixed = math.prod(size for size in resolved.values() if size != -1)
  if free:
    if num_devices % fixed:
      raise MeshError(
          f"Mesh {resolved}: the fixed axes multiply to {fixed}, which does not divide the "
          f"{num_devices} available devices, so axis {free[0]!r} cannot be filled.")
    resolved[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise MeshError(
        f"Mesh {resolved} needs {fixed} devices but {num_devices} are available "
        f"({jax.process_count()} process(es)); set one axis to -1 or change the sizes.")
  return resolved


def create_mesh(sizes: Mapping[str, int],
                devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds a Mesh over `devices` (default: all processes' devices) with axes data/fsdp/tensor.

  Args:
    sizes: {'data': int, 'fsdp': int, 'tensor': int}; missing axes are 1, one may be -1.
    devices: devices to use, in process order; default `jax.devices()`.
  Returns:
    Mesh with axis_names ('data', 'fsdp', 'tensor'); size-1 axes are kept so that partition specs
    naming them are always valid.
  """
  devices = list(jax.devices() if devices is None else devices)
  resolved = resolve_axis_sizes(dict(sizes), len(devices))
  shape = tuple(resolved[axis] for axis in AXES)
  device_array = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(device_array, AXES)


def batch_axes() -> tuple[str, str]:
  """Mesh axes the batch dimension is split over."""
  return ("data", "fsdp")


def num_batch_shards(mesh: Mesh) -> int:
  return math.prod(mesh.shape[axis] for axis in batch_axes())
