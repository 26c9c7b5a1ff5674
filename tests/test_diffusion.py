"""Noise schedule and DDIM sampler against diffusers' DDPMScheduler / DDIMScheduler (SD-2.1 setup)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from configs import sampler as sampler_config
from configs import sd21
from neural_assets.diffusion import ddim
from neural_assets.diffusion.schedule import NoiseSchedule

ATOL = 1e-5


def _diffusion_cfg(prediction_type="epsilon", beta_schedule="scaled_linear"):
  cfg = sd21.get_config("base").diffusion.to_dict()
  cfg.update(prediction_type=prediction_type, beta_schedule=beta_schedule)
  return cfg


def _ddim_reference(cfg, sampler):
  return DDIMScheduler(**cfg, clip_sample=sampler.clip_sample,
                       set_alpha_to_one=sampler.set_alpha_to_one,
                       steps_offset=sampler.steps_offset,
                       timestep_spacing=sampler.timestep_spacing)


@pytest.mark.parametrize("beta_schedule", ["scaled_linear", "linear"])
def test_betas_and_alphas_match_ddpm(beta_schedule):
  cfg = _diffusion_cfg(beta_schedule=beta_schedule)
  ours = NoiseSchedule.from_config(cfg)
  ref = DDPMScheduler(**cfg)
  np.testing.assert_allclose(ours.betas, ref.betas.numpy(), rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(ours.alphas_cumprod, ref.alphas_cumprod.numpy(), rtol=1e-5)


def test_unknown_schedule_rejected():
  with pytest.raises(ValueError, match="beta_schedule"):
    NoiseSchedule.from_config(_diffusion_cfg(beta_schedule="cosine"))
  with pytest.raises(ValueError, match="prediction_type"):
    NoiseSchedule.from_config(_diffusion_cfg(prediction_type="eps"))


def test_add_noise_velocity_and_inversion():
  cfg = _diffusion_cfg()
  ours = NoiseSchedule.from_config(cfg)
  ref = DDPMScheduler(**cfg)
  rng = np.random.default_rng(0)
  x0 = rng.normal(size=(5, 4, 4, 3)).astype(np.float32)
  noise = rng.normal(size=x0.shape).astype(np.float32)
  t = np.array([0, 1, 250, 777, 999])
  # diffusers is NCHW-agnostic here (per-example broadcast); feed NHWC as is.
  x_t_ref = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t))
  v_ref = ref.get_velocity(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t))
  x_t = ours.add_noise(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t))
  v = ours.velocity(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t))
  np.testing.assert_allclose(np.asarray(x_t), x_t_ref.numpy(), atol=ATOL)
  np.testing.assert_allclose(np.asarray(v), v_ref.numpy(), atol=ATOL)
  np.testing.assert_allclose(np.asarray(ours.training_target(x0, noise, t, "epsilon")), noise)
  np.testing.assert_allclose(np.asarray(ours.training_target(x0, noise, t, "v_prediction")),
                             v_ref.numpy(), atol=ATOL)
  # A perfect prediction inverts back to (x0, noise) for every parameterisation.
  for ptype, out in [("epsilon", noise), ("v_prediction", np.asarray(v)), ("sample", x0)]:
    x0_hat, eps_hat = ours.predict_x0_and_eps(jnp.asarray(out), x_t, jnp.asarray(t), ptype)
    np.testing.assert_allclose(np.asarray(x0_hat[1:]), x0[1:], atol=2e-4)
    np.testing.assert_allclose(np.asarray(eps_hat[:-1]), noise[:-1], atol=2e-4)


@pytest.mark.parametrize("spacing,steps", [("leading", 50), ("trailing", 50), ("linspace", 7),
                                           ("leading", 3), ("trailing", 8)])
def test_timesteps_match(spacing, steps):
  cfg = _diffusion_cfg()
  sampler = ddim.DDIMSampler(**cfg, num_inference_steps=steps, timestep_spacing=spacing)
  ref = _ddim_reference(cfg, sampler)
  ref.set_timesteps(steps)
  np.testing.assert_array_equal(sampler.timesteps(), ref.timesteps.numpy())


@pytest.mark.parametrize("ptype,eta", [("epsilon", 0.0), ("v_prediction", 0.0), ("epsilon", 0.7)])
def test_single_steps_match(ptype, eta):
  cfg = _diffusion_cfg(prediction_type=ptype)
  sampler = ddim.DDIMSampler(**cfg, num_inference_steps=20, eta=eta)
  ref = _ddim_reference(cfg, sampler)
  ref.set_timesteps(20)
  rng = np.random.default_rng(1)
  for t in [int(ref.timesteps[0]), int(ref.timesteps[7]), int(ref.timesteps[-1])]:
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    out = rng.normal(size=x.shape).astype(np.float32)
    noise = rng.normal(size=x.shape).astype(np.float32)
    expected = ref.step(torch.from_numpy(out), t, torch.from_numpy(x), eta=eta,
                        variance_noise=torch.from_numpy(noise)).prev_sample.numpy()
    got = sampler.step(jnp.asarray(out), t, jnp.asarray(x), jnp.asarray(noise))
    np.testing.assert_allclose(np.asarray(got), expected, atol=ATOL, rtol=1e-5)


def _toy_denoiser(params, x, t, tokens):
  """A deterministic stand-in model whose output depends on x, t, the tokens and params."""
  bias = jnp.mean(tokens, axis=(1, 2))[:, None, None, None]
  return jnp.tanh(params["w"] * x + bias + t[:, None, None, None].astype(x.dtype) / 1000.0)


@pytest.mark.parametrize("ptype,spacing,eta,scale", [
    ("epsilon", "leading", 0.0, 3.0),
    ("v_prediction", "trailing", 0.0, 1.0),
    ("epsilon", "leading", 0.5, 2.0),
])
def test_full_trajectory_matches(ptype, spacing, eta, scale):
  cfg = _diffusion_cfg(prediction_type=ptype)
  sampler = ddim.DDIMSampler(**cfg, num_inference_steps=10, eta=eta, guidance_scale=scale,
                             timestep_spacing=spacing)
  ref = _ddim_reference(cfg, sampler)
  ref.set_timesteps(10)
  params = {"w": jnp.float32(0.3)}
  shape = (2, 4, 4, 3)
  tokens = jnp.asarray(np.random.default_rng(2).normal(size=(2, 6, 5)), jnp.float32)
  key = jax.random.key(7)

  # A non-zero null context (as the learned one is): the guided passes must use exactly it.
  null = jnp.asarray(np.random.default_rng(3).normal(size=(2, 6, 5)), jnp.float32)
  got = sampler.sample(_toy_denoiser, params, tokens, key, shape, null)

  x = np.array(sampler.initial_noise(key, shape))
  for i, t in enumerate(ref.timesteps.numpy()):
    t_b = jnp.full((2,), t, jnp.int32)
    cond = np.asarray(_toy_denoiser(params, jnp.asarray(x), t_b, tokens))
    uncond = np.asarray(_toy_denoiser(params, jnp.asarray(x), t_b, null))
    out = uncond + scale * (cond - uncond)
    noise = torch.from_numpy(np.array(sampler.step_noise(key, shape, i)))
    x = ref.step(torch.from_numpy(out), int(t), torch.from_numpy(x), eta=eta,
                 variance_noise=noise).prev_sample.numpy()
  np.testing.assert_allclose(np.asarray(got), x, atol=ATOL, rtol=1e-5)
  # Deterministic given the key; a different key gives a different sample.
  np.testing.assert_array_equal(np.asarray(sampler.sample(_toy_denoiser, params, tokens, key,
                                                          shape, null)), np.asarray(got))
  other = sampler.sample(_toy_denoiser, params, tokens, jax.random.key(8), shape, null)
  assert np.abs(np.asarray(other) - np.asarray(got)).max() > 1e-3
  if scale != 1.0:  # No silent all-zero null context: a missing one is refused.
    with pytest.raises(ValueError, match="needs uncond_tokens"):
      sampler.sample(_toy_denoiser, params, tokens, key, shape, None)
  else:  # Without guidance there is no unconditional pass to feed.
    np.testing.assert_array_equal(sampler.sample(_toy_denoiser, params, tokens, key, shape, None),
                                  got)


def test_cfg_is_one_batched_call_and_math():
  sampler = ddim.DDIMSampler(**_diffusion_cfg(), guidance_scale=2.5)
  calls = []

  def denoise(params, x, t, tokens):
    calls.append(x.shape[0])
    return x * jnp.sum(tokens, axis=(1, 2))[:, None, None, None]

  x = jnp.ones((3, 2, 2, 1))
  cond = jnp.ones((3, 4, 2))
  uncond = jnp.full((3, 4, 2), 0.25)
  out = sampler.guided_output(denoise, None, x, 10, cond, uncond)
  assert calls == [6]
  # uncond = 2, cond = 8: 2 + 2.5 * (8 - 2) = 17.
  np.testing.assert_allclose(np.asarray(out), 17.0)
  np.testing.assert_allclose(np.asarray(ddim.classifier_free_guidance(
      jnp.float32(2.0), jnp.float32(8.0), 0.0)), 2.0)


def test_config_and_validation():
  cfg = sd21.get_config("base")
  sampler = ddim.DDIMSampler.from_config(cfg.diffusion, sampler_config.get_config())
  assert sampler.num_inference_steps == 50 and sampler.timesteps()[0] == 981
  assert sampler.timesteps()[-1] == 1
  with pytest.raises(ValueError, match="Unknown DDIM"):
    ddim.DDIMSampler.from_config(cfg.diffusion, {"num_steps": 4})
  with pytest.raises(ValueError, match="timestep_spacing"):
    ddim.DDIMSampler(timestep_spacing="karras")
  with pytest.raises(ValueError, match="eta"):
    ddim.DDIMSampler(eta=0.5).step(jnp.zeros((1, 2)), 981, jnp.zeros((1, 2)))
