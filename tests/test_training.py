"""End-to-end tests of the training job with the smoke config (tiny model, 32x32 synthetic data).

Every run happens in a subprocess with its own device count; they share a persistent XLA
compilation cache and compile with `--xla_backend_optimization_level=0`, so the identical jitted
functions of successive runs compile once (the tests check results, not speed).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from tests import video_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_DIR = os.path.join(tempfile.gettempdir(), "neural_assets_test_xla_cache")


def _env(num_devices=1):
  flags = "--xla_backend_optimization_level=0"
  if num_devices > 1:
    flags += f" --xla_force_host_platform_device_count={num_devices}"
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags,
          "JAX_COMPILATION_CACHE_DIR": CACHE_DIR,
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
          "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


def _main_cmd(workdir, data_dir, *extra):
  return [sys.executable, "-m", "neural_assets.main", "--config=configs/smoke.py",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", *extra]


def _run(cmd, num_devices=1, timeout=240):
  return subprocess.run(cmd, cwd=ROOT, env=_env(num_devices), capture_output=True, text=True,
                        timeout=timeout)


def _steps(workdir):
  ckpt = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(ckpt) if d.isdigit())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("synthetic")
  video_fixtures.render_synthetic_splits(out, (("train", 8, 0), ("eval", 4, 1)), 32, 4, _env())
  return str(out)


@pytest.fixture(scope="module")
def smoke_run(data_dir, tmp_path_factory):
  """One full `python -m neural_assets.main` train + eval run of the smoke config."""
  workdir = str(tmp_path_factory.mktemp("smoke"))
  result = _run(_main_cmd(workdir, data_dir))
  assert result.returncode == 0, result.stderr[-5000:]
  return workdir, result.stderr


def test_smoke_config_trains_and_evaluates_via_main(smoke_run):
  workdir, log = smoke_run
  assert _steps(workdir) == [3, 6]  # every_steps=3, max_to_keep=2.
  assert "Training from step 0 to 6." in log
  for key in ("train/loss", "train/grad_norm", "eval/image/psnr", "eval/object/ssim"):
    assert key in log, key
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["training"]["num_train_steps"] == 6
  # The loop logged a finite loss.
  loss = float(log.split("train/loss=")[1].split(",")[0])
  assert np.isfinite(loss) and 0 < loss < 10


def test_eval_mode_scores_the_newest_checkpoint(smoke_run, data_dir):
  workdir, log = smoke_run
  result = _run(_main_cmd(workdir, data_dir, "--mode=eval"))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Evaluation at step 6 (raw weights)" in result.stderr  # The smoke config keeps no EMA.
  # Same checkpoint, same eval pairs and sampling key: the same numbers as the training run's.
  psnr = lambda text: text.split("eval/image/psnr=")[1].split(",")[0]
  assert psnr(result.stderr) == psnr(log)
  assert _steps(workdir) == [3, 6]


def _snapshot(root):
  """{relative path: (mtime, bytes | None)} of everything under `root`."""
  out = {}
  for path, dirs, files in os.walk(root):
    for name in dirs + files:
      full = os.path.join(path, name)
      content = open(full, "rb").read() if name in files else None
      out[os.path.relpath(full, root)] = (os.path.getmtime(full), content)
  return out


def test_mismatched_or_corrupt_checkpoint_fails_and_is_kept(smoke_run, data_dir, tmp_path):
  workdir, _ = smoke_run
  # Another model config on the same workdir: refused, naming the parameter; nothing written,
  # not even config.json or an event file.
  before = _snapshot(workdir)
  result = _run(_main_cmd(workdir, data_dir, "--config.model.conditioning.pose_hidden_dim=48",
                          "--config.training.num_train_steps=9"))
  assert result.returncode != 0
  assert "different model/optimizer config" in result.stderr
  assert "params/tokenizer/pose_encoder" in result.stderr
  assert "Traceback" not in result.stderr
  assert _snapshot(workdir) == before

  # A corrupt newest checkpoint: clear error naming it and the good one; both kept.
  copy = str(tmp_path / "copy")
  subprocess.run(["cp", "-r", workdir, copy], check=True)
  state_dir = os.path.join(copy, "checkpoints", "6", "state")
  for root, _, files in os.walk(state_dir):
    for name in files:
      if "manifest" in name or os.path.basename(root) == "d":
        path = os.path.join(root, name)
        with open(path, "wb") as f:
          f.write(b"\x13" * max(os.path.getsize(path), 16))
  result = _run(_main_cmd(copy, data_dir, "--config.training.num_train_steps=9"))
  assert result.returncode != 0
  assert "checkpoints/6 is corrupt" in result.stderr
  assert "Other checkpoints here: [3]" in result.stderr
  assert _steps(copy) == [3, 6]


def test_config_typo_and_missing_data_dir_fail_clearly(tmp_path):
  result = _run(_main_cmd(str(tmp_path / "w"), "/nonexistent", "--config.optimizer.lrr=1e-4"))
  assert result.returncode != 0
  # One line naming the key and the close match, not chained tracebacks.
  assert ("--config.optimizer.lrr: config.optimizer has no key 'lrr'; did you mean "
          "config.optimizer.lr?") in result.stderr
  assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3
  # Out-of-range values are refused at parse time with the valid range (more cases:
  # test_config_checks.py).
  result = _run(_main_cmd(str(tmp_path / "w"), "/nonexistent",
                          "--config.training.num_train_steps=-5"))
  assert result.returncode != 0
  assert ("config.training.num_train_steps=-5 is out of range: expected an integer >= 1."
          in result.stderr)
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "w")
  result = _run(_main_cmd(str(tmp_path / "w"), str(tmp_path / "no_such_dir")))
  assert result.returncode != 0
  assert f"config.data.data_dir='{tmp_path / 'no_such_dir'}' does not exist" in result.stderr


_RESUME = textwrap.dedent("""
    import os, sys
    from absl import logging
    import jax, numpy as np
    from configs import smoke
    from neural_assets.training import trainer
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    data_dir, out = sys.argv[1], sys.argv[2]

    def run(workdir, steps, on_step=None):
      config = smoke.get_config()
      config.data.data_dir = data_dir
      config.training.num_train_steps = steps
      config.training.image_summary_every_steps = 0
      config.checkpoint.every_steps = 100
      return trainer.train_and_evaluate(config, workdir, run_eval=False, on_step=on_step)

    straight = run(out + "/straight", 4)
    run(out + "/resumed", 2)
    resumed = run(out + "/resumed", 4)
    # A run the caller's on_step stops at step 3 (seeing every step) saves it and resumes there.
    seen = []
    stopped = run(out + "/stopped", 4, lambda step, scalars: seen.append(step) or step == 3)
    stopped_steps = sorted(int(d) for d in os.listdir(out + "/stopped/checkpoints")
                           if d.isdigit())
    restarted = run(out + "/stopped", 4)
    leaves = lambda s: [np.asarray(x) for x in jax.tree_util.tree_leaves((s.params, s.opt_state))]
    np.savez(out + "/result.npz", *leaves(straight), *leaves(resumed),
             steps=np.array([int(straight.step), int(resumed.step)]))
    np.savez(out + "/stopped.npz", *leaves(restarted), seen=np.array(seen),
             stopped_step=int(stopped.step), stopped_steps=np.array(stopped_steps))
