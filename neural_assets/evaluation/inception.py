"""The FID Inception-v3 network (pytorch-fid's variant of the TF 2015-12-05 graph) in Flax.

`FIDInceptionV3()(images [B, H, W, 3] in [0, 1]) -> [B, 2048]` pool3 features, as
`pytorch_fid.inception.InceptionV3(output_blocks=[3])`: bilinear resize to 299x299
(align_corners=False, no antialiasing, i.e. `F.interpolate`), scaling to [-1, 1], the torchvision
Inception3 trunk with the FID patches (average pools that exclude padding in Mixed_5b-d, 6b-e
and 7b; a 3x3 max pool in the pool branch of Mixed_7c), and global average pooling.
Module and parameter names follow the PyTorch state dict (`Mixed_5b/branch1x1/conv/kernel`).

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` converted once to safetensors
(we never unpickle), e.g. where torch is installed:
  python -c "import torch,safetensors.torch as st; st.save_file({k: v.contiguous() for k, v in torch.load('pt_inception-2015-12-05-6726825d.pth', map_location='cpu').items()}, 'pt_inception-2015-12-05.safetensors')"
`load_fid_inception(path)` maps it; the 1008-way `fc` head is not used for FID and is ignored.
"""
from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from neural_assets.convert.checkpoint_io import CheckpointMismatchError
from neural_assets.convert.checkpoint_io import fill_params
from neural_assets.convert.checkpoint_io import torch_conv_to_flax
from neural_assets.evaluation.lpips import read_safetensors_files
from neural_assets.evaluation.lpips import shape_template

INPUT_SIZE = 299  # The resolution the Inception graph was trained and FID-calibrated at.
BN_EPS = 1e-3  # torchvision BasicConv2d.


