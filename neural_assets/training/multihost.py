"""Cross-process synchronisation of the training loop (no-ops in a single process)."""
from __future__ import annotations

from typing import Any

import jax
from jax._src import distributed  # pylint: disable=g-bad-import-order


def wait_for_all_processes(name: str, timeout_s: float) -> None:
  """Blocks until every process has called this with the same `name`, or `timeout_s` passes.

  A barrier of the coordination service that `jax.distributed.initialize` started, so waiting
  costs no device collective. `jax.experimental.multihost_utils.sync_global_devices` does not fit
  here: it is a device collective, and on CPU the first one gives up when the processes arrive
  more than 30 s apart (gloo's context set-up: "GetKeyValue() timed out ... 30s"). JAX 0.10 has
  no public name for the coordination-service barrier; this reaches it as `multihost_utils`
  itself does (`jax._src.distributed.global_state`), in this one place.
  """
  if jax.process_count() == 1:
    return
  client = distributed.global_state.client
  if client is None:
    raise RuntimeError("jax.distributed.initialize() was not called, but there are "
                       f"{jax.process_count()} processes.")
  client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))


class CompileThenSync:
  """Wraps a jitted function: compiles it on the first call, then waits for every process.

  A process that finishes compiling first would otherwise wait inside the first cross-process
  collective, and CPU (gloo) collectives give up after 30 s; `wait_for_all_processes` waits as
  long as compilation takes (up to `timeout_s`). Later calls run the compiled executable
  directly, so arguments must keep their shapes and shardings (the loop's batches do).
  """
  _count = 0

  def __init__(self, fn: Any, name: str, timeout_s: int = 3600):
    self._fn, self._name, self._timeout_s = fn, name, timeout_s
    self._compiled = None

  def __call__(self, *args):
    if self._compiled is None:
      self._compiled = self._fn.lower(*args).compile()
      if jax.process_count() > 1:
        CompileThenSync._count += 1  # The same count on every process: they run the same loop.
        wait_for_all_processes(f"neural_assets_{self._name}_{CompileThenSync._count}",
                               self._timeout_s)
    return self._compiled(*args)
