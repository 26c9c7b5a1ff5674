"""Unit tests of the training helpers (mesh, sharding rules, optimizer groups, checkpoints).

A small hand-built parameter tree stands in for the model here; `test_training.py` runs the real
model through the same helpers.
"""
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from neural_assets.training import checkpointing
from neural_assets.training import mesh as mesh_lib
from neural_assets.training import optimizer as optimizer_lib
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import train_state as train_state_lib


def _params():
  return {
      "unet": {"conv": {"kernel": jnp.ones((3, 3, 4, 32)), "bias": jnp.zeros((32,))}},
      "tokenizer": {"encoder": {"w": jnp.ones((16, 8))},
                    "proj": {"kernel": jnp.full((8, 12), 0.5), "bias": jnp.zeros((12,))}},
  }


def test_mesh_sizes_and_errors():
  assert mesh_lib.resolve_axis_sizes({"data": -1, "fsdp": 4}, 8) == {
      "data": 2, "fsdp": 4, "tensor": 1}
  assert mesh_lib.resolve_axis_sizes({"data": 2, "fsdp": 2, "tensor": 2}, 8)["tensor"] == 2
  with pytest.raises(mesh_lib.MeshError, match=r"needs 6 devices but 8"):
    mesh_lib.resolve_axis_sizes({"data": 3, "fsdp": 2}, 8)
  with pytest.raises(mesh_lib.MeshError, match=r"multiply to 3.*8 available"):
    mesh_lib.resolve_axis_sizes({"data": -1, "fsdp": 3}, 8)
  with pytest.raises(mesh_lib.MeshError, match="At most one"):
    mesh_lib.resolve_axis_sizes({"data": -1, "fsdp": -1}, 8)
  with pytest.raises(mesh_lib.MeshError, match="Unknown mesh axes"):
    mesh_lib.resolve_axis_sizes({"model": 2}, 8)
  mesh = mesh_lib.create_mesh({"data": -1, "fsdp": 1})
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert mesh.devices.size == len(jax.devices())


def test_partition_spec_default_and_rules():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), mesh_lib.AXES)
  # fsdp = 1: everything replicated.
  assert sharding_lib.partition_spec("a/kernel", (8, 16), mesh) == jax.sharding.PartitionSpec()
  # Use an abstract mesh of 8 devices for the shape logic.
  amesh = jax.sharding.AbstractMesh((2, 4, 1), mesh_lib.AXES)
  P = jax.sharding.PartitionSpec
  assert sharding_lib.partition_spec("x/kernel", (3, 3, 64, 128), amesh) == P(
      None, None, None, "fsdp")
  assert sharding_lib.partition_spec("x/kernel", (128, 64), amesh) == P("fsdp", None)
  # Ties go to the last dimension; indivisible dims are skipped.
  assert sharding_lib.partition_spec("x", (64, 64), amesh) == P(None, "fsdp")
  assert sharding_lib.partition_spec("x", (6, 20), amesh) == P(None, "fsdp")
  assert sharding_lib.partition_spec("x", (3, 5), amesh) == P()
  assert sharding_lib.partition_spec("x/bias", (64,), amesh, min_size_to_shard=100) == P()
  rules = ((r"proj/kernel$", ("fsdp", None)), (r"emb", (None, ("data", "fsdp"))))
  assert sharding_lib.partition_spec("tok/proj/kernel", (8, 3), amesh, rules) == P("fsdp", None)
  assert sharding_lib.partition_spec("emb", (3, 16), amesh, rules) == P(None, ("data", "fsdp"))
  with pytest.raises(sharding_lib.ShardingError, match=r"dimension 6 is not divisible.*size 4"):
    sharding_lib.partition_spec("a/proj/kernel", (6, 4), amesh, rules)
  # Optimizer moments follow their parameters (the path is contained in theirs).
  state = optax.adam(1e-3).init({"w": jnp.ones((8, 16))})
  specs = sharding_lib.tree_partition_specs(state, amesh)
  leaves = jax.tree_util.tree_leaves(specs, is_leaf=lambda x: isinstance(x, P))
  assert leaves == [P(), P(None, "fsdp"), P(None, "fsdp")]


