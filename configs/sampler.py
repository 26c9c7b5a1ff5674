"""DDIM sampling defaults for Neural Assets (the paper does not publish its sampler: open choice).

Scheduler keys match SD-2.1's `scheduler_config.json` read by diffusers' `DDIMScheduler`
(`leading` spacing, `steps_offset=1`, `set_alpha_to_one=False`); the noise-schedule keys
(betas, prediction type) come from the model config's `diffusion` block, not from here.
Usage: `DDIMSampler.from_config(config.diffusion, sampler.get_config())`.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      num_inference_steps=50,  # (open) the usual DDIM budget.
      eta=0.0,  # deterministic DDIM.
      guidance_scale=2.0,  # (open) a common choice.
      timestep_spacing="leading",
      steps_offset=1,
      set_alpha_to_one=False,
      clip_sample=False,
      clip_sample_range=1.0,
  ))
