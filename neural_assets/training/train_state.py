"""Everything a training run carries from step to step, as one pytree (what a checkpoint holds).

Fields:
  step             int32 []       number of optimizer steps taken (skipped non-finite ones too)
  params           {'tokenizer': ..., 'unet': ...} float32 master weights (trainable model)
  frozen_params    {'vae': ...}   never updated; checkpointed so a resume needs nothing else
  opt_state        optax state of `params`
  ema_params       exponential moving average of `params`, or None when `ema_decay` is 0
  rng              uint32 [2]     base key data; step s uses fold_in(rng, s), so randomness does
                                  not depend on how many steps ran in this process
  nonfinite_steps  int32 []       steps whose loss or gradients were not finite
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  frozen_params: Any
  opt_state: Any
  ema_params: Any
  rng: jax.Array
  nonfinite_steps: jax.Array


def create(params: Any, frozen_params: Any, tx: optax.GradientTransformation, rng: jax.Array,
           use_ema: bool) -> TrainState:
  """A step-0 state. `rng` is a typed key or raw uint32 [2] key data."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      frozen_params=frozen_params,
      opt_state=tx.init(params),
      ema_params=jax.tree_util.tree_map(jnp.copy, params) if use_ema else None,
      rng=jnp.asarray(rng, jnp.uint32),
      nonfinite_steps=jnp.zeros((), jnp.int32),
  )


def step_rng(state: TrainState) -> jax.Array:
  """The key for this step's randomness (noise, timesteps, CFG drop)."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def update_ema(ema_params: Any, params: Any, decay: jax.Array) -> Any:
  """decay * ema + (1 - decay) * params, leaf by leaf, in the EMA's dtype."""
  return jax.tree_util.tree_map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype),
                                ema_params, params)


def weights_field(has_ema: bool, use_ema: bool) -> str:
  """The `TrainState` field to sample or score with: 'ema_params' when the run keeps an EMA
  (`has_ema`) and `use_ema`, else 'params'. The one choice of weights: `eval_weights` for a live
  state, `inference.load_model_for_inference` for a checkpoint's metadata."""
  return "ema_params" if use_ema and has_ema else "params"


def eval_weights(state: TrainState, use_ema: bool) -> tuple[Any, str]:
  """(parameters to score, which: "ema" | "raw"): the EMA when kept and `use_ema`."""
  field = weights_field(state.ema_params is not None, use_ema)
  return getattr(state, field), ("ema" if field == "ema_params" else "raw")
