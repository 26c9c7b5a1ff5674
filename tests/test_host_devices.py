"""neural_assets.demo.host_devices: one XLA CPU device per core, set before JAX starts."""
import os
import subprocess
import sys

import jax
import pytest

from neural_assets.demo import host_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("batch_sizes, cores, expected", [
    ((16, 32, 16), 2, 2),
    ((16, 32, 16), 6, 4),  # 6 and 5 do not divide 16.
    ((12,), 8, 6),
    ((7, 14), 2, 1),
    ((16,), 1, 1),
])
def test_device_count_divides_every_batch(batch_sizes, cores, expected):
  assert host_devices.device_count_for(batch_sizes, cores) == expected


def test_a_users_own_count_is_kept(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--foo=1 --xla_force_host_platform_device_count=3")
  assert host_devices.split_host_devices((16,), 2) == 3
  assert os.environ["XLA_FLAGS"] == "--foo=1 --xla_force_host_platform_device_count=3"


def test_errors(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  with pytest.raises(ValueError, match="does not divide the batch sizes \\[16\\]"):
    host_devices.split_host_devices((30, 16), 3)
  with pytest.raises(ValueError, match=">= 0"):
    host_devices.split_host_devices((16,), -1)
  jax.devices()  # This process's backends are running: too late to split.
  with pytest.raises(RuntimeError, match="already started"):
    host_devices.split_host_devices((16,), 2)
  assert os.environ["XLA_FLAGS"] == ""
  assert host_devices.split_host_devices((16,), 1) == 1  # Nothing to set: no error.


def _run(code: str, **env) -> list[str]:
  """stdout words of `code` in a fresh Python (no XLA_FLAGS unless given), run from the repo."""
  env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, **env}
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                        capture_output=True, text=True, timeout=120).stdout.split()


def test_split_before_jax_starts_gives_the_devices():
  out = _run("from neural_assets.demo import host_devices\n"
             "n = host_devices.split_host_devices((16, 32), 2)\n"
             "import jax, os\n"
             "print(n, jax.device_count(), jax.default_backend(), 'XLA_FLAGS' in os.environ)\n")
  # Public jax config only: the process environment is left alone.
  assert out == ["2", "2", "cpu", "False"]


def test_a_users_jax_num_cpu_devices_is_kept():
  out = _run("from neural_assets.demo import host_devices\n"
             "n = host_devices.split_host_devices((12,), 2)\n"
             "import jax\n"
             "print(n, jax.device_count())\n", JAX_NUM_CPU_DEVICES="3")
  assert out == ["3", "3"]