def test_per_device_bytes_from_shapes():
  amesh = jax.sharding.AbstractMesh((1, 4, 1), mesh_lib.AXES)
  tree = {"w": jax.ShapeDtypeStruct((8, 16), jnp.float32),
          "b": jax.ShapeDtypeStruct((3,), jnp.float32)}
  shardings = sharding_lib.tree_shardings(tree, amesh)
  # w split 4 ways along 16 -> 8*4 floats; b replicated -> 3 floats.
  assert sharding_lib.per_device_bytes(tree, shardings) == (8 * 4 + 3) * 4


def _opt_config(**overrides):
  config = common.optimizer_config()
  config.update(dict(warmup_steps=10, decay="cosine", weight_decay=0.0, clip_grad_norm=0.0))
  config.update(overrides)
  return config


def test_optimizer_groups_learning_rates_and_freezing():
  params = _params()
  config = _opt_config(frozen_prefixes=("tokenizer/encoder",))
  labels = optimizer_lib.param_labels(params, config.pretrained_prefixes, config.frozen_prefixes)
  assert labels["unet"]["conv"]["kernel"] == "pretrained"
  assert labels["tokenizer"]["encoder"]["w"] == "frozen"
  assert labels["tokenizer"]["proj"]["kernel"] == "new"
  # Whole path components only.
  assert optimizer_lib.param_labels({"unet2": {"w": 1.0}}, ("unet",), ())["unet2"]["w"] == "new"
  tx, schedules = optimizer_lib.make_optimizer(config, params, num_train_steps=100)
  assert float(schedules["pretrained"](5)) == pytest.approx(2.5e-5)
  assert float(schedules["new"](10)) == pytest.approx(1e-3)
  assert float(schedules["new"](100)) == pytest.approx(0.0, abs=1e-9)
  opt_state = tx.init(params)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  # Run to step 10 (end of warmup) so the lr is the peak; Adam's first step moves by ~lr.
  for _ in range(11):
    updates, opt_state = tx.update(grads, opt_state, params)
  assert float(jnp.abs(updates["unet"]["conv"]["kernel"]).max()) == pytest.approx(5e-5, rel=1e-3)
  assert float(jnp.abs(updates["tokenizer"]["proj"]["kernel"]).max()) == pytest.approx(
      1e-3, rel=1e-3)
  assert float(jnp.abs(updates["tokenizer"]["encoder"]["w"]).max()) == 0.0
  sizes = optimizer_lib.group_sizes(params, config)
  assert sizes == {"pretrained": 3 * 3 * 4 * 32 + 32, "new": 8 * 12 + 12, "frozen": 16 * 8}


def test_clipping_ignores_frozen_gradients():
  params = {"a": jnp.zeros((2,)), "b": jnp.zeros((2,))}
  config = _opt_config(pretrained_prefixes=("a",), frozen_prefixes=("b",), clip_grad_norm=1.0,
                       warmup_steps=0, decay="constant", eps=1e-3)
  tx, _ = optimizer_lib.make_optimizer(config, params, 10)
  state = tx.init(params)
  grads = {"a": jnp.array([0.3, 0.4]), "b": jnp.array([1e6, 1e6])}
  # Only 'a' counts towards the norm (0.5 < 1: unclipped). Had 'b' counted, 'a' would be scaled
  # by ~1e-6 and, with eps = 1e-3, Adam's step would shrink by orders of magnitude.
  updates, _ = tx.update(grads, state, params)
  ref_tx = optax.adamw(5e-5, eps=1e-3, weight_decay=0.0)
  ref_updates, _ = ref_tx.update({"a": grads["a"]}, ref_tx.init({"a": params["a"]}),
                                 {"a": params["a"]})
  np.testing.assert_allclose(updates["a"], ref_updates["a"], rtol=1e-6)
  assert float(jnp.abs(updates["b"]).max()) == 0.0