""")


def test_resume_gives_the_same_run_as_training_straight(data_dir, tmp_path):
  result = subprocess.run([sys.executable, "-c", _RESUME, data_dir, str(tmp_path)], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-5000:]
  assert "Resumed from checkpoint step 2" in result.stderr
  out = np.load(tmp_path / "result.npz")
  assert list(out["steps"]) == [4, 4]
  arrays = [out[f"arr_{i}"] for i in range(len(out.files) - 1)]
  half = len(arrays) // 2
  changed = 0
  for a, b in zip(arrays[:half], arrays[half:]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    changed += a.dtype.kind == "f" and np.any(a != 0)
  assert changed > 100
  # Same data order: the saved iterator positions agree.
  data = [open(tmp_path / run / "checkpoints" / "4" / "data" / "process_0-of-1.json").read()
          for run in ("straight", "resumed")]
  assert data[0] == data[1]
  # Stopped by on_step at step 3: saved there, and the rerun ends where training straight does.
  stopped = np.load(tmp_path / "stopped.npz")
  assert list(stopped["seen"]) == [1, 2, 3] and int(stopped["stopped_step"]) == 3
  assert list(stopped["stopped_steps"]) == [3]
  restarted = [stopped[f"arr_{i}"] for i in range(half)]
  for a, b in zip(arrays[:half], restarted):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sigterm_or_time_budget_saves_a_checkpoint_and_stops(data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  log_path = tmp_path / "log.txt"
  with open(log_path, "w") as log:
    proc = subprocess.Popen(
        _main_cmd(workdir, data_dir, "--mode=train", "--config.training.num_train_steps=100000",
                  "--config.training.image_summary_every_steps=0",
                  "--config.checkpoint.every_steps=100000"),
        cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
      deadline = time.time() + 240
      while "steps_per_sec" not in log_path.read_text():
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.time() < deadline
        time.sleep(0.5)
      proc.send_signal(signal.SIGTERM)
      assert proc.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    finally:
      if proc.poll() is None:
        proc.kill()
  text = log_path.read_text()
  assert "Stopping at step" in text
  (stopped,) = _steps(workdir)
  assert 2 <= stopped < 100000
  # The same command resumes; a wall-clock budget shorter than one step stops it after one step.
  result = _run(_main_cmd(workdir, data_dir, "--mode=train",
                          "--config.training.num_train_steps=100000",
                          "--config.training.max_train_seconds=0.001",
                          "--config.checkpoint.every_steps=100000"))
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from checkpoint step {stopped}" in result.stderr
  assert f"Stopping at step {stopped + 1}" in result.stderr
  assert _steps(workdir) == [stopped, stopped + 1]


_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from configs import smoke
    from data_pipelines import pipeline
    from neural_assets.training import mesh as mesh_lib, sharding as sharding_lib
    from neural_assets.training import train_step as train_step_lib
    from neural_assets.training.state_setup import setup_state
    config = smoke.get_config()
    config.data.data_dir = sys.argv[1]
    model, vae = train_step_lib.build_models(config)
    it = pipeline.make_train_iterator(config)
    batches = [next(it) for _ in range(2)]
    results = {}
    for name, mesh in (("one", mesh_lib.create_mesh({"data": 1}, jax.devices()[:1])),
                       ("eight", mesh_lib.create_mesh({"data": 2, "fsdp": 4}))):
      setup = setup_state(config, model, vae, mesh)
      step = train_step_lib.make_train_step(
          config, model, vae, setup.tx, setup.schedules, setup.state_shardings,
          sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh))
      state = setup.init_fn(jax.random.key(0))
      losses = []
      for batch in batches:
        state, metrics = step(state, sharding_lib.shard_batch(batch, mesh))
        losses.append(float(metrics["loss"]))
      kernel = state.params["unet"]["conv_in"]["kernel"]
      results[name] = (losses, [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)],
                       str(kernel.sharding.spec))
    np.savez(sys.argv[2], *results["one"][1], *results["eight"][1],
             losses=np.array([results["one"][0], results["eight"][0]]))
    print("SPECS" + json.dumps([results["one"][2], results["eight"][2]]))
""")


