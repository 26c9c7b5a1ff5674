"""One XLA CPU device per core, so that the demo's data-parallel step keeps every core busy.

XLA's CPU client runs one program per device on its own thread; inside a program, only the big
convolutions and matmuls use the intra-op thread pool, and the many small fused elementwise and
normalisation ops of a toy UNet run on one core. Splitting the host into one device per core and
the batch over them (the trainer's `data` mesh axis) runs those ops on every core:
`benchmarks/train_step.py`-style timing of the demo's step (configs/synthetic.py, batch 16, 2
cores) gave 315 ms on 1 device, 274 ms on 2, 330 ms on 4. The math is the same data-parallel
step (the gradient of the global batch's mean loss); only the reduction order differs.

JAX reads the device count once, when its backend starts: call `split_host_devices` before any
JAX computation or device query. It sets JAX's public `jax_num_cpu_devices` option (this process
only: nothing is written to os.environ) and never overrides a count the user set, either in
XLA_FLAGS (`--xla_force_host_platform_device_count`) or as `jax_num_cpu_devices` (e.g. the
JAX_NUM_CPU_DEVICES environment variable).
"""
from __future__ import annotations

import math
import os
from typing import Iterable

from neural_assets.demo.settings import demo_settings

XLA_FLAG = "--xla_force_host_platform_device_count"


def usable_cores() -> int:
  """CPU cores this process may run on (its affinity mask where the OS has one)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def device_count_for(batch_sizes: Iterable[int], cores: int) -> int:
  """The most devices, at most `cores`, that split every batch size evenly (>= 1)."""
  divisor = 0
  for size in batch_sizes:
    divisor = math.gcd(divisor, int(size))
  return max(d for d in range(1, max(cores, 1) + 1) if divisor % d == 0) if divisor else 1


def split_host_devices(batch_sizes: Iterable[int], requested: int = 0) -> int:
  """Asks XLA for one CPU device per core (`requested` = 0) or for `requested` devices.

  Args:
    batch_sizes: global batch sizes the devices must split evenly (training and evaluation).
    requested: 0 = one per usable core (fewer if the batch sizes need it); n > 0 = n devices
      (1 = leave XLA's default single CPU device).

  Returns:
    The device count now set (the user's own when they set one), or 1 when nothing was set.

  Raises:
    RuntimeError: JAX's backends already started (too late to change the device count).
    ValueError: `requested` does not divide a batch size.
  """
  import jax  # pylint: disable=g-import-not-at-top  (importing jax starts no backend)
  batch_sizes = [int(b) for b in batch_sizes]
  for flag in os.environ.get("XLA_FLAGS", "").split():
    if flag.startswith(XLA_FLAG + "="):
      return int(flag.split("=", 1)[1])
  if jax.config.jax_num_cpu_devices >= 0:  # -1: unset.
    return int(jax.config.jax_num_cpu_devices)
  if requested < 0:
    raise ValueError(f"cpu_devices must be >= 0, got {requested}.")
  count = requested or device_count_for(batch_sizes, usable_cores())
  bad = [b for b in batch_sizes if b % count]
  if bad:
    raise ValueError(f"cpu_devices={count} does not divide the batch sizes {bad}.")
  if count == 1:
    return 1
  try:
    # JAX refuses the option (RuntimeError) once its backends started.
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError as e:
    raise RuntimeError("JAX's backends already started: split the host devices before any JAX "
                       "computation or device query.") from e
  return count


def split_for_config(config) -> int:
  """`split_host_devices` for a demo config: its training, evaluation and VAE warm-up batches,
  `config.demo.cpu_devices` devices (0 = one per core)."""
  demo = demo_settings(config)
  return split_host_devices(
      (config.data.global_batch_size, config.data.eval_global_batch_size,
       demo.vae_batch_size), demo.cpu_devices)


def prepare_process(config) -> int:
  """The demo's process set-up, first thing (before anything starts JAX's backends): restart
  with huge-page malloc when `config.demo.malloc_hugepages` (`malloc_hugepages`), then
  `split_for_config`; returns the device count."""
  from neural_assets.demo import malloc_hugepages  # pylint: disable=g-import-not-at-top
  malloc_hugepages.reexec_with_hugepages(demo_settings(config).malloc_hugepages)
  return split_for_config(config)
