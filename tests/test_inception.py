"""FID Inception parity against a PyTorch reference built here from torch.nn layers.

The reference follows torchvision's Inception3 blocks (BasicConv2d, InceptionA-E) with
pytorch-fid's patches (FIDInceptionA/C/E_1: avg pools with count_include_pad=False;
FIDInceptionE_2: 3x3 max pool) and pytorch_fid.InceptionV3's forward (bilinear resize to 299,
2x-1, blocks 0-3, adaptive average pool), module names as in the real state dict. Channels are
divided by 16 to keep the test fast (the code path is the same); weights and BatchNorm
statistics are random.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from neural_assets.convert.checkpoint_io import CheckpointMismatchError
from neural_assets.evaluation import inception

D = 16


class BasicConv2d(nn.Module):

  def __init__(self, cin, cout, **kw):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _avg(x):
  return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):

  def __init__(self, cin, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 64 // D, kernel_size=1)
    self.branch5x5_1 = BasicConv2d(cin, 48 // D, kernel_size=1)
    self.branch5x5_2 = BasicConv2d(48 // D, 64 // D, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64 // D, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64 // D, 96 // D, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96 // D, 96 // D, kernel_size=3, padding=1)
    self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

  def forward(self, x):
    return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                      self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                      self.branch_pool(_avg(x))], 1)


class InceptionB(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = BasicConv2d(cin, 384 // D, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64 // D, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64 // D, 96 // D, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96 // D, 96 // D, kernel_size=3, stride=2)

  def forward(self, x):
    return torch.cat([self.branch3x3(x),
                      self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                      F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):

  def __init__(self, cin, c7):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 192 // D, kernel_size=1)
    self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192 // D, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192 // D, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(cin, 192 // D, kernel_size=1)

  def forward(self, x):
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for i in range(2, 6):
      bd = getattr(self, f"branch7x7dbl_{i}")(bd)
    return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg(x))], 1)


class InceptionD(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(cin, 192 // D, kernel_size=1)
    self.branch3x3_2 = BasicConv2d(192 // D, 320 // D, kernel_size=3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(cin, 192 // D, kernel_size=1)
    self.branch7x7x3_2 = BasicConv2d(192 // D, 192 // D, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192 // D, 192 // D, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192 // D, 192 // D, kernel_size=3, stride=2)

  def forward(self, x):
    b7 = x
    for i in range(1, 5):
      b7 = getattr(self, f"branch7x7x3_{i}")(b7)
    return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                      F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):

  def __init__(self, cin, use_max_pool):
    super().__init__()
    self.use_max_pool = use_max_pool
    self.branch1x1 = BasicConv2d(cin, 320 // D, kernel_size=1)
    self.branch3x3_1 = BasicConv2d(cin, 384 // D, kernel_size=1)
    self.branch3x3_2a = BasicConv2d(384 // D, 384 // D, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384 // D, 384 // D, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(cin, 448 // D, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(448 // D, 384 // D, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384 // D, 384 // D, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384 // D, 384 // D, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(cin, 192 // D, kernel_size=1)

  def forward(self, x):
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    if self.use_max_pool:
      pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    else:
      pooled = _avg(x)
    return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class FIDInception(nn.Module):

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32 // D, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32 // D, 32 // D, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32 // D, 64 // D, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64 // D, 80 // D, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80 // D, 192 // D, kernel_size=3)
    self.Mixed_5b = FIDInceptionA(192 // D, 32 // D)
    self.Mixed_5c = FIDInceptionA(256 // D, 64 // D)
    self.Mixed_5d = FIDInceptionA(288 // D, 64 // D)
    self.Mixed_6a = InceptionB(288 // D)
    self.Mixed_6b = FIDInceptionC(768 // D, 128 // D)
    self.Mixed_6c = FIDInceptionC(768 // D, 160 // D)
    self.Mixed_6d = FIDInceptionC(768 // D, 160 // D)
    self.Mixed_6e = FIDInceptionC(768 // D, 192 // D)
    self.Mixed_7a = InceptionD(768 // D)
    self.Mixed_7b = FIDInceptionE(1280 // D, use_max_pool=False)
    self.Mixed_7c = FIDInceptionE(2048 // D, use_max_pool=True)
    self.fc = nn.Linear(2048 // D, 1008)

  def forward(self, x):  # pytorch_fid.InceptionV3(output_blocks=[3]).forward
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    x = F.max_pool2d(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))), 3, 2)
    x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
    for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
      x = getattr(self, f"Mixed_{name}")(x)
    return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def _reference(seed):
  torch.manual_seed(seed)
  model = FIDInception().eval()
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d):  # Variance-preserving, so deep features stay O(1).
        fan_in = m.weight[0].numel()
        m.weight.normal_(0, (2.0 / fan_in) ** 0.5)
      if isinstance(m, nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 2.0)
  return model


def test_resize_matches_torch_interpolate():
  x = np.random.default_rng(0).uniform(0, 1, (2, 50, 37, 3)).astype(np.float32)
  for size in (23, 80):  # Down and up.
    want = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(size, size),
                         mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(inception.resize_bilinear(x, size), want, atol=1e-5)


def test_parity_with_pytorch_fid_structure(tmp_path):
  ref = _reference(0)
  state = {k: v.contiguous() for k, v in ref.state_dict().items()}
  assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state and "fc.weight" in state
  path = str(tmp_path / "pt_inception.safetensors")
  save_file(state, path)
  module, variables = inception.load_fid_inception(path, width_divisor=D)
  images = np.random.default_rng(1).uniform(0, 1, (2, 64, 48, 3)).astype(np.float32)
  got = np.asarray(module.apply(variables, images))
  with torch.no_grad():
    want = ref(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
  assert got.shape == (2, 2048 // D) and np.abs(want).mean() > 1e-2
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_loader_errors(tmp_path):
  ref = _reference(0)
  state = {k: v.contiguous() for k, v in ref.state_dict().items()}
  save_file(state, str(tmp_path / "a.safetensors"))
  with pytest.raises(CheckpointMismatchError, match="shape"):
    inception.load_fid_inception(str(tmp_path / "a.safetensors"), width_divisor=8)
  del state["Mixed_6a.branch3x3.bn.running_mean"]
  save_file(state, str(tmp_path / "b.safetensors"))
  with pytest.raises(CheckpointMismatchError, match="Mixed_6a/branch3x3/bn/mean"):
    inception.load_fid_inception(str(tmp_path / "b.safetensors"), width_divisor=D)
