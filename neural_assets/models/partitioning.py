"""Activation sharding hints: activations keep their batch dimension split over the batch axes.

Parameters are sharded FSDP-style (`training/sharding.py`), often over their output features.
Left alone, XLA's partitioner may propagate a weight's feature sharding into the activations (a
[B, L, heads * d] projection split over heads * d) and then, at the next reshape, give up and
replicate the whole activation ("involuntary full rematerialization"), so a device holds
activations of the *global* batch and its memory grows with the number of devices. Pinning the
activations' batch dimension to the batch axes at module boundaries (as MaxDiffusion's logical
activation constraints do) makes XLA gather the weights instead, which is what FSDP means.

The hints read the mesh from the tracing context (`jax.sharding.use_abstract_mesh`, set by the
training / evaluation steps); without one (tests, single-device inference) they do nothing, so
the models stay mesh-agnostic.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
from jax.sharding import PartitionSpec as P


def batch_axes(mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh) -> tuple[str, ...]:
  """The mesh axes a batch is split over: 'data' and every fsdp factor ('fsdp', 'fsdp_i'), in
  mesh order (`training/mesh.py` builds 'data' outermost). The one definition: the training
  mesh (`mesh.batch_axes`, the batch and output shardings) and the activation hints here agree."""
  return tuple(name for name in mesh.axis_names
               if name in ("data", "fsdp") or name.startswith("fsdp_"))


def constrain_batch(x: jax.Array) -> jax.Array:
  """`x` [B, ...] with B split over the context mesh's batch axes, other dimensions whole.

  A no-op without a mesh in context, or when B does not divide by the number of batch shards
  (e.g. a single image at inference).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  axes = batch_axes(mesh)
  shards = math.prod(mesh.shape[a] for a in axes)
  if shards == 1 or x.ndim == 0 or x.shape[0] % shards:
    return x
  return jax.lax.with_sharding_constraint(x, P(axes))


def with_mesh_hints(fn: Callable, mesh: jax.sharding.Mesh | None) -> Callable:
  """`fn` traced with `mesh` in context, so `constrain_batch` inside it applies (None: `fn`)."""
  if mesh is None:
    return fn

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)

  return wrapped
