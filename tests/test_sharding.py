"""The FSDP default rule on factored meshes: every large parameter divides at 4..256 devices.

Meshes here are abstract (shapes only) except in the subprocess test, which places real arrays on
8 fake CPU devices and checks every device's shard against the full array.
"""
import math
import os
import subprocess
import sys
import textwrap

import jax
import pytest
from jax.sharding import PartitionSpec as P

from configs import smoke
from neural_assets.training import mesh as mesh_lib
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import train_step as train_step_lib
from neural_assets.training.state_setup import setup_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mesh_factors_fsdp_into_prime_axes():
  assert mesh_lib.prime_factors(1) == (1,)
  assert mesh_lib.prime_factors(256) == (2,) * 8
  assert mesh_lib.prime_factors(12) == (3, 2, 2)
  assert mesh_lib.prime_factors(7) == (7,)
  names, shape = mesh_lib.mesh_layout({"data": 2, "fsdp": 12, "tensor": 1})
  assert names == ("data", "fsdp_0", "fsdp_1", "fsdp_2", "tensor")
  assert shape == (2, 3, 2, 2, 1)
  # Prime or 1: a single axis keeps the plain name.
  assert mesh_lib.mesh_layout({"data": 4, "fsdp": 1, "tensor": 1})[0] == ("data", "fsdp",
                                                                           "tensor")
  amesh = mesh_lib.abstract_mesh({"data": 2, "fsdp": -1}, 24)
  assert mesh_lib.fsdp_axes(amesh) == ("fsdp_0", "fsdp_1", "fsdp_2")
  assert mesh_lib.axis_size(amesh, "fsdp") == 12
  assert mesh_lib.batch_axes(amesh) == ("data", "fsdp_0", "fsdp_1", "fsdp_2")
  assert mesh_lib.num_batch_shards(amesh) == 24


def test_default_rule_splits_sd_kernels_at_256():
  amesh = mesh_lib.abstract_mesh({"data": 1, "fsdp": 256}, 256)
  f = [f"fsdp_{i}" for i in range(8)]
  # 320 = 2^6 * 5: six factors on the last dim, two on the one before.
  spec = sharding_lib.partition_spec("unet/conv/kernel", (3, 3, 320, 320), amesh)
  assert spec == P(None, None, tuple(f[6:]), tuple(f[:6]))
  sharding = jax.sharding.NamedSharding(amesh, spec)
  assert sharding.shard_shape((3, 3, 320, 320)) == (3, 3, 80, 5)
  # 1280 = 256 * 5: one dimension takes everything.
  assert sharding_lib.partition_spec("w", (1280, 320), amesh) == P(tuple(f), None)
  # A [320] bias can only use 2^6 of the 2^8: 64-way, replicated over the last 4 devices.
  assert sharding_lib.partition_spec("b", (320,), amesh) == P(tuple(f[:6]))
  # The old single-dimension rule cannot split the kernel at all.
  assert sharding_lib.partition_spec("k", (3, 3, 320, 320), amesh, split_dims=False) == P()
  assert sharding_lib.partition_spec("w", (1280, 320), amesh, split_dims=False) == P(tuple(f),
                                                                                      None)
  # Rules may still name 'fsdp' (all of its factors) and the other axes.
  rules = ((r"emb$", (None, "fsdp")),)
  assert sharding_lib.partition_spec("x/emb", (3, 512), amesh, rules) == P(None, tuple(f))
  with pytest.raises(sharding_lib.ShardingError, match=r"dimension 320 is not divisible.*256"):
    sharding_lib.partition_spec("x/emb", (3, 320), amesh, rules)
  with pytest.raises(sharding_lib.ShardingError, match="'model' is not in the mesh"):
    sharding_lib.partition_spec("x/emb", (3, 320), amesh, ((r"emb$", (None, "model")),))


def _best_split(shape, fsdp):
  """Largest divisor of fsdp whose prime factors the dimensions can take (prime by prime)."""
  out = 1
  for p in set(mesh_lib.prime_factors(fsdp)):
    need = sum(1 for f in mesh_lib.prime_factors(fsdp) if f == p)
    have = 0
    for dim in shape:
      while dim % p == 0:
        dim //= p
        have += 1
    out *= p ** min(need, have)
  return out


