"""The demo's own knobs (`config.demo`), their defaults in one place.

  settings = demo_settings(config)   # every key of DEFAULTS; config.demo over the defaults
  settings.minutes, settings.vae_batch_size, ...

A config without a `demo` block (configs/smoke.py, the paper configs) gets the defaults; a key
of `config.demo` that is not in DEFAULTS is refused, so a typo (`demo.minuts`) cannot be
ignored silently. Imports no JAX: `host_devices` reads these before JAX starts.
"""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections

from neural_assets.config_checks import ConfigError

DEFAULTS: Mapping[str, Any] = dict(
    # The default --minutes: VAE warm-up + training (data, evaluation, edits and the
    # edit-fidelity benchmark come on top).
    minutes=12.0,
    # The default --num_fidelity_scenes (the benchmark's own default is 32).
    fidelity_scenes=8,
    # The default --vae_minutes, and the VAE warm-up's batch and learning rate.
    vae_minutes=3.0,
    vae_batch_size=8,
    vae_lr=2e-3,
    # XLA CPU devices the host is split into for data parallelism (0 = one per core, 1 = XLA's
    # single device; host_devices.py).
    cpu_devices=0,
    # Restart with glibc's transparent-huge-page tunable (malloc_hugepages.py).
    malloc_hugepages=False,
    # The report's trajectories (edits.py): frames (0 = none, else >= 2), DDIM steps, GIF fps.
    # A few frames at a few steps: 7 trajectories cost about 7 x 6 renders at 5 steps, a small
    # part of the demo's evaluation (which samples at config.sampler's steps).
    trajectory_frames=6,
    trajectory_steps=5,
    trajectory_fps=6.0,
)


def demo_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """DEFAULTS updated with `config.demo` (absent: the defaults), each value of its default's type.

  Raises:
    ConfigError: `config.demo` has a key not in DEFAULTS (the message lists the known ones).
  """
  given: Mapping[str, Any] = config.demo if "demo" in config else {}
  unknown = sorted(set(given) - set(DEFAULTS))
  if unknown:
    raise ConfigError(f"Unknown config.demo key(s) {unknown}; known: {sorted(DEFAULTS)}.")
  merged = {k: type(v)(given[k]) if k in given else v for k, v in DEFAULTS.items()}
  return ml_collections.ConfigDict(merged)