def test_one_device_and_eight_devices_take_the_same_steps(data_dir, tmp_path):
  out = tmp_path / "params.npz"
  result = subprocess.run([sys.executable, "-c", _DEVICES, data_dir, str(out)], cwd=ROOT,
                          env=_env(num_devices=8), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-5000:]
  specs = json.loads(result.stdout.split("SPECS")[1].splitlines()[0])
  # On 8 devices the UNet's first conv kernel [3, 3, 4, 32] is split over fsdp, on 1 it is whole.
  assert specs == ["P()", "P(None, None, None, ('fsdp_0', 'fsdp_1'))"]
  out = np.load(out)
  losses = out["losses"]
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
  arrays = [out[f"arr_{i}"] for i in range(len(out.files) - 1)]
  half = len(arrays) // 2
  # atol: a few biases feed a GroupNorm that cancels them, so their true gradient is 0 and Adam
  # normalises float round-off noise into ~1e-6 steps (2% of one step's lr 5e-4); all other
  # parameters agree to ~1e-7.
  for a, b in zip(arrays[:half], arrays[half:]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_and_checkpoint(data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  port = _free_port()
  procs, logs = [], []
  for i in range(2):
    logs.append(open(tmp_path / f"log{i}.txt", "w"))
    procs.append(subprocess.Popen(
        _main_cmd(workdir, data_dir, "--mode=train_and_eval",
                  f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}", "--num_cpu_devices=4",
                  "--cpu_collectives=gloo", "--config.mesh.data=2", "--config.mesh.fsdp=4",
                  "--config.training.num_train_steps=2",
                  "--config.training.image_summary_every_steps=0",
                  "--config.eval.every_steps=2", "--config.data.eval_global_batch_size=8"),
        cwd=ROOT, env=_env(), stdout=logs[-1], stderr=subprocess.STDOUT))
  try:
    codes = [p.wait(timeout=300) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
    for f in logs:
      f.close()
  texts = [open(tmp_path / f"log{i}.txt").read() for i in range(2)]
  assert codes == [0, 0], texts[0][-3000:] + texts[1][-3000:]
  assert "JAX process 1 / 2" in texts[1]
  assert "over 8 devices (2 processes)" in texts[0]
  assert _steps(workdir) == [2]
  data = sorted(os.listdir(os.path.join(workdir, "checkpoints", "2", "data")))
  assert "process_0-of-2.json" in data and "process_1-of-2.json" in data
  # Only process 0 writes summaries.
  assert "train/loss" in texts[0]
  # The final evaluation: each process scored only its half of the eval batch and the reduced
  # metrics are the same on both (the reduction's exactness: tests/test_evaluator_multihost.py).
  metric = lambda text, key: float(text.split(f"eval/{key}=")[-1].split(",")[0].split()[0])
  for key in ("image/count", "object/count", "image/psnr", "image/ssim", "object/psnr"):
    assert metric(texts[0], key) == metric(texts[1], key), key
  # The whole eval split (4 videos, one pair each) over both hosts, not one host's 2.
  assert metric(texts[0], "image/count") == 4
  # A checkpoint written by 2 processes evaluates in 1 (the data-iterator state is not needed).
  # Same examples; the scores differ slightly: the sampling noise follows an example's place in
  # the global batch, which depends on how the hosts' shards interleave.
  single = _run(_main_cmd(workdir, data_dir, "--mode=eval", "--config.mesh.data=2",
                          "--config.mesh.fsdp=4", "--config.data.eval_global_batch_size=8"),
                num_devices=8)
  assert single.returncode == 0, single.stderr[-3000:]
  assert metric(single.stderr, "image/count") == 4


_NONFINITE = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from configs import smoke
    from data_pipelines import pipeline
    from neural_assets.training import mesh as mesh_lib, sharding as sharding_lib
    from neural_assets.training import train_step as train_step_lib
    from neural_assets.training.state_setup import setup_state
    config = smoke.get_config()
    config.data.data_dir = sys.argv[1]
    config.training.compute_dtype = "bfloat16"
    model, vae = train_step_lib.build_models(config)
    mesh = mesh_lib.create_mesh({"data": 1})
    setup = setup_state(config, model, vae, mesh)
    step = train_step_lib.make_train_step(
        config, model, vae, setup.tx, setup.schedules, setup.state_shardings,
        sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh))
    state = setup.init_fn(jax.random.key(0))
    batch = next(pipeline.make_train_iterator(config))
    leaves = lambda s: [np.asarray(x) for x in jax.tree_util.tree_leaves((s.params, s.opt_state))]
    out = {"dtypes": sorted({str(x.dtype) for x in jax.tree_util.tree_leaves(state.params)}),
           "unet_dtype": str(model.config.unet.dtype)}
    for name in ("ok1", "ok2", "nan", "nan_moment"):
      b = dict(batch)
      if name == "nan":
        b["target_corners"] = np.full_like(b["target_corners"], np.nan)
      if name == "nan_moment":
        # A corrupt Adam moment: loss and gradient stay finite, the update does not.
        flat, tree = jax.tree_util.tree_flatten(state.opt_state)
        i = next(i for i, x in enumerate(flat) if x.dtype == jnp.float32 and x.ndim == 4)
        flat[i] = jax.device_put(flat[i].at[0, 0, 0, 0].set(jnp.nan), flat[i].sharding)
        state = state.replace(opt_state=jax.tree_util.tree_unflatten(tree, flat))
      before = leaves(state)
      state, metrics = step(state, sharding_lib.shard_batch(b, mesh))
      after = leaves(state)
      out[name] = dict(loss=float(metrics["loss"]), nonfinite=float(metrics["nonfinite"]),
                       count=int(state.nonfinite_steps), step=int(state.step),
                       changed=int(sum(not np.array_equal(a, b, equal_nan=True)
                                       for a, b in zip(before, after))))
    print("RESULT" + json.dumps(out))
""")


def test_bfloat16_compute_and_nonfinite_steps_are_skipped(data_dir):
  result = subprocess.run([sys.executable, "-c", _NONFINITE, data_dir], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-5000:]
  out = json.loads(result.stdout.split("RESULT")[1].splitlines()[0])
  assert out["dtypes"] == ["float32"]  # Master weights stay float32 ...
  assert "bfloat16" in out["unet_dtype"]  # ... while the UNet computes in bf16.
  # Step 0 has lr 0 (warmup) but Adam's moments change; step 1 moves the parameters.
  assert np.isfinite(out["ok1"]["loss"]) and out["ok1"]["nonfinite"] == 0
  assert out["ok2"]["changed"] > 100
  # A NaN pose poisons the loss: the update is skipped and counted, the step still advances.
  nan = out["nan"]
  assert not np.isfinite(nan["loss"])
  assert nan["nonfinite"] == 1 and nan["count"] == 1 and nan["step"] == 3
  assert nan["changed"] == 0
  # NaN/Inf produced by the update itself (finite loss and gradient): skipped and counted too.
  moment = out["nan_moment"]
  assert np.isfinite(moment["loss"])
  assert moment["nonfinite"] == 1 and moment["count"] == 2 and moment["step"] == 4
  assert moment["changed"] == 0


_PRETRAINED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np, orbax.checkpoint as ocp
    from configs import smoke
    from neural_assets.convert.checkpoint_io import CheckpointMismatchError
    from neural_assets.training import mesh as mesh_lib, train_step as train_step_lib
    from neural_assets.training.init_checkpoint import InitCheckpointError, load_pretrained
    from neural_assets.training.state_setup import setup_state
    config = smoke.get_config()
    model, vae = train_step_lib.build_models(config)
    mesh = mesh_lib.create_mesh({"data": 1})
    setup = setup_state(config, model, vae, mesh)
    # What `python -m neural_assets.convert` writes, with weights that differ from seed 42's.
    other = setup.init_fn(jax.random.key(123))
    tree = {"unet": other.params["unet"],
            "tokenizer": {"encoder": other.params["tokenizer"]["encoder"]},
            "vae": other.frozen_params["vae"]}
    path = sys.argv[1] + "/init"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, tree)
    checkpointer.wait_until_finished()
    config.training.init_checkpoint = path
    config.optimizer.ema_decay = 0.0
    state = load_pretrained(setup.init_fn(jax.random.key(42)), path, setup, False)
    random = setup.init_fn(jax.random.key(42))
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(
        jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    out = dict(
        unet=same(state.params["unet"], tree["unet"]),
        encoder=same(state.params["tokenizer"]["encoder"], tree["tokenizer"]["encoder"]),
        vae=same(state.frozen_params["vae"], tree["vae"]),
        new_layers_from_seed=same(state.params["tokenizer"]["pose_encoder"],
                                  random.params["tokenizer"]["pose_encoder"]),
        differs_from_seed=not same(state.params["unet"], random.params["unet"]))
    # A training checkpoint (what a workdir holds) as init_checkpoint: its trained params
    # (all of them, new layers included) and VAE are loaded, its step and optimizer state not.
    from neural_assets.training import checkpointing
    trained = setup.init_fn(jax.random.key(7)).replace(step=jax.numpy.int32(5))
    ckpt = checkpointing.Checkpointer(sys.argv[1] + "/run/checkpoints", 2, async_save=False)
    ckpt.save(5, trained, {"pos": 0})
    ckpt.close()
    for where in ("/run", "/run/checkpoints/5"):
      loaded = load_pretrained(setup.init_fn(jax.random.key(42)), sys.argv[1] + where,
                                       setup, False)
      out["training" + where] = dict(
          params=same(loaded.params, trained.params),
          vae=same(loaded.frozen_params["vae"], trained.frozen_params["vae"]),
          step=int(loaded.step))
    try:
      load_pretrained(state, sys.argv[1] + "/run/checkpoints/5/data", setup, False)
    except InitCheckpointError as e:
      out["not_a_checkpoint"] = str(e)
    config.model.unet.cross_attention_dim = 16
    config.model.conditioning.context_dim = 16
    config.model.conditioning.token_dim = 8
    model, vae = train_step_lib.build_models(config)
    setup = setup_state(config, model, vae, mesh)
    try:
      load_pretrained(state, path, setup, False)
    except CheckpointMismatchError as e:
      out["error"] = str(e)
    print("RESULT" + json.dumps(out))
""")


