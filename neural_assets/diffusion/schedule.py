"""Discrete DDPM noise schedule: betas, noising, training targets and their inversion.

Matches diffusers' `DDPMScheduler` / `DDIMScheduler` definitions (Stable Diffusion's
`scaled_linear` betas: linspace in sqrt(beta), squared) so that a model trained here sees the same
marginals as the pre-trained SD-2.1 UNet it starts from. Config keys are diffusers' scheduler keys
(`configs/sd21.py: diffusion`).

Notation: a_t = alphas_cumprod[t]; x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps;
v_t = sqrt(a_t) eps - sqrt(1 - a_t) x0 (Salimans & Ho, "v-prediction").
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def make_betas(num_train_timesteps: int, beta_start: float, beta_end: float,
               beta_schedule: str) -> np.ndarray:
  """[T] float32 betas for diffusers' `linear` or `scaled_linear` schedule."""
  if beta_schedule == "linear":
    betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float32)
  elif beta_schedule == "scaled_linear":
    betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps,
                        dtype=np.float32) ** 2
  else:
    raise ValueError(f"Unknown beta_schedule {beta_schedule!r}: expected 'linear' or "
                     "'scaled_linear'.")
  return betas.astype(np.float32)


def _check_prediction_type(prediction_type: str) -> None:
  if prediction_type not in PREDICTION_TYPES:
    raise ValueError(f"Unknown prediction_type {prediction_type!r}: expected one of "
                     f"{PREDICTION_TYPES}.")


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
  """Holds the schedule as numpy (host constants that jit folds in) plus its config.

  Attributes:
    betas: [T] float32.
    alphas_cumprod: [T] float32.
    prediction_type: what the denoiser predicts ('epsilon', 'v_prediction' or 'sample').
  """
  betas: np.ndarray
  alphas_cumprod: np.ndarray
  prediction_type: str

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> "NoiseSchedule":
    """Builds from a diffusers-style scheduler config (`configs/sd21.py: diffusion`)."""
    betas = make_betas(int(config["num_train_timesteps"]), float(config["beta_start"]),
                       float(config["beta_end"]), str(config["beta_schedule"]))
    prediction_type = str(config["prediction_type"])
    _check_prediction_type(prediction_type)
    # float32 cumprod, as the reference library computes it.
    alphas_cumprod = np.cumprod(1.0 - betas, dtype=np.float32)
    return cls(betas=betas, alphas_cumprod=alphas_cumprod, prediction_type=prediction_type)

  @property
  def num_train_timesteps(self) -> int:
    return int(self.betas.shape[0])

  def _coefs(self, t: jax.Array, ndim: int) -> tuple[jax.Array, jax.Array]:
    """sqrt(a_t), sqrt(1 - a_t) for integer timesteps [B], broadcast to rank `ndim`."""
    a = jnp.asarray(self.alphas_cumprod)[jnp.asarray(t, jnp.int32)]
    a = a.reshape(a.shape + (1,) * (ndim - a.ndim))
    return jnp.sqrt(a), jnp.sqrt(1.0 - a)

  def add_noise(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """x_t for x0, noise [B, ...] and timesteps t [B] (ints in [0, T))."""
    sa, s1a = self._coefs(t, x0.ndim)
    return (sa * x0 + s1a * noise).astype(x0.dtype)

  def velocity(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """v_t = sqrt(a_t) noise - sqrt(1 - a_t) x0, [B, ...]."""
    sa, s1a = self._coefs(t, x0.ndim)
    return (sa * noise - s1a * x0).astype(x0.dtype)

  def training_target(self, x0: jax.Array, noise: jax.Array, t: jax.Array,
                      prediction_type: str | None = None) -> jax.Array:
    """The regression target of the denoiser for `prediction_type` (default: the schedule's)."""
    prediction_type = prediction_type or self.prediction_type
    _check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
      return noise
    if prediction_type == "v_prediction":
      return self.velocity(x0, noise, t)
    return x0

  def predict_x0_and_eps(self, model_out: jax.Array, x_t: jax.Array, t: jax.Array,
                         prediction_type: str | None = None) -> tuple[jax.Array, jax.Array]:
    """Inverts a model output into (x0, eps) estimates given x_t [B, ...] and t [B]."""
    prediction_type = prediction_type or self.prediction_type
    _check_prediction_type(prediction_type)
    sa, s1a = self._coefs(t, x_t.ndim)
    if prediction_type == "epsilon":
      eps = model_out
      x0 = (x_t - s1a * eps) / sa
    elif prediction_type == "v_prediction":
      x0 = sa * x_t - s1a * model_out
      eps = sa * model_out + s1a * x_t
    else:
      x0 = model_out
      eps = (x_t - sa * x0) / s1a
    return x0, eps

  def sample_timesteps(self, key: jax.Array, batch_size: int) -> jax.Array:
    """[B] int32 timesteps uniform over [0, T) (as SD training does)."""
    return jax.random.randint(key, (batch_size,), 0, self.num_train_timesteps, jnp.int32)