def test_warmup_stable_decay_schedule():
  # Warm-up 10, peak held 50 steps, then linear to 10% over the rest of 100: a WSD schedule.
  config = _opt_config(lr=1e-3, new_layers_lr=2e-3, decay="linear", hold_steps=50,
                       end_lr_factor=0.1)
  schedules = optimizer_lib.make_schedules(config, 100)
  steps = np.arange(0, 120)
  expected = np.interp(steps, [0, 10, 60, 100], [0.0, 1.0, 1.0, 0.1])  # x peak; held after.
  for group, peak in (("pretrained", 1e-3), ("new", 2e-3)):
    np.testing.assert_allclose([float(schedules[group](s)) for s in steps], peak * expected,
                               rtol=1e-5, atol=1e-12)
  # No warm-up: held from step 0. hold_steps 0 is the plain warm-up + decay.
  no_warmup = optimizer_lib.lr_schedule(1.0, 0, "linear", 10, 0.0, hold_steps=5)
  np.testing.assert_allclose([float(no_warmup(s)) for s in (0, 4, 5, 10, 15)],
                             [1.0, 1.0, 1.0, 0.5, 0.0], atol=1e-6)
  plain = optimizer_lib.lr_schedule(1.0, 10, "linear", 10, 0.0)
  np.testing.assert_allclose([float(plain(s)) for s in (5, 10, 15, 20)],
                             [0.5, 1.0, 0.5, 0.0], atol=1e-6)
  with pytest.raises(ValueError, match="hold_steps=-1 must be >= 0"):
    optimizer_lib.lr_schedule(1.0, 10, "linear", 10, 0.0, hold_steps=-1)


def test_bad_decay_name():
  with pytest.raises(ValueError, match="Unknown learning-rate decay 'cosin'"):
    optimizer_lib.lr_schedule(1e-3, 10, "cosin", 100, 0.0)


def test_ema_warm_up_schedule_and_update():
  warm = optimizer_lib.ema_decay_schedule(0.9999, 10.0)
  np.testing.assert_allclose([float(warm(t)) for t in (0, 1, 90, 10**6)],
                             [0.1, 2 / 11, 0.91, 0.9999], rtol=1e-6)
  assert float(optimizer_lib.ema_decay_schedule(0.9999, 0.0)(0)) == np.float32(0.9999)
  with pytest.raises(ValueError, match=r"ema_warmup=-1.0 must be >= 0"):
    optimizer_lib.ema_decay_schedule(0.9, -1.0)
  # From the initialisation towards fixed weights p, the EMA still holds prod(decays) of the
  # initialisation: 37% after 10k updates of a constant 0.9999; with the warm-up
  # prod (1 + t) / (10 + t) = 9! k! / (k + 9)! (3.6e-31 at k = 10k, the cap is reached at ~90k).
  init, p = {"w": np.zeros(3)}, {"w": np.ones(3)}
  k = 10_000
  warm_left = math.exp(math.lgamma(10) + math.lgamma(k + 1) - math.lgamma(k + 10))
  for warmup, left in ((0.0, 0.9999 ** k), (10.0, warm_left)):
    decays = np.asarray(jax.vmap(optimizer_lib.ema_decay_schedule(0.9999, warmup))(
        jnp.arange(k)), np.float64)
    ema = init
    for decay in decays:
      ema = train_state_lib.update_ema(ema, p, decay)
    np.testing.assert_allclose(1.0 - ema["w"], left, rtol=1e-3, atol=1e-12)
  assert 0.36 < 0.9999 ** k < 0.37


def test_eval_weights_say_which_weights():
  with_ema = _state(_params(), ema=True)
  with_ema = with_ema.replace(ema_params=jax.tree_util.tree_map(lambda x: x + 1,
                                                                with_ema.params))
  params, which = train_state_lib.eval_weights(with_ema, use_ema=True)
  assert which == "ema" and params is with_ema.ema_params
  assert train_state_lib.eval_weights(with_ema, use_ema=False) == (with_ema.params, "raw")
  without = _state(_params())
  assert train_state_lib.eval_weights(without, use_ema=True) == (without.params, "raw")


def _state(params, seed=0, ema=False):
  config = _opt_config()
  tx, _ = optimizer_lib.make_optimizer(config, params, 100)
  return train_state_lib.create(params, {"vae": {"w": jnp.arange(4.0)}}, tx,
                                jax.random.key(seed), ema)


