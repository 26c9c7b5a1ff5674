"""AdamW with warmup + decay, global-norm clipping and per-group learning rates chosen by path.

Parameters fall into three groups by their '/'-joined path (see `sharding.path_str`):
  'frozen'     — path starts with one of `frozen_prefixes`: updates are zero (optax.set_to_zero),
                 and they do not count towards the clipping norm;
  'pretrained' — path starts with one of `pretrained_prefixes` (the UNet and the visual encoder):
                 learning rate `lr` (5e-5 in the paper's setting);
  'new'        — everything else (token MLPs and projections): learning rate `new_layers_lr`.
Frozen wins over pretrained. A prefix matches whole path components ('unet' matches 'unet/x',
not 'unet2/x').

Config (`config.optimizer`): lr, new_layers_lr, pretrained_prefixes, frozen_prefixes,
warmup_steps, hold_steps (steps at the peak after warmup before the decay starts: a
warmup-stable-decay schedule, which anneals only at the end of a fixed budget), decay ('cosine' |
'linear' | 'constant'), decay_steps (0: until the end of training), end_lr_factor, b1, b2, eps, weight_decay, clip_grad_norm (0: off), ema_decay (0: off) and
ema_warmup (`ema_decay_schedule`; both used by the train step).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from neural_assets.training.sharding import path_str

GROUPS = ("pretrained", "new", "frozen")


def _matches(path: str, prefixes: Sequence[str]) -> bool:
  return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def param_labels(params: Any, pretrained_prefixes: Sequence[str],
                 frozen_prefixes: Sequence[str]) -> Any:
  """Tree like `params` with one of GROUPS per leaf."""
  def label(key_path, _):
    path = path_str(key_path)
    if _matches(path, frozen_prefixes):
      return "frozen"
    if _matches(path, pretrained_prefixes):
      return "pretrained"
    return "new"
  return jax.tree_util.tree_map_with_path(label, params)


def lr_schedule(peak_lr: float, warmup_steps: int, decay: str, decay_steps: int,
                end_lr_factor: float, hold_steps: int = 0) -> optax.Schedule:
  """Linear warmup from 0 to `peak_lr` over `warmup_steps`, `peak_lr` for `hold_steps`, then
  `decay` over `decay_steps` (to `peak_lr * end_lr_factor`, held after)."""
  if hold_steps < 0:
    raise ValueError(f"hold_steps={hold_steps} must be >= 0.")
  end_lr = peak_lr * end_lr_factor
  warmup = optax.linear_schedule(0.0, peak_lr, max(warmup_steps, 1))
  if decay == "constant":
    after = optax.constant_schedule(peak_lr)
  elif decay == "cosine":
    after = optax.cosine_decay_schedule(peak_lr, max(decay_steps, 1), alpha=end_lr_factor)
  elif decay == "linear":
    after = optax.linear_schedule(peak_lr, end_lr, max(decay_steps, 1))
  else:
    raise ValueError(f"Unknown learning-rate decay {decay!r}: expected 'cosine', 'linear' or "
                     "'constant'.")
  pieces, boundaries = [after], []
  if hold_steps > 0:
    pieces, boundaries = [optax.constant_schedule(peak_lr), after], [hold_steps]
  if warmup_steps > 0:
    pieces = [warmup] + pieces
    boundaries = [warmup_steps] + [warmup_steps + b for b in boundaries]
  if len(pieces) == 1:
    return after
  return optax.join_schedules(pieces, boundaries)


def ema_decay_schedule(decay: float, warmup: float) -> optax.Schedule:
  """The EMA decay at update `t` (0-based): min(decay, (1 + t) / (warmup + t)); warmup 0: constant.

  The rule of TensorFlow's ExponentialMovingAverage with `num_updates`: without it an EMA of decay
  0.9999 started from the initial weights still holds 0.9999**10_000 = 37% of them (new random
  layers included) at a first evaluation after 10k steps; with warmup 10 the first update keeps
  only 10% of the initialisation and the decay reaches 0.9999 after ~90k updates.
  """
  if warmup < 0:
    raise ValueError(f"ema_warmup={warmup} must be >= 0 (0: no warm-up).")
  if warmup == 0:
    return optax.constant_schedule(decay)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + step) / (warmup + step))
  return schedule


def make_schedules(config: ml_collections.ConfigDict,
                   num_train_steps: int) -> dict[str, optax.Schedule]:
  """{'pretrained': schedule, 'new': schedule} from `config.optimizer`."""
  hold_steps = config.hold_steps
  decay_steps = config.decay_steps or max(num_train_steps - config.warmup_steps - hold_steps, 1)
  return {
      group: lr_schedule(lr, config.warmup_steps, config.decay, decay_steps,
                         config.end_lr_factor, hold_steps)
      for group, lr in (("pretrained", config.lr), ("new", config.new_layers_lr))
  }


def _decay_mask(params: Any) -> Any:
  # Weight decay on kernels / embeddings only: decaying biases and norm scales hurts fine-tuning.
  return jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)


def make_optimizer(config: ml_collections.ConfigDict, params: Any,
                   num_train_steps: int) -> tuple[optax.GradientTransformation,
                                                  dict[str, optax.Schedule]]:
  """Returns (optax transformation, {group: lr schedule}) for `params` (arrays or shapes).

  Args:
    config: `config.optimizer`.
    params: the trainable parameter tree (only its structure and paths are used).
    num_train_steps: total steps, the default end of the decay.
  """
  labels = param_labels(params, config.pretrained_prefixes, config.frozen_prefixes)
  schedules = make_schedules(config, num_train_steps)

  def adamw(schedule):
    return optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                       weight_decay=config.weight_decay, mask=_decay_mask)

  freeze = optax.multi_transform(
      {"frozen": optax.set_to_zero(), "pretrained": optax.identity(), "new": optax.identity()},
      labels)
  clip = (optax.clip_by_global_norm(config.clip_grad_norm) if config.clip_grad_norm > 0
          else optax.identity())
  update = optax.multi_transform(
      {"frozen": optax.set_to_zero(), "pretrained": adamw(schedules["pretrained"]),
       "new": adamw(schedules["new"])},
      labels)
  # Frozen gradients are zeroed before clipping so they never shrink the others' updates.
  return optax.chain(freeze, clip, update), schedules


def group_sizes(params: Any, config: ml_collections.ConfigDict) -> dict[str, int]:
  """Number of parameters per group, for the start-of-training log."""
  labels = jax.tree_util.tree_leaves(
      param_labels(params, config.pretrained_prefixes, config.frozen_prefixes))
  sizes = {g: 0 for g in GROUPS}
  for label, leaf in zip(labels, jax.tree_util.tree_leaves(params)):
    sizes[label] += int(leaf.size)
  return sizes

