"""The `TrainState` of a run: its abstract shape and shardings, and where its values come from.

  setup_state(config, model, vae, mesh) -> Setup          optimizer, abstract state, shardings
  restore_or_initialize(config, setup, checkpointer, it)  newest checkpoint, else a fresh state
                                                          (random, or `init_checkpoint`)
  restore_for_eval(config, checkpoint_dir) -> Restored    newest checkpoint, model only: what
                                                          evaluation and the demo score
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from absl import logging
import flax
import jax
import ml_collections

from neural_assets.models.asset_diffusion import NeuralAssetsModel
from neural_assets.models.vae import AutoencoderKL
from neural_assets.training import checkpointing
from neural_assets.training import init_checkpoint
from neural_assets.training import mesh as mesh_lib
from neural_assets.training import optimizer as optimizer_lib
from neural_assets.training import sharding as sharding_lib
from neural_assets.training import train_state as train_state_lib
from neural_assets.training import train_step as train_step_lib
from neural_assets.training.train_state import TrainState


@flax.struct.dataclass
class Setup:
  """What the loop and the evaluation need besides the state itself."""
  tx: Any = flax.struct.field(pytree_node=False)
  schedules: Any = flax.struct.field(pytree_node=False)
  abstract_state: Any = flax.struct.field(pytree_node=False)  # ShapeDtypeStructs with sharding.
  state_shardings: Any = flax.struct.field(pytree_node=False)
  init_fn: Any = flax.struct.field(pytree_node=False)  # rng -> TrainState (jitted, sharded).


def setup_state(config: ml_collections.ConfigDict, model: NeuralAssetsModel,
                vae: AutoencoderKL, mesh: jax.sharding.Mesh) -> Setup:
  """Optimizer, abstract state and its FSDP shardings; nothing is materialised."""
  rng = jax.random.key(config.training.seed)
  abstract_params, _ = jax.eval_shape(
      functools.partial(train_step_lib.init_params, config, model, vae), rng)
  tx, schedules = optimizer_lib.make_optimizer(config.optimizer, abstract_params,
                                               config.training.num_train_steps)
  use_ema = config.optimizer.ema_decay > 0

  def init_state(rng):
    params, frozen = train_step_lib.init_params(config, model, vae, rng)
    return train_state_lib.create(params, frozen, tx, rng, use_ema)

  abstract_state = jax.eval_shape(init_state, rng)
  shardings = sharding_lib.config_shardings(abstract_state, mesh, config.sharding)
  abstract_state = jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, shardings)
  return Setup(tx=tx, schedules=schedules, abstract_state=abstract_state,
               state_shardings=shardings, init_fn=jax.jit(init_state, out_shardings=shardings))


def restore_or_initialize(config: ml_collections.ConfigDict, setup: Setup,
                          checkpointer: checkpointing.Checkpointer,
                          train_iter: Any) -> TrainState:
  """Resumes from the newest checkpoint, else initialises (optionally from pretrained weights).

  `train_iter` None (evaluation): the checkpoint's data-iterator state is not read.
  """
  latest = checkpointer.latest_step()
  if latest is not None:
    state, data_state = checkpointer.restore(latest, setup.abstract_state,
                                             with_data=train_iter is not None)
    if train_iter is not None:
      train_iter.set_state(data_state)
    logging.info("Resumed from checkpoint step %d in %s.", latest, checkpointer.directory)
    return state
  state = setup.init_fn(jax.random.key(config.training.seed))
  if config.training.init_checkpoint:
    state = init_checkpoint.load_pretrained(state, config.training.init_checkpoint, setup,
                                            config.optimizer.ema_decay > 0)
  return state


@dataclasses.dataclass
class Restored:
  """A trained model ready for sampling: modules, the restored state, its mesh and step."""
  model: Any
  vae: Any
  state: Any
  mesh: Any
  step: int


def restore_for_eval(config: ml_collections.ConfigDict, checkpoint_dir: str,
                     hint: str = "") -> Restored:
  """The newest checkpoint in `checkpoint_dir` (`<workdir>/checkpoints`), without its
  data-iterator state (so any number of processes can evaluate it), on `config.mesh`.

  Raises:
    FileNotFoundError: there is no checkpoint (`hint` is appended to the message).
    CheckpointError: it cannot be restored into the model of `config`.
  """
  mesh = mesh_lib.create_mesh(config.mesh)
  model, vae = train_step_lib.build_models(config)
  setup = setup_state(config, model, vae, mesh)
  checkpointer = checkpointing.Checkpointer(str(checkpoint_dir), config.checkpoint.max_to_keep,
                                            async_save=False)
  try:
    if checkpointer.latest_step() is None:
      raise FileNotFoundError(f"No checkpoint to evaluate in {checkpoint_dir}{hint}.")
    state = restore_or_initialize(config, setup, checkpointer, None)
  finally:
    checkpointer.close()
  return Restored(model=model, vae=vae, state=state, mesh=mesh, step=int(state.step))