def _abstract(state, mesh):
  shardings = sharding_lib.tree_shardings(state, mesh)
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def test_checkpoint_roundtrip_and_data_state(tmp_path):
  mesh = mesh_lib.create_mesh({"data": -1})
  state = _state(_params(), ema=True).replace(step=jnp.int32(7))
  ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=2, async_save=True)
  ckpt.save(7, state, b"\x00grain-state\xff")
  ckpt.save(9, state.replace(step=jnp.int32(9)), {"pos": 3})
  ckpt.save(11, state.replace(step=jnp.int32(11)), {"pos": 4})
  ckpt.wait()
  assert ckpt.all_steps() == [9, 11]  # keep-N
  restored, data_state = ckpt.restore(11, _abstract(state, mesh))
  assert data_state == {"pos": 4}
  assert int(restored.step) == 11
  expected = state.replace(step=jnp.int32(11))
  for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ckpt.close()
  ckpt = checkpointing.Checkpointer(str(tmp_path / "b"), max_to_keep=2, async_save=False)
  ckpt.save(1, state, b"\x00grain-state\xff")
  assert ckpt.restore(1, _abstract(state, mesh))[1] == b"\x00grain-state\xff"
  ckpt.close()


def test_mismatched_checkpoint_is_refused_and_kept(tmp_path):
  mesh = mesh_lib.create_mesh({"data": -1})
  state = _state(_params())
  ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=2, async_save=False)
  ckpt.save(3, state, {"pos": 1})
  other = _params()
  other["tokenizer"]["proj"]["kernel"] = jnp.ones((8, 24))
  other_state = _state(other)
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"(?s)different model.*\n  params/tokenizer/proj/kernel has shape \(8, 12\) in the "
                           r"checkpoint but \(8, 24\) in this run"):
    ckpt.restore(3, _abstract(other_state, mesh))
  assert ckpt.all_steps() == [3]
  restored, _ = ckpt.restore(3, _abstract(state, mesh))
  np.testing.assert_array_equal(restored.params["tokenizer"]["proj"]["kernel"],
                                state.params["tokenizer"]["proj"]["kernel"])
  ckpt.close()


def _corrupt(step_dir):
  # Overwrite every data file of the 'state' item with garbage of the same size.
  hit = 0
  for root, _, files in os.walk(step_dir / "state"):
    for name in files:
      path = os.path.join(root, name)
      if "manifest" in name or root.endswith("/d"):
        size = os.path.getsize(path)
        with open(path, "wb") as f:
          f.write(b"\x13" * max(size, 16))
        hit += 1
  assert hit


def test_corrupt_checkpoint_fails_clearly_and_keeps_the_good_one(tmp_path):
  mesh = mesh_lib.create_mesh({"data": -1})
  state = _state(_params())
  ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=3, async_save=False)
  ckpt.save(1, state, {"pos": 1})
  ckpt.save(2, state.replace(step=jnp.int32(2)), {"pos": 2})
  _corrupt(tmp_path / "2")
  with pytest.raises(checkpointing.CheckpointError, match=r"2 is corrupt.*Other checkpoints "
                                                          r"here: \[1\]"):
    ckpt.restore(2, _abstract(state, mesh))
  assert ckpt.all_steps() == [1, 2]
  restored, data_state = ckpt.restore(1, _abstract(state, mesh))
  assert data_state == {"pos": 1}
  ckpt.close()


def test_sigterm_sets_the_stop_flag():
  watcher = checkpointing.PreemptionWatcher().install()
  try:
    assert not watcher.should_stop()
    os.kill(os.getpid(), 15)
    assert watcher.should_stop()
  finally:
    watcher.uninstall()