@pytest.mark.parametrize("fsdp", [4, 8, 16, 6])
def test_smoke_model_state_divides_on_small_meshes(fsdp):
  config = smoke.get_config()
  config.sharding.min_size_to_shard = 2 ** 10
  model, vae = train_step_lib.build_models(config)
  mesh = mesh_lib.abstract_mesh({"data": 2, "fsdp": fsdp}, 2 * fsdp)
  setup = setup_state(config, model, vae, mesh)
  state, shardings = setup.abstract_state, setup.state_shardings
  leaves = jax.tree_util.tree_leaves_with_path(state)
  shard_leaves = jax.tree_util.tree_leaves(
      shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  fsdp_axes = set(mesh_lib.fsdp_axes(mesh))
  checked = 0
  for (kp, leaf), sharding in zip(leaves, shard_leaves):
    path = sharding_lib.path_str(kp)
    shard = sharding.shard_shape(leaf.shape)
    ways = [math.prod(mesh.shape[a] for a in ((e,) if isinstance(e, str) else e))
            if e is not None else 1 for e in sharding.spec]
    ways += [1] * (len(leaf.shape) - len(ways))
    # Every dimension splits exactly (no padding), only over fsdp axes, never over 'data'.
    for dim, n, s in zip(leaf.shape, ways, shard):
      assert dim % n == 0 and s == dim // n, (path, leaf.shape, sharding.spec)
    used = {a for e in sharding.spec if e is not None
            for a in ((e,) if isinstance(e, str) else e)}
    assert used <= fsdp_axes, (path, sharding.spec)
    size = math.prod(leaf.shape)
    if size >= config.sharding.min_size_to_shard:
      # Large leaves are split over all fsdp devices (shard exactly 1/fsdp) when fsdp divides
      # their size, else over the largest divisor of fsdp their dimensions allow.
      assert math.prod(shard) * _best_split(leaf.shape, fsdp) == size, (
          path, leaf.shape, sharding.spec)
      checked += size % fsdp == 0
    else:
      assert sharding.spec == P(), (path, sharding.spec)
  assert checked > 20
  partial = sharding_lib.replicated_over_fsdp(state, shardings, mesh,
                                              config.sharding.min_size_to_shard)
  assert all(math.prod(shape) % fsdp for _, shape, _ in partial), partial
  assert bool(partial) == (fsdp == 6)  # The smoke model's sizes are powers of 2 times 3 or 1.
  # Adam's moments are laid out like their parameters.
  mu = shardings.opt_state
  flat_params = dict(jax.tree_util.tree_leaves_with_path(shardings.params,
                                                         is_leaf=lambda x: hasattr(x, "spec")))
  flat_mu = jax.tree_util.tree_leaves_with_path(mu, is_leaf=lambda x: hasattr(x, "spec"))
  by_path = {sharding_lib.path_str(k): v.spec for k, v in flat_params.items()}
  matched = 0
  for kp, s in flat_mu:
    path = sharding_lib.path_str(kp)
    for ppath, pspec in by_path.items():
      if path.endswith("/" + ppath):
        assert s.spec == pspec, (path, s.spec, pspec)
        matched += 1
  assert matched >= 2 * len(by_path)


_PLACE = textwrap.dedent("""
    import jax, numpy as np
    from neural_assets.training import mesh as mesh_lib, sharding as sharding_lib
    mesh = mesh_lib.create_mesh({"data": 1, "fsdp": 8})
    assert mesh.axis_names == ("data", "fsdp_0", "fsdp_1", "fsdp_2", "tensor"), mesh.axis_names
    x = np.arange(3 * 3 * 12 * 10, dtype=np.float32).reshape(3, 3, 12, 10)
    sharding = sharding_lib.tree_shardings({"k": x}, mesh)["k"]
    assert sharding.spec == jax.sharding.PartitionSpec(
        None, None, ("fsdp_0", "fsdp_1"), "fsdp_2"), sharding.spec
    arr = jax.device_put(x, sharding)
    seen = set()
    for shard in arr.addressable_shards:
      assert shard.data.shape == (3, 3, 3, 5), shard.data.shape
      np.testing.assert_array_equal(np.asarray(shard.data), x[shard.index])
      seen.add(tuple((s.start, s.stop) for s in shard.index[2:]))
    assert len(seen) == 8  # Eight distinct blocks: nothing duplicated.
    # A jitted reduction over the sharded array and a batch over data x fsdp agree with numpy.
    batch = jax.device_put(np.ones((8, 12), np.float32), sharding_lib.batch_sharding(mesh))
    out = jax.jit(lambda k, b: (b @ k.sum((0, 1))).sum())(arr, batch)
    np.testing.assert_allclose(float(out), (np.ones((8, 12)) @ x.sum((0, 1))).sum(), rtol=1e-6)
    print("OK")
""")


def test_factored_shards_on_eight_cpu_devices():
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT,
         "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  result = subprocess.run([sys.executable, "-c", _PLACE], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
