"""Cross-process synchronisation of the training loop (no-ops in a single process)."""
from __future__ import annotations

from typing import Any

import jax
from jax.experimental import multihost_utils


def wait_for_all_processes(name: str) -> None:
  """Blocks until every process has called this with the same `name` (no-op in one process).

  `multihost_utils.sync_global_devices`: a device collective over every process's devices,
  which also fails (AssertionError) when the processes pass different names, i.e. took
  different paths through the loop. Measured under gloo CPU collectives (JAX 0.10.2, 2
  processes): a process that arrives 150 s after the other still meets it, before or after
  the processes' first collective (tests/test_multihost.py waits 40 s).
  """
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


class CompileThenSync:
  """Wraps a jitted function: compiles it on the first call, then waits for every process.

  Every process then starts the function's first run together, so its step time is not
  charged with another process's compilation, and processes that compiled different programs
  (different names) fail here instead of hanging inside a collective. Later calls run the
  compiled executable directly, so arguments must keep their shapes and shardings (the loop's
  batches do).
  """
  _count = 0

  def __init__(self, fn: Any, name: str):
    self._fn, self._name = fn, name
    self._compiled = None

  def __call__(self, *args):
    if self._compiled is None:
      self._compiled = self._fn.lower(*args).compile()
      if jax.process_count() > 1:
        CompileThenSync._count += 1  # The same count on every process: they run the same loop.
        wait_for_all_processes(f"neural_assets_{self._name}_{CompileThenSync._count}")
    return self._compiled(*args)
