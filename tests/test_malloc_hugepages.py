"""malloc_hugepages: when the process is re-executed with glibc's huge-page tunable, and that it is."""
import os
import subprocess
import sys

import pytest

from neural_assets.demo import malloc_hugepages as mh

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINUX = dict(system="linux", glibc=(2, 36), thp_mode="madvise")


def test_adds_the_tunable_and_keeps_other_tunables():
  env = mh.environment_with_hugepages({"PATH": "/bin"}, **LINUX)
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1" and env["PATH"] == "/bin"
  env = mh.environment_with_hugepages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, **LINUX)
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  assert mh.environment_with_hugepages({}, system="linux", glibc=(2, 36), thp_mode="always")


@pytest.mark.parametrize("environ, facts", [
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, {}),  # The user's choice stands.
    ({mh._MARKER: "1"}, {}),  # Already re-executed: never loop.
    ({}, dict(system="darwin")),
    ({}, dict(glibc=None)),  # musl and others.
    ({}, dict(glibc=(2, 34))),  # The tunable came with glibc 2.35.
    ({}, dict(thp_mode="never")),
])
def test_nothing_to_change(environ, facts):
  assert mh.environment_with_hugepages(environ, **{**LINUX, **facts}) is None


def _run(enabled):
  script = ("import os, sys; from neural_assets.demo import malloc_hugepages as mh; "
            "print('start', os.environ.get('GLIBC_TUNABLES', ''), flush=True); "
            f"mh.reexec_with_hugepages({enabled}); print('args', sys.argv[1:])")
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", mh._MARKER)}
  env["PYTHONPATH"] = REPO
  out = subprocess.run([sys.executable, "-c", script, "--flag=1"], env=env, check=True,
                       capture_output=True, text=True, timeout=120).stdout
  return out.splitlines()


def test_reexecutes_once_with_the_same_command_line():
  clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", mh._MARKER)}
  if mh.environment_with_hugepages(clean) is None:
    pytest.skip("no glibc >= 2.35 with transparent huge pages here")
  assert _run(True) == ["start ", "start glibc.malloc.hugetlb=1", "args ['--flag=1']"]
  assert _run(False) == ["start ", "args ['--flag=1']"]
