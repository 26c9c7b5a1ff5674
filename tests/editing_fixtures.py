"""A tiny Neural Assets checkpoint and scenes with known geometry, for the editing / CLI /
notebook tests.

The checkpoint is written by the training code's own `Checkpointer` (a step-0 `TrainState` with
randomly initialised parameters), so loading it exercises the real checkpoint layout.
"""
from __future__ import annotations

import functools
import os

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import smoke
from neural_assets import editing
from tests import video_fixtures

RESOLUTION = 16
MAX_OBJECTS = 6


def tiny_config() -> ml_collections.ConfigDict:
  """The smoke config shrunk further: 16x16 images, 4x4 latents, 2x2 ViT patches."""
  config = smoke.get_config()
  config.model.unet.update(dict(sample_size=RESOLUTION // 4, block_out_channels=(8, 16),
                                attention_head_dim=(2, 4), cross_attention_dim=16,
                                norm_num_groups=4))
  config.model.vae.update(dict(block_out_channels=(8, 16, 16), norm_num_groups=4))
  cond = config.model.conditioning
  cond.max_objects = MAX_OBJECTS
  cond.encoder.update(dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, image_size=RESOLUTION, input_size=RESOLUTION))
  cond.update(dict(token_dim=8, context_dim=16, pose_hidden_dim=16))
  config.data.resolution = (RESOLUTION, RESOLUTION)
  config.sampler.num_inference_steps = 2
  config.checkpoint.async_save = False
  # AlexNet LPIPS needs >= 31 px images (lpips.py refuses smaller ones).
  config.evaluation.lpips.weights = "none"
  return config


def random_params(abstract, seed: int = 0):
  """Random parameters of the given shapes: norm scales 1, biases 0, other weights
  N(0, 1 / fan_in) (fan_in = product of all but the last dimension)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "scale":
      return jnp.ones(leaf.shape, leaf.dtype)
    if name == "bias":
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = max(1, int(np.prod(leaf.shape[:-1])))
    return jnp.asarray(rng.normal(0.0, fan_in ** -0.5, leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


def make_tiny_checkpoint(workdir: str, config: ml_collections.ConfigDict | None = None,
                         seed: int = 0, step: int = 0) -> str:
  """Writes `<workdir>/checkpoints/<step>` (and `config.json`) with random weights of `seed`
  (kept beside the workdir's other steps); returns workdir."""
  # pylint: disable=g-import-not-at-top
  from neural_assets.training import checkpointing, optimizer, train_state, train_step
  # pylint: enable=g-import-not-at-top
  config = config or tiny_config()
  model, vae = train_step.build_models(config)
  # Compiling (or running eagerly) the real initialiser takes a minute on a loaded CPU; random
  # values of the right shapes (from a trace only) make an equally valid tiny random model.
  params, frozen = random_params(jax.eval_shape(
      functools.partial(train_step.init_params, config, model, vae), jax.random.key(seed)), seed)
  tx, _ = optimizer.make_optimizer(config.optimizer, params, config.training.num_train_steps)
  state = train_state.create(params, frozen, tx, jax.random.key(seed), use_ema=False)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None,
                                    async_save=False, config_json=config.to_json_best_effort())
  ckpt.save(step, state, {})
  ckpt.close()
  (epath.Path(workdir) / "config.json").write_text(config.to_json_best_effort(indent=2))
  return workdir


def make_scene(centers=None, sizes=None, frame: int = 0, resolution: int = RESOLUTION,
               **kwargs) -> editing.Scene:
  """A Scene cut from `video_fixtures.make_video_record` (axis-aligned boxes 4-7 m ahead)."""
  record = video_fixtures.make_video_record(num_frames=max(2, frame + 1), height=resolution,
                                            width=resolution, centers=centers, sizes=sizes,
                                            **kwargs)
  return editing.scene_from_video_record(record, frame)


def assert_rotation(matrix: np.ndarray, atol: float = 1e-5) -> None:
  np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=atol)
  assert abs(np.linalg.det(matrix) - 1.0) < atol

