"""Runs a worker script as a real 2-process JAX job on this machine (CPU, gloo collectives,
coordinator on 127.0.0.1) and returns what each process printed after `RESULT`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.test_training import _free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(worker: str, *args: str, timeout: float = 240) -> list[Any]:
  """Starts `python -c worker PORT PROCESS_ID *args` twice; each must exit 0 and print
  `RESULT<json>`; returns the two JSON values in process order."""
  port = _free_port()
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, "XLA_FLAGS": "",
         "TF_CPP_MIN_LOG_LEVEL": "3"}
  procs = [subprocess.Popen([sys.executable, "-c", worker, str(port), str(i), *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=timeout)
      assert p.returncode == 0, err[-4000:]
      outs.append(json.loads(out.split("RESULT")[1].splitlines()[0]))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return outs
