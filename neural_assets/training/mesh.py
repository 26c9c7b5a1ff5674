"""The device mesh: every process's devices arranged on named axes ('data', 'fsdp', 'tensor').

`config.mesh` gives one size per axis; one size may be -1 ("whatever is left"). The batch is split
over ('data', 'fsdp') and parameters over 'fsdp' (see `sharding.py`); 'tensor' is there for rules
that split single layers (size 1 by default).

The 'fsdp' axis is built as its prime factors, one mesh axis each: fsdp=256 becomes the eight
size-2 axes 'fsdp_0' ... 'fsdp_7' (fsdp=12: 'fsdp_0'=3, 'fsdp_1'=2, 'fsdp_2'=2); a prime or
size-1 fsdp stays one axis named 'fsdp'. The devices are the same, in the same order, as with one 'fsdp' axis, so a
collective over all of them is the same group; the factors let one parameter be split over
several of its dimensions (a [3, 3, 320, 320] kernel over 64 x 4 of 256 devices), which a single
256-way axis cannot do because neither 320 divides by 256. `fsdp_axes(mesh)` names them and
`axis_size(mesh, 'fsdp')` is their product; the name 'fsdp' in a sharding rule means all of them.

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

# The models' activation hints split the batch over the same axes, so the one definition lives
# with them (models do not import training).
from neural_assets.models.partitioning import batch_axes

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


def prime_factors(n: int) -> tuple[int, ...]:
  """Prime factors of n >= 1, largest first, with repeats (1 -> (1,))."""
  if n < 1:
    raise MeshError(f"Mesh axis size must be >= 1, got {n}.")
  factors, p = [], 2
  while p * p <= n:
    while n % p == 0:
      factors.append(p)
      n //= p
    p += 1
  if n > 1:
    factors.append(n)
  return tuple(sorted(factors, reverse=True)) or (1,)


def mesh_layout(resolved: Mapping[str, int]) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """(axis names, sizes) of the mesh for resolved {data, fsdp, tensor} sizes (fsdp factored)."""
  factors = prime_factors(resolved["fsdp"])
  fsdp_names = ("fsdp",) if len(factors) == 1 else tuple(f"fsdp_{i}" for i in range(len(factors)))
  names = ("data",) + fsdp_names + ("tensor",)
  return names, (resolved["data"],) + factors + (resolved["tensor"],)


def create_mesh(sizes: Mapping[str, int],
                devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds a Mesh over `devices` (default: all processes' devices) with axes data/fsdp/tensor.

  Args:
    sizes: {'data': int, 'fsdp': int, 'tensor': int}; missing axes are 1, one may be -1.
    devices: devices to use, in process order; default `jax.devices()`.
  Returns:
    Mesh with axis_names ('data', 'fsdp' | 'fsdp_0', ..., 'tensor') (module docstring); size-1
    axes are kept so that partition specs naming them are always valid.
  """
  devices = list(jax.devices() if devices is None else devices)
  resolved = resolve_axis_sizes(dict(sizes), len(devices))
  names, shape = mesh_layout(resolved)
  device_array = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(device_array, names)


def abstract_mesh(sizes: Mapping[str, int], num_devices: int) -> jax.sharding.AbstractMesh:
  """The device-less mesh of `create_mesh(sizes)` over `num_devices` (for shape-only planning)."""
  names, shape = mesh_layout(resolve_axis_sizes(dict(sizes), num_devices))
  return jax.sharding.AbstractMesh(shape, names)


def fsdp_axes(mesh: Mesh | jax.sharding.AbstractMesh) -> tuple[str, ...]:
  """The mesh axes that together make 'fsdp', outermost first ('fsdp' or 'fsdp_0', ...)."""
  axes = tuple(name for name in mesh.axis_names
               if name == "fsdp" or name.startswith("fsdp_"))
  if not axes:
    raise MeshError(f"Mesh {dict(mesh.shape)} has no fsdp axis: build it with create_mesh.")
  return axes


def expand_axis(mesh: Mesh | jax.sharding.AbstractMesh, name: str) -> tuple[str, ...]:
  """Mesh axes behind a config axis name ('fsdp' -> its factors; others -> themselves)."""
  if name == "fsdp":
    return fsdp_axes(mesh)
  if name not in mesh.shape:
    raise MeshError(f"Mesh axis {name!r} is not in the mesh {dict(mesh.shape)}.")
  return (name,)


def axis_size(mesh: Mesh | jax.sharding.AbstractMesh, name: str) -> int:
  """Size of a config axis ('data', 'fsdp', 'tensor') or of one mesh axis."""
  return math.prod(mesh.shape[a] for a in expand_axis(mesh, name))


def num_batch_shards(mesh: Mesh | jax.sharding.AbstractMesh) -> int:
  return math.prod(mesh.shape[axis] for axis in batch_axes(mesh))
