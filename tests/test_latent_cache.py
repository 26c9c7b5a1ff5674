"""training.latent_cache: the cached latents are the step's own encoding of the pipeline's targets."""
import jax
import numpy as np
import pytest

from configs import smoke
from data_pipelines import pipeline
from neural_assets import config_checks
from neural_assets.training import latent_cache
from neural_assets.training import mesh as mesh_lib
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import train_step as train_step_lib
from neural_assets.training import trainer
from neural_assets.training.state_setup import setup_state
from tests import video_fixtures


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  out = tmp_path_factory.mktemp("synthetic")
  video_fixtures.render_synthetic_splits(out, (("train", 5, 0), ("eval", 2, 1)), 32, 3)
  config = smoke.get_config()
  config.data.data_dir = str(out)
  config.training.vae_sample_posterior = False
  config.training.cache_latents = True
  config.training.cache_latents_batch_size = 4  # 15 frames: 3 full chunks + a padded one.
  mesh = mesh_lib.create_mesh({"data": 1})
  model, vae = train_step_lib.build_models(config)
  state_setup = setup_state(config, model, vae, mesh)
  state = state_setup.init_fn(jax.random.key(0))
  return config, mesh, model, vae, state_setup, state


def test_cache_holds_the_steps_encoding_of_every_frame(setup):
  config, _, _, vae, _, state = setup
  cache = trainer.build_latent_cache(config, vae, state)
  assert cache.num_videos == 5 and cache.latents.shape[0] == 15
  np.testing.assert_array_equal(cache.offsets, [0, 3, 6, 9, 12, 15])
  batch = next(iter(pipeline.make_train_iterator(config)))
  cached = cache.add_to(batch)[latent_cache.LATENTS_KEY]
  encoded = train_step_lib.encode_latents(vae, state.frozen_params["vae"], batch["target_image"],
                                          jax.random.key(1), sample_posterior=False)
  assert cached.shape == encoded.shape
  np.testing.assert_allclose(cached, np.asarray(encoded), atol=1e-5)
  # Not all the same latent (the lookup follows video and frame).
  assert np.abs(cache.latents[0] - cache.latents[4]).max() > 1e-3
  with pytest.raises(IndexError, match="video index"):
    cache.lookup(np.array([5]), np.array([0]))
  with pytest.raises(IndexError, match="frame index"):
    cache.lookup(np.array([1]), np.array([3]))
  with pytest.raises(ValueError, match="exceed training.cache_latents_max_bytes=100"):
    config.training.cache_latents_max_bytes = 100
    try:
      trainer.build_latent_cache(config, vae, state)
    finally:
      config.training.cache_latents_max_bytes = 2 ** 31


def test_step_on_cached_latents_equals_the_step_that_encodes(setup):
  config, mesh, model, vae, state_setup, state = setup
  cache = trainer.build_latent_cache(config, vae, state)
  batch = next(iter(pipeline.make_train_iterator(config)))
  step = train_step_lib.make_train_step(
      config, model, vae, state_setup.tx, state_setup.schedules, state_setup.state_shardings,
      sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh))
  results = []
  cached = cache.add_to(batch)
  # Zero latents in place of the cached ones: the step must read them (a different loss).
  zeros = {**cached, latent_cache.LATENTS_KEY: np.zeros_like(cached[latent_cache.LATENTS_KEY])}
  for b in (batch, cached, zeros):
    fresh = state_setup.init_fn(jax.random.key(0))  # The step donates its input state.
    new_state, metrics = step(fresh, sharding_lib.shard_batch(b, mesh))
    results.append((float(metrics["loss"]), jax.device_get(new_state.params)))
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
  assert abs(results[2][0] - results[0][0]) > 1e-3 * results[0][0]
  for a, b in zip(jax.tree_util.tree_leaves(results[0][1]), jax.tree_util.tree_leaves(results[1][1])):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_cache_needs_the_posterior_mean():
  config = smoke.get_config()
  config.training.cache_latents = True
  config.training.vae_sample_posterior = True
  with pytest.raises(config_checks.ConfigError, match="vae_sample_posterior=False"):
    config_checks.check_config(config)
  config.training.vae_sample_posterior = False
  config_checks.check_config(config)