def test_initialises_from_a_converted_checkpoint(tmp_path):
  result = subprocess.run([sys.executable, "-c", _PRETRAINED, str(tmp_path)], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-5000:]
  out = json.loads(result.stdout.split("RESULT")[1].splitlines()[0])
  assert out["unet"] and out["encoder"] and out["vae"] and out["differs_from_seed"]
  assert out["new_layers_from_seed"]
  # A UNet with another cross-attention width: refused, naming a parameter and both shapes.
  assert "does not match the model config" in out["error"]
  assert "attn2" in out["error"] and "(32, " in out["error"] and "(16, " in out["error"]
  # A training workdir or one of its step dirs: its weights are loaded, the run starts at 0.
  for where in ("/run", "/run/checkpoints/5"):
    assert out["training" + where] == {"params": True, "vae": True, "step": 0}, where
  assert "is not a checkpoint" in out["not_a_checkpoint"]
  assert "expected a converted initial checkpoint" in out["not_a_checkpoint"]


def test_missing_init_checkpoint_fails_before_the_model_is_built(data_dir, tmp_path):
  result = _run(_main_cmd(str(tmp_path / "w"), data_dir,
                          f"--config.training.init_checkpoint={tmp_path}/no_such_ckpt"))
  assert result.returncode != 0
  assert (f"config.training.init_checkpoint='{tmp_path}/no_such_ckpt' does not exist; expected a "
          "converted initial checkpoint") in result.stderr
  assert "Mesh" not in result.stderr and "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "w")
