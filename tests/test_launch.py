"""Dry runs of the launch scripts: each prints well-formed commands that run our main job."""
import os
import shlex
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG, WORKDIR = "configs/objectron.py", "/tmp/na work"  # a space tests the quoting


def dry_run(script, env=None, extra=()):
  out = subprocess.run(
      ["bash", os.path.join(ROOT, "launch", script), CONFIG, WORKDIR, "--dry_run", *extra],
      env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True, cwd=ROOT)
  return out.stdout


def main_invocation(shell_string):
  """Parses the shell string a launcher runs remotely; returns the main.py argv."""
  words = shlex.split(shell_string)
  i = words.index("-m")
  assert words[i - 1] == "python" and words[i + 1] == "neural_assets.main"
  return words[i + 2:]


@pytest.mark.parametrize("script", ["single_gpu.sh", "tpu_vm.sh", "xpk.sh", "slurm_gpu.sh",
                                    "common.sh"])
def test_scripts_parse(script):
  subprocess.run(["bash", "-n", os.path.join(ROOT, "launch", script)], check=True)


def test_single_gpu():
  (line,) = dry_run("single_gpu.sh", extra=["--", "--config.optimizer.lr=1e-4"]).splitlines()
  words = shlex.split(line)
  assert words[:2] == ["env", "XLA_PYTHON_CLIENT_MEM_FRACTION=0.95"]
  assert main_invocation(words[-1]) == [f"--config={CONFIG}", f"--workdir={WORKDIR}",
                                        "--config.optimizer.lr=1e-4"]


def test_tpu_vm_all_steps():
  lines = dry_run("tpu_vm.sh", env={"TPU_NAME": "na", "ZONE": "us-east5-a",
                                    "ACCELERATOR_TYPE": "v5p-64"}).splitlines()
  commands = [shlex.split(l) for l in lines]
  assert [c[:5] for c in commands] == [["gcloud", "compute", "tpus", "tpu-vm", verb]
                                       for verb in ("create", "scp", "ssh", "ssh")]
  assert "--accelerator-type=v5p-64" in commands[0]
  assert all("--zone=us-east5-a" in c for c in commands)
  assert all("--worker=all" in c for c in commands[1:])
  run_cmd = [w for w in commands[3] if w.startswith("--command=")][0][len("--command="):]
  argv = main_invocation(run_cmd)
  assert argv == [f"--config={CONFIG}", f"--workdir={WORKDIR}", "--distributed"]


def test_tpu_vm_requires_name():
  out = subprocess.run(["bash", os.path.join(ROOT, "launch", "tpu_vm.sh"), CONFIG, WORKDIR,
                        "--dry_run"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "TPU_NAME"})
  assert out.returncode != 0 and "TPU_NAME" in out.stderr


def test_xpk():
  (line,) = dry_run("xpk.sh", env={"CLUSTER": "c1", "IMAGE": "gcr.io/p/na:1",
                                   "WORKLOAD": "w1"}).splitlines()
  words = shlex.split(line)
  assert words[:3] == ["xpk", "workload", "create"]
  assert {"--cluster=c1", "--workload=w1", "--docker-image=gcr.io/p/na:1"} <= set(words)
  command = [w for w in words if w.startswith("--command=")][0][len("--command="):]
  assert "--distributed" in main_invocation(command)


@pytest.mark.parametrize("process_per,tasks,gpu_line", [
    ("gpu", "8", "#SBATCH --gpus-per-task=1"), ("host", "1", "#SBATCH --gpus-per-node=8")])
def test_slurm(process_per, tasks, gpu_line):
  out = dry_run("slurm_gpu.sh", env={"NODES": "4", "GPUS_PER_NODE": "8",
                                     "PROCESS_PER": process_per})
  lines = out.splitlines()
  assert "#SBATCH --nodes=4" in lines and f"#SBATCH --ntasks-per-node={tasks}" in lines
  assert gpu_line in lines
  srun = [l for l in lines if l.startswith("srun ")][0]
  argv = main_invocation(srun)
  assert argv[:2] == [f"--config={CONFIG}", f"--workdir={WORKDIR}"]
  assert "--distributed" in argv
  assert shlex.split(lines[-1])[0] == "sbatch"


def test_unknown_option_fails():
  out = subprocess.run(["bash", os.path.join(ROOT, "launch", "single_gpu.sh"), CONFIG, WORKDIR,
                        "--dryrun"], capture_output=True, text=True)
  assert out.returncode == 2 and "unknown option --dryrun" in out.stderr
