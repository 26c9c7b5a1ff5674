"""Checks an experiment config before anything runs: value ranges, NaN, and override typos.

`check_config(config)` raises `ConfigError` naming the first key whose value is out of range
(`config.training.num_train_steps=-5: expected an integer >= 1`) or NaN / inf anywhere; the
entry points call it right after parsing, so a bad value fails in a second, not after the model
is built. `unknown_override(config, argv)` turns the chained tracebacks of a mistyped
`--config.a.b=...` override into one line naming the key and the keys close to it.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Optional, Sequence

import ml_collections

from neural_assets.range_checks import describe_range, in_range


class ConfigError(ValueError):
  """A config value is out of range, or an override names a key that does not exist."""


# (dotted key, kind, low, high, high inclusive). Only keys present in the config are checked.
_INT, _NUM = "an integer", "a finite number"
RULES: tuple[tuple[str, str, Optional[float], Optional[float], bool], ...] = (
    ("training.num_train_steps", _INT, 1, None, True),
    ("training.log_every_steps", _INT, 1, None, True),
    ("training.image_summary_every_steps", _INT, 0, None, True),
    ("training.num_image_summaries", _INT, 0, None, True),
    ("training.max_consecutive_nonfinite", _INT, 0, None, True),
    ("training.max_train_seconds", _NUM, 0, None, True),
    ("training.profile_every_steps", _INT, 0, None, True),
    ("training.profile_num_steps", _INT, 1, None, True),
    ("training.cache_latents_max_bytes", _INT, 1, None, True),
    ("training.loss_min_snr_gamma", _NUM, 0, None, True),
    ("training.loss_object_weight", _NUM, 0, None, True),
    ("training.cache_latents_batch_size", _INT, 1, None, True),
    ("checkpoint.every_steps", _INT, 1, None, True),
    ("checkpoint.max_to_keep", _INT, 1, None, True),
    ("eval.every_steps", _INT, 0, None, True),
    ("eval.num_batches", _INT, -1, None, True),  # -1: the whole eval split.
    ("optimizer.lr", _NUM, 0, None, True),
    ("optimizer.new_layers_lr", _NUM, 0, None, True),
    ("optimizer.warmup_steps", _INT, 0, None, True),
    ("optimizer.decay_steps", _INT, 0, None, True),
    ("optimizer.end_lr_factor", _NUM, 0, 1, True),
    ("optimizer.b1", _NUM, 0, 1, False),
    ("optimizer.b2", _NUM, 0, 1, False),
    ("optimizer.eps", _NUM, 0, None, True),
    ("optimizer.weight_decay", _NUM, 0, None, True),
    ("optimizer.clip_grad_norm", _NUM, 0, None, True),
    ("optimizer.ema_decay", _NUM, 0, 1, False),
    ("optimizer.ema_warmup", _NUM, 0, None, True),
    ("sampler.num_inference_steps", _INT, 1, None, True),
    ("sampler.eta", _NUM, 0, None, True),
    ("sampler.guidance_scale", _NUM, 0, None, True),
    ("data.global_batch_size", _INT, 1, None, True),
    ("data.eval_global_batch_size", _INT, 1, None, True),
    ("data.swap_prob", _NUM, 0, 1, True),
    ("data.min_gap", _INT, 0, None, True),
    ("data.max_gap", _INT, 0, None, True),
    ("data.max_objects", _INT, 1, None, True),
    ("data.num_epochs", _INT, 1, None, True),
    ("data.worker_count", _INT, 0, None, True),
    ("data.read_buffer_size", _INT, 1, None, True),
    ("model.conditioning.cfg_drop_prob", _NUM, 0, 1, True),
    ("model.conditioning.max_objects", _INT, 1, None, True),
)


def _get(config: Any, dotted: str) -> tuple[bool, Any]:
  node = config
  for part in dotted.split("."):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      return False, None
    node = node[part]
  return True, node


def _walk(node: Any, prefix: str):
  if isinstance(node, (ml_collections.ConfigDict, dict)):
    for key in node.keys():
      yield from _walk(node[key], f"{prefix}.{key}")
  elif isinstance(node, (list, tuple)):
    for i, value in enumerate(node):
      yield from _walk(value, f"{prefix}[{i}]")
  else:
    yield prefix, node


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first out-of-range or non-finite value (None means 'unset')."""
  for name, value in _walk(config, "config"):
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"{name}={value}: NaN and inf are not valid config values.")
  for dotted, kind, low, high, high_inclusive in RULES:
    present, value = _get(config, dotted)
    if not present or value is None:
      continue
    wrong_type = isinstance(value, bool) or not isinstance(value, (int, float)) or (
        kind == _INT and isinstance(value, float) and not float(value).is_integer())
    if wrong_type or not in_range(value, low, high, high_inclusive):
      raise ConfigError(f"config.{dotted}={value!r} is out of range: expected "
                        f"{describe_range(kind, low, high, high_inclusive)}.")
  if _get(config, "training.cache_latents")[1] and _get(config, "training.vae_sample_posterior")[1]:
    raise ConfigError("config.training.cache_latents=True needs "
                      "config.training.vae_sample_posterior=False: cached latents are the "
                      "posterior means, a fresh sample per step cannot be cached.")
  height_width = _get(config, "data.resolution")[1]
  if height_width is not None and (len(height_width) != 2 or min(height_width) < 1):
    raise ConfigError(f"config.data.resolution={tuple(height_width)} is out of range: expected "
                      "(height, width), both integers >= 1.")


def unknown_override(config: ml_collections.ConfigDict,
                     argv: Sequence[str], flag: str = "config") -> Optional[str]:
  """One line for the first `--<flag>.a.b=v` in `argv` naming a key `config` lacks, else None.

  The line names the full key, where the path stops matching, and close matches (difflib) among
  the keys that exist there.
  """
  for arg in argv:
    if not arg.startswith(f"--{flag}."):
      continue
    path = arg[len(f"--{flag}."):].split("=", 1)[0]
    node, walked = config, flag
    for part in path.split("."):
      if isinstance(node, (ml_collections.ConfigDict, dict)) and part in node:
        node, walked = node[part], f"{walked}.{part}"
        continue
      if not isinstance(node, (ml_collections.ConfigDict, dict)):
        return (f"--{flag}.{path}: {walked} is a value ({node!r}), not a section, so it has no "
                f"key {part!r}.")
      keys = sorted(node.keys())
      close = difflib.get_close_matches(part, keys, n=3, cutoff=0.5)
      hint = (f"did you mean {', '.join(f'{walked}.{k}' for k in close)}?" if close
              else f"the keys there are {', '.join(keys)}.")
      return f"--{flag}.{path}: {walked} has no key {part!r}; {hint}"
  return None