_SHARDED_UPDATE = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from tests.test_training_parts import _params, _opt_config
    from neural_assets.training import mesh as mesh_lib, optimizer as optimizer_lib
    from neural_assets.training import sharding as sharding_lib
    mesh = mesh_lib.create_mesh({"data": 2, "fsdp": 4})
    params = _params()
    tx, _ = optimizer_lib.make_optimizer(_opt_config(clip_grad_norm=0.1), params, 100)
    shardings = sharding_lib.tree_shardings(params, mesh)
    assert shardings["unet"]["conv"]["kernel"].spec == jax.sharding.PartitionSpec(
        None, None, None, ("fsdp_0", "fsdp_1")), shardings
    params = jax.device_put(params, shardings)
    @jax.jit
    def step(params, opt_state):
      grads = jax.tree_util.tree_map(lambda p: jnp.cos(p) + 0.1, params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return jax.tree_util.tree_map(jnp.add, params, updates), opt_state
    opt_state = tx.init(params)
    for _ in range(12):
      params, opt_state = step(params, opt_state)
    np.savez(sys.argv[1], *[np.asarray(x) for x in jax.tree_util.tree_leaves(params)])
""")


def test_sharded_update_matches_single_device(tmp_path):
  params = _params()
  tx, _ = optimizer_lib.make_optimizer(_opt_config(clip_grad_norm=0.1), params, 100)
  opt_state = tx.init(params)
  for _ in range(12):
    grads = jax.tree_util.tree_map(lambda p: jnp.cos(p) + 0.1, params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree_util.tree_map(jnp.add, params, updates)
  out = tmp_path / "p.npz"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, "-c", _SHARDED_UPDATE, str(out)], check=True, cwd=root,
                 env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120)
  sharded = np.load(out)
  for i, leaf in enumerate(jax.tree_util.tree_leaves(params)):
    np.testing.assert_allclose(sharded[f"arr_{i}"], np.asarray(leaf), rtol=1e-6, atol=1e-7)


def _tree_snapshot(root):
  """{relative path: file bytes or 'dir'} of everything under `root` (to prove nothing changed)."""
  out = {}
  for path, dirs, files in os.walk(root):
    for name in dirs:
      out[os.path.relpath(os.path.join(path, name), root)] = "dir"
    for name in files:
      with open(os.path.join(path, name), "rb") as f:
        out[os.path.relpath(os.path.join(path, name), root)] = f.read()
  return out


def _big_state():
  # An array of varied values (compresses poorly, so a flipped byte lands in raw float data).
  params = _params()
  params["unet"]["big"] = {"kernel": jnp.linspace(-1.0, 1.0, 6000).reshape(60, 100)}
  return _state(params)


def test_flipped_byte_in_a_checkpoint_is_refused_naming_the_array(tmp_path):
  mesh = mesh_lib.create_mesh({"data": -1})
  state = _big_state()
  ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=3, async_save=False)
  ckpt.save(1, state, {"pos": 1})
  ckpt.save(2, state.replace(step=jnp.int32(2)), {"pos": 2})
  ckpt.close()
  files = [os.path.join(root, name) for root, _, names in os.walk(tmp_path / "2" / "state")
           for name in names]
  biggest = max(files, key=os.path.getsize)
  data = bytearray(open(biggest, "rb").read())
  data[len(data) // 2] ^= 0x01  # One low bit: the value stays finite and plausible.
  open(biggest, "wb").write(bytes(data))
  ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=3, async_save=False)
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"2 is corrupt: the data of \['params/unet/big/kernel'\].*checksum.*"
                           r"Other checkpoints here: \[1\]"):
    ckpt.restore(2, _abstract(state, mesh))
  restored, _ = ckpt.restore(1, _abstract(state, mesh))  # The older one is intact.
  np.testing.assert_array_equal(restored.params["unet"]["big"]["kernel"],
                                state.params["unet"]["big"]["kernel"])
  ckpt.close()


def test_state_with_nonfinite_values_is_never_saved(tmp_path):
  state = _state(_params())
  ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=3, async_save=True)
  assert ckpt.save(1, state, {"pos": 1})
  params = jax.tree_util.tree_map(lambda x: x, state.params)
  params["tokenizer"]["proj"]["bias"] = params["tokenizer"]["proj"]["bias"].at[3].set(jnp.inf)
  assert not ckpt.save(2, state.replace(step=jnp.int32(2), params=params), {"pos": 2})
  nan_opt = jax.tree_util.tree_map(lambda x: x * jnp.nan if jnp.issubdtype(x.dtype, jnp.floating)
                                   else x, state.opt_state)
  assert not ckpt.save(3, state.replace(step=jnp.int32(3), opt_state=nan_opt), {"pos": 3})
  ckpt.wait()
  assert ckpt.all_steps() == [1]
  ckpt.close()


def test_refused_restore_leaves_the_directory_exactly_as_it_was(tmp_path):
  mesh = mesh_lib.create_mesh({"data": -1})
  state = _state(_params())
  ckpt = checkpointing.Checkpointer(str(tmp_path / "ck"), max_to_keep=2, async_save=False)
  ckpt.save(3, state, {"pos": 1})
  ckpt.close()
  # What a run killed mid-save leaves behind.
  os.makedirs(tmp_path / "ck" / "4.orbax-checkpoint-tmp-1234" / "state")
  before = _tree_snapshot(tmp_path)
  other = _params()
  other["tokenizer"]["proj"]["kernel"] = jnp.ones((8, 24))
  ckpt = checkpointing.Checkpointer(str(tmp_path / "ck"), max_to_keep=2, async_save=True)
  assert ckpt.latest_step() == 3
  with pytest.raises(checkpointing.CheckpointError, match="different model"):
    ckpt.restore(3, _abstract(_state(other), mesh))
  ckpt.close()
  assert _tree_snapshot(tmp_path) == before
  # A directory that does not exist is not created until the first save.
  fresh = checkpointing.Checkpointer(str(tmp_path / "new" / "ck"), max_to_keep=2)
  assert fresh.latest_step() is None and fresh.all_steps() == []
  fresh.close()
  assert not os.path.exists(tmp_path / "new")
  fresh = checkpointing.Checkpointer(str(tmp_path / "new" / "ck"), max_to_keep=2)
  fresh.save(1, state, {"pos": 1})
  fresh.close()
  assert fresh.all_steps() == [1]


_DISK_FULL = textwrap.dedent("""
    import os, sys
    import jax, jax.numpy as jnp
    from neural_assets.training import checkpointing
    directory = sys.argv[1]
    ckpt = checkpointing.Checkpointer(directory, max_to_keep=5, async_save=True)
    w = jax.random.normal(jax.random.key(0), (300_000,))  # 1.2 MB, incompressible.
    try:
      for step in range(1, 6):
        ckpt.save(step, {"params": {"w": w + step}, "step": jnp.int32(step)}, {"pos": step})
      ckpt.close()
    except checkpointing.CheckpointSaveError as e:
      print("REFUSED", e, file=sys.stderr)
    print("STEPS", sorted(s for s in os.listdir(directory) if s.isdigit()))
""")


def test_disk_full_while_saving_is_reported_once_and_keeps_the_good_checkpoints(tmp_path):
  mount = tmp_path / "small_disk"
  mount.mkdir()
  # A 3 MB tmpfs holds two checkpoints, not three. Needs root (CI containers are); else skip.
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                    capture_output=True).returncode != 0:
    pytest.skip("cannot mount a small tmpfs here (needs root)")
  try:
    result = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(mount / "ck")], capture_output=True, text=True,
        timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu",
                          "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
    listing = sorted(os.listdir(mount / "ck"))
  finally:
    subprocess.run(["umount", str(mount)], check=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "STEPS ['1', '2']" in result.stdout
  refused = [line for line in result.stderr.splitlines() if line.startswith("REFUSED")]
  assert len(refused) == 1, result.stderr[-3000:]
  assert f"No space left on device while writing checkpoint 3 to {mount}/ck/3." in refused[0]
  assert "Complete checkpoints kept: [1, 2]" in refused[0]
  # orbax's per-thread error logs (one traceback each) are not repeated.
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert "RESOURCE_EXHAUSTED" not in result.stderr.replace(refused[0], "")
  assert listing[:2] == ["1", "2"]


def test_partial_reads_are_checked_against_the_saved_checksums(tmp_path):
  state = _big_state()
  ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=1, async_save=False)
  ckpt.save(4, state, {"pos": 1})
  ckpt.close()
  # What inference / init from a training checkpoint read: the parameters only.
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  item = {"params": jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state.params)}
  restored = ocp.PyTreeCheckpointer().restore(
      str(tmp_path / "4" / "state"), args=ocp.args.PyTreeRestore(
          item=item, restore_args=jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(), item),
          partial_restore=True))
  checkpointing.verify_partial(tmp_path / "4", restored)  # Intact: passes.
  kernel = np.asarray(restored["params"]["unet"]["big"]["kernel"]).copy()
  kernel.view(np.uint32)[7, 7] ^= 1  # One flipped bit, as a damaged file would read back.
  restored["params"]["unet"]["big"]["kernel"] = kernel
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"4 is corrupt: the data of \['params/unet/big/kernel'\]"):
    checkpointing.verify_partial(tmp_path / "4", restored)
