"""Transparent huge pages for glibc's malloc in CPU runs (the demo, its learning curve).

XLA's CPU runtime allocates its per-step temporaries (~124 MB per device for the demo's step)
with malloc, which serves blocks this large by mmap and returns them by munmap at every step: each
step then faults in ~60k fresh 4 KiB pages. With glibc's `glibc.malloc.hugetlb=1` tunable (glibc
>= 2.35) malloc asks the kernel for transparent huge pages (madvise) for those blocks: measured
on the 2-core machine (`benchmarks/train_step.py --config configs/synthetic.py --mesh data=2`,
batch 16), 244 ms per step instead of 282 and 0.7M page faults instead of 8.4M. A tunable is read
when the process starts, so `reexec_with_hugepages` re-executes the interpreter with it set; it is
called first thing, before JAX starts. Nothing changes where it cannot help (not Linux / glibc,
glibc < 2.35, transparent huge pages disabled) or where the user set the tunable already.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Mapping

TUNABLE = "glibc.malloc.hugetlb"
_MARKER = "NEURAL_ASSETS_MALLOC_REEXEC"  # Set in the re-executed process: never loop.
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, ...] | None:
  name, version = platform.libc_ver()
  if name != "glibc" or not version:
    return None
  return tuple(int(part) for part in version.split(".") if part.isdigit())


def _thp_mode() -> str | None:
  """The kernel's transparent-huge-page mode ('always', 'madvise', 'never'), None if unknown."""
  try:
    with open(_THP_MODE) as f:
      text = f.read()
  except OSError:
    return None
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else None


_DETECT = object()  # Default of the platform facts: look at this machine.


def environment_with_hugepages(environ: Mapping[str, str], *, system: Any = _DETECT,
                               glibc: Any = _DETECT,
                               thp_mode: Any = _DETECT) -> dict[str, str] | None:
  """The environment to re-execute with, or None when there is nothing to change.

  Args:
    environ: the current environment.
    system, glibc, thp_mode: the platform facts (default: this machine's): `sys.platform`, the
      glibc version (None for another C library), the transparent-huge-page mode (None:
      unknown).
  """
  system = sys.platform if system is _DETECT else system
  glibc = _glibc_version() if glibc is _DETECT else glibc
  thp_mode = _thp_mode() if thp_mode is _DETECT else thp_mode
  tunables = environ.get("GLIBC_TUNABLES", "")
  if (environ.get(_MARKER) or system != "linux" or glibc is None or glibc < (2, 35)
      or thp_mode == "never" or TUNABLE in tunables):
    return None
  env = dict(environ)
  env["GLIBC_TUNABLES"] = ":".join(filter(None, [tunables, f"{TUNABLE}=1"]))
  env[_MARKER] = "1"
  return env


def reexec_with_hugepages(enabled: bool = True) -> None:
  """Replaces this process by the same command line with the tunable set (see the module
  docstring); returns without doing anything when disabled or when nothing would change."""
  if not enabled:
    return
  env = environment_with_hugepages(os.environ)
  if env is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
