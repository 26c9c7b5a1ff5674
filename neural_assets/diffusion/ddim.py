"""DDIM sampling (Song et al. 2021) with classifier-free guidance, the whole loop in one jit.

The step rule, timestep spacings and `steps_offset` / `set_alpha_to_one` follow diffusers'
`DDIMScheduler`, so a sampler configured like SD-2.1's scheduler config (`leading` spacing,
`steps_offset=1`, `set_alpha_to_one=False`) reproduces the reference trajectory step by step.
As there, the previous timestep of step t is `t - T // S` (T train steps, S inference steps), and a
negative previous timestep uses the "final" alpha (1 or alphas_cumprod[0]).

Classifier-free guidance runs the unconditional and conditional passes as one batched model call:
out = out_uncond + w * (out_cond - out_uncond). Pass the unconditional context the model was
trained with (Neural Assets: `NeuralAssetsModel.tokenize_cond_and_null`, learned f(0) or zeros
per `conditioning.null_condition`): there is no default null context, a missing one with guidance
is an error.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from neural_assets.diffusion import schedule as schedule_lib

# denoise_fn(params, latents [B, h, w, c], timesteps [B] int32, tokens [B, L, D]) -> [B, h, w, c]
DenoiseFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def classifier_free_guidance(out_uncond: jax.Array, out_cond: jax.Array,
                             guidance_scale: float) -> jax.Array:
  """out_uncond + w (out_cond - out_uncond); w = 1 is the conditional model, w = 0 unconditional."""
  return out_uncond + guidance_scale * (out_cond - out_uncond)


@dataclasses.dataclass(frozen=True)
class DDIMSampler:
  """A hashable DDIM sampler (a valid static argument of `jax.jit`).

  Attributes mirror diffusers' `DDIMScheduler` config keys plus the sampling knobs
  (`num_inference_steps`, `eta`, `guidance_scale`).
  """
  num_train_timesteps: int = 1000
  beta_start: float = 0.00085
  beta_end: float = 0.012
  beta_schedule: str = "scaled_linear"
  prediction_type: str = "epsilon"
  num_inference_steps: int = 50
  eta: float = 0.0
  guidance_scale: float = 2.0
  timestep_spacing: str = "leading"
  steps_offset: int = 1
  set_alpha_to_one: bool = False
  clip_sample: bool = False
  clip_sample_range: float = 1.0

  def __post_init__(self):
    if self.timestep_spacing not in TIMESTEP_SPACINGS:
      raise ValueError(f"Unknown timestep_spacing {self.timestep_spacing!r}: expected one of "
                       f"{TIMESTEP_SPACINGS}.")
    if not 0 < self.num_inference_steps <= self.num_train_timesteps:
      raise ValueError(f"num_inference_steps must be in [1, {self.num_train_timesteps}], got "
                       f"{self.num_inference_steps}.")
    if self.eta < 0:
      raise ValueError(f"eta must be >= 0, got {self.eta}.")
    schedule_lib._check_prediction_type(self.prediction_type)  # pylint: disable=protected-access
    steps = self.timesteps()
    if steps.max() >= self.num_train_timesteps or steps.min() < 0:
      raise ValueError(f"Timesteps {steps.min()}..{steps.max()} fall outside [0, "
                       f"{self.num_train_timesteps}); lower steps_offset={self.steps_offset}.")

  @classmethod
  def from_config(cls, diffusion: Mapping[str, Any], sampler: Mapping[str, Any]) -> "DDIMSampler":
    """From the model's `diffusion` config (`configs/sd21.py`) and a `configs/sampler.py` dict."""
    fields = {f.name for f in dataclasses.fields(cls)}
    merged = {**dict(diffusion), **dict(sampler)}
    unknown = set(merged) - fields
    if unknown:
      raise ValueError(f"Unknown DDIM sampler config keys: {sorted(unknown)}.")
    return cls(**merged)

  @property
  def schedule(self) -> schedule_lib.NoiseSchedule:
    return schedule_lib.NoiseSchedule.from_config(dict(
        num_train_timesteps=self.num_train_timesteps, beta_start=self.beta_start,
        beta_end=self.beta_end, beta_schedule=self.beta_schedule,
        prediction_type=self.prediction_type))

  def timesteps(self) -> np.ndarray:
    """[S] int32 timesteps in sampling order (descending), as diffusers' `set_timesteps`."""
    total, steps = self.num_train_timesteps, self.num_inference_steps
    if self.timestep_spacing == "leading":
      t = np.arange(steps)[::-1] * (total // steps) + self.steps_offset
    elif self.timestep_spacing == "trailing":
      t = np.round(np.arange(total, 0, -total / steps)) - 1
    else:
      t = np.linspace(0, total - 1, steps).round()[::-1]
    return t.astype(np.int32)

  def step(self, model_out: jax.Array, t: jax.Array, x_t: jax.Array,
           variance_noise: jax.Array | None = None) -> jax.Array:
    """One DDIM update x_t -> x_{t - T // S}.

    Args:
      model_out: [B, ...] denoiser output (after guidance), in `prediction_type` terms.
      t: scalar int timestep.
      x_t: [B, ...] current sample.
      variance_noise: [B, ...] standard normal noise; required when eta > 0.

    Returns:
      [B, ...] the previous sample.
    """
    sched = self.schedule
    acp = jnp.asarray(sched.alphas_cumprod)
    final = 1.0 if self.set_alpha_to_one else sched.alphas_cumprod[0]
    t = jnp.asarray(t, jnp.int32)
    prev_t = t - self.num_train_timesteps // self.num_inference_steps
    a_t = acp[t]
    a_prev = jnp.where(prev_t >= 0, acp[jnp.maximum(prev_t, 0)], final)
    t_b = jnp.broadcast_to(t, x_t.shape[:1])
    x0, eps = sched.predict_x0_and_eps(model_out, x_t, t_b)
    if self.clip_sample:
      x0 = jnp.clip(x0, -self.clip_sample_range, self.clip_sample_range)
    variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)
    std = self.eta * jnp.sqrt(variance)
    x_prev = jnp.sqrt(a_prev) * x0 + jnp.sqrt(1.0 - a_prev - std ** 2) * eps
    if self.eta > 0:
      if variance_noise is None:
        raise ValueError("eta > 0 needs variance_noise.")
      x_prev = x_prev + std * variance_noise
    return x_prev.astype(x_t.dtype)

  def guided_output(self, denoise_fn: DenoiseFn, params: Any, x_t: jax.Array, t: jax.Array,
                    cond_tokens: jax.Array, uncond_tokens: jax.Array) -> jax.Array:
    """Guided model output at x_t [B, ...]: one batched call over [uncond; cond] (2B examples)."""
    batch = x_t.shape[0]
    t_b = jnp.full((batch,), t, jnp.int32)
    if self.guidance_scale == 1.0:
      return denoise_fn(params, x_t, t_b, cond_tokens)
    out = denoise_fn(params, jnp.concatenate([x_t, x_t]), jnp.concatenate([t_b, t_b]),
                     jnp.concatenate([uncond_tokens, cond_tokens]))
    out_uncond, out_cond = out[:batch], out[batch:]
    return classifier_free_guidance(out_uncond, out_cond, self.guidance_scale)

  @functools.partial(jax.jit, static_argnums=(0, 1, 5))
  def sample(self, denoise_fn: DenoiseFn, params: Any, cond_tokens: jax.Array, key: jax.Array,
             latent_shape: tuple[int, ...], uncond_tokens: jax.Array | None,
             initial_latents: jax.Array | None = None) -> jax.Array:
    """Runs the full DDIM chain from x_T ~ N(0, I); deterministic given `key`.

    Args:
      denoise_fn: `(params, x [B, h, w, c], t [B], tokens [B, L, D]) -> [B, h, w, c]`; a static
        argument, so pass the same function object across calls to reuse the compilation.
      params: the denoiser's parameters (traced).
      cond_tokens: [B, L, D] conditioning.
      key: PRNG key; split into the initial noise and the per-step eta noise (step i uses
        `fold_in(step_key, i)`).
      latent_shape: (B, h, w, c).
      uncond_tokens: [B, L, D] the null context the model was trained with (required: a zero
        context is only right for a model trained with zeros); None only when guidance_scale
        is 1 (no unconditional pass).
      initial_latents: [B, h, w, c] x_T overriding the sampled one.

    Returns:
      [B, h, w, c] the sampled x_0 (latents; decode with the VAE).
    """
    init_key, step_key = jax.random.split(key)
    x = (jax.random.normal(init_key, latent_shape, jnp.float32) if initial_latents is None
         else initial_latents.astype(jnp.float32))
    if x.shape != tuple(latent_shape):
      raise ValueError(f"initial_latents shape {x.shape} != latent_shape {latent_shape}.")
    if uncond_tokens is None and self.guidance_scale != 1.0:
      raise ValueError(f"guidance_scale={self.guidance_scale} needs uncond_tokens, the null "
                       "context the model was trained with (tokenize_cond_and_null).")
    timesteps = jnp.asarray(self.timesteps())

    def body(i, x):
      t = timesteps[i]
      out = self.guided_output(denoise_fn, params, x, t, cond_tokens, uncond_tokens)
      noise = (jax.random.normal(jax.random.fold_in(step_key, i), x.shape, x.dtype)
               if self.eta > 0 else None)
      return self.step(out.astype(jnp.float32), t, x, noise)

    return jax.lax.fori_loop(0, self.num_inference_steps, body, x)

  def step_noise(self, key: jax.Array, latent_shape: tuple[int, ...], i: int) -> jax.Array:
    """The eta noise `sample` draws at step i for `key` (to reproduce a trajectory outside)."""
    _, step_key = jax.random.split(key)
    return jax.random.normal(jax.random.fold_in(step_key, i), latent_shape, jnp.float32)

  def initial_noise(self, key: jax.Array, latent_shape: tuple[int, ...]) -> jax.Array:
    """The x_T that `sample` draws for `key`."""
    init_key, _ = jax.random.split(key)
    return jax.random.normal(init_key, latent_shape, jnp.float32)