def resize_bilinear(images: jnp.ndarray, size: int) -> jnp.ndarray:
  """[B, H, W, C] -> [B, size, size, C], = torch F.interpolate(bilinear, align_corners=False)."""
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[-1]),
                          method="linear", antialias=False)


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm (inference statistics) -> ReLU (torchvision BasicConv2d)."""
  features: int
  kernel: int | tuple[int, int]
  stride: int = 1
  padding: int | tuple[int, int] = 0

  @nn.compact
  def __call__(self, x):
    ph, pw = _pair(self.padding)
    x = nn.Conv(self.features, _pair(self.kernel), _pair(self.stride),
                padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  # TF's average pool ignores the zero padding (pytorch-fid's count_include_pad=False patch).
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


class InceptionA(nn.Module):
  pool_features: int
  d: int  # Channel divisor.

  @nn.compact
  def __call__(self, x):
    d = self.d
    b1 = BasicConv(64 // d, 1, name="branch1x1")(x)
    b5 = BasicConv(48 // d, 1, name="branch5x5_1")(x)
    b5 = BasicConv(64 // d, 5, padding=2, name="branch5x5_2")(b5)
    b3 = BasicConv(64 // d, 1, name="branch3x3dbl_1")(x)
    b3 = BasicConv(96 // d, 3, padding=1, name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96 // d, 3, padding=1, name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features // d, 1, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  d: int

  @nn.compact
  def __call__(self, x):
    d = self.d
    b3 = BasicConv(384 // d, 3, stride=2, name="branch3x3")(x)
    bd = BasicConv(64 // d, 1, name="branch3x3dbl_1")(x)
    bd = BasicConv(96 // d, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = BasicConv(96 // d, 3, stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int
  d: int

  @nn.compact
  def __call__(self, x):
    d, c7 = self.d, self.channels_7x7 // self.d
    b1 = BasicConv(192 // d, 1, name="branch1x1")(x)
    b7 = BasicConv(c7, 1, name="branch7x7_1")(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv(192 // d, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv(c7, 1, name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv(192 // d, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv(192 // d, 1, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  d: int

  @nn.compact
  def __call__(self, x):
    d = self.d
    b3 = BasicConv(192 // d, 1, name="branch3x3_1")(x)
    b3 = BasicConv(320 // d, 3, stride=2, name="branch3x3_2")(b3)
    b7 = BasicConv(192 // d, 1, name="branch7x7x3_1")(x)
    b7 = BasicConv(192 // d, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192 // d, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192 // d, 3, stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  d: int
  max_pool_branch: bool  # True for FID's Mixed_7c (FIDInceptionE_2), False for Mixed_7b.

  @nn.compact
  def __call__(self, x):
    d = self.d
    b1 = BasicConv(320 // d, 1, name="branch1x1")(x)
    b3 = BasicConv(384 // d, 1, name="branch3x3_1")(x)
    b3 = jnp.concatenate([
        BasicConv(384 // d, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
        BasicConv(384 // d, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = BasicConv(448 // d, 1, name="branch3x3dbl_1")(x)
    bd = BasicConv(384 // d, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([
        BasicConv(384 // d, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
        BasicConv(384 // d, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.max_pool_branch:
      pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = BasicConv(192 // d, 1, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """pool3 features of the FID Inception network.

  Attributes:
    resize_input: resize to 299x299 first (pytorch-fid default; FID is calibrated at 299).
    width_divisor: divides every channel count (1 for the real network; tests use 16).
  """
  resize_input: bool = True
  width_divisor: int = 1

  @nn.compact
  def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
    """images [B, H, W, 3] in [0, 1] -> [B, 2048 // width_divisor] float32."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"Expected images [B, H, W, 3] in [0, 1], got shape {images.shape}.")
    if 16 % self.width_divisor:  # 16 = gcd of all Inception channel counts.
      raise ValueError(f"width_divisor must be 1, 2, 4, 8 or 16, got {self.width_divisor}.")
    d = self.width_divisor
    x = images.astype(jnp.float32)
    if self.resize_input:
      x = resize_bilinear(x, INPUT_SIZE)
    x = 2.0 * x - 1.0
    x = BasicConv(32 // d, 3, stride=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32 // d, 3, name="Conv2d_2a_3x3")(x)
    x = BasicConv(64 // d, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = BasicConv(80 // d, 1, name="Conv2d_3b_1x1")(x)
    x = BasicConv(192 // d, 3, name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, d, name="Mixed_5b")(x)
    x = InceptionA(64, d, name="Mixed_5c")(x)
    x = InceptionA(64, d, name="Mixed_5d")(x)
    x = InceptionB(d, name="Mixed_6a")(x)
    x = InceptionC(128, d, name="Mixed_6b")(x)
    x = InceptionC(160, d, name="Mixed_6c")(x)
    x = InceptionC(160, d, name="Mixed_6d")(x)
    x = InceptionC(192, d, name="Mixed_6e")(x)
    x = InceptionD(d, name="Mixed_7a")(x)
    x = InceptionE(d, max_pool_branch=False, name="Mixed_7b")(x)
    x = InceptionE(d, max_pool_branch=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


_BN_KEYS = {"weight": ("params", "scale"), "bias": ("params", "bias"),
            "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_KEY = re.compile(r"^(?P<path>[\w.]+)\.(?P<layer>conv|bn)\.(?P<leaf>\w+)$")


def convert_fid_inception_state_dict(tensors: dict[str, np.ndarray], width_divisor: int = 1
                                     ) -> dict:
  """pytorch-fid Inception state dict -> Flax variables {'params', 'batch_stats'}."""
  converted = {}
  for key, value in tensors.items():
    value = np.asarray(value)
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
      continue  # Classifier head (unused by FID) and a BatchNorm training counter.
    match = _KEY.match(key)
    if not match:
      raise CheckpointMismatchError(f"FID Inception checkpoint key {key!r} is not a conv/bn "
                                    "parameter of the network.")
    path = tuple(match["path"].split("."))
    if match["layer"] == "conv":
      if match["leaf"] != "weight":
        raise CheckpointMismatchError(f"Unexpected conv parameter {key!r} (convs have no bias).")
      converted[("params",) + path + ("conv", "kernel")] = torch_conv_to_flax(
          value.astype(np.float32))
    else:
      if match["leaf"] not in _BN_KEYS:
        raise CheckpointMismatchError(f"Unexpected BatchNorm parameter {key!r}.")
      collection, leaf = _BN_KEYS[match["leaf"]]
      converted[(collection,) + path + ("bn", leaf)] = value.astype(np.float32)
  module = FIDInceptionV3(width_divisor=width_divisor)
  shapes = jax.eval_shape(module.init, jax.random.key(0),
                          jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  return fill_params(shape_template(dict(shapes)), converted, "FID Inception")


def load_fid_inception(path: str, width_divisor: int = 1) -> tuple[FIDInceptionV3, dict]:
  """Reads the safetensors FID Inception weights -> (module, variables)."""
  tensors = read_safetensors_files(path, "FID Inception")
  return (FIDInceptionV3(width_divisor=width_divisor),
          convert_fid_inception_state_dict(tensors, width_divisor))
