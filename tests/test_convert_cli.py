"""`python -m neural_assets.convert`: SD + DINO folders -> one orbax checkpoint for training."""
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import torch_reference

from neural_assets import convert
from neural_assets.convert import __main__ as convert_cli

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """A diffusers pipeline root (unet/, vae/) and a transformers DINO folder, tiny and random."""
  root = tmp_path_factory.mktemp("ckpts")
  unet = diffusers.UNet2DConditionModel(
      sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
      layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=(2, 4),
      cross_attention_dim=32, norm_num_groups=8, use_linear_projection=True)
  torch_reference.randomise(unet, 0)
  unet.save_pretrained(root / "sd" / "unet", safe_serialization=True)
  vae = diffusers.AutoencoderKL(
      in_channels=3, out_channels=3, block_out_channels=(16, 32, 32), layers_per_block=1,
      down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
      latent_channels=4, norm_num_groups=8)
  torch_reference.randomise(vae, 1)
  vae.save_pretrained(root / "sd" / "vae", safe_serialization=True)
  vit = transformers.ViTModel(transformers.ViTConfig(
      hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
      patch_size=8, image_size=32), add_pooling_layer=False)
  torch_reference.randomise(vit, 2)
  vit.save_pretrained(root / "dino", safe_serialization=True)
  return root


def _smoke_config():
  from configs import smoke  # pylint: disable=g-import-not-at-top
  return smoke.get_config()


def test_cli_writes_checkpoint_matching_loaders(checkpoints, tmp_path):
  out = tmp_path / "init"
  argv = [f"--sd_dir={checkpoints / 'sd'}", f"--encoder_dir={checkpoints / 'dino'}",
          f"--out_dir={out}"]
  convert_cli.main(argv)
  restored = ocp.StandardCheckpointer().restore(os.path.abspath(out))
  assert set(restored) == {"unet", "tokenizer", "vae"}
  assert set(restored["tokenizer"]) == {"encoder"}
  unet = convert.load_diffusers_unet(str(checkpoints / "sd" / "unet"))
  want = unet.params["down_blocks_0"]
  got = restored["unet"]["down_blocks_0"]
  np.testing.assert_array_equal(
      np.asarray(got["resnets_0"]["conv1"]["kernel"]),
      np.asarray(want["resnets_0"]["conv1"]["kernel"]))
  with pytest.raises(FileExistsError, match="nothing is overwritten"):
    convert_cli.main(argv)


def test_config_check_names_first_difference(checkpoints, tmp_path):
  config = _smoke_config()
  tree = convert_cli.convert_checkpoints(
      str(checkpoints / "sd" / "unet"), str(checkpoints / "sd" / "vae"),
      str(checkpoints / "dino"), str(tmp_path / "ok"), config)
  assert tree["unet"]["conv_in"]["kernel"].shape == (3, 3, 4, 32)
  config.model.unet.layers_per_block = 2
  with pytest.raises(convert.CheckpointMismatchError, match="layers_per_block=1 .* layers_per"):
    convert_cli.convert_checkpoints(
        str(checkpoints / "sd" / "unet"), str(checkpoints / "sd" / "vae"),
        str(checkpoints / "dino"), str(tmp_path / "bad"), config)
  assert not os.path.exists(tmp_path / "bad")


def _copy_checkpoints(checkpoints, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "ckpts"
  shutil.copytree(checkpoints, copy)
  return copy


def test_nan_weights_are_refused_naming_file_and_tensor(checkpoints, tmp_path, capsys):
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  copy = _copy_checkpoints(checkpoints, tmp_path)
  path = copy / "sd" / "vae" / "diffusion_pytorch_model.safetensors"
  tensors = load_file(str(path))
  name = sorted(k for k in tensors if tensors[k].dtype.kind == "f")[0]
  tensors[name] = tensors[name].copy()
  tensors[name].flat[0] = np.nan
  tensors[name].flat[-1] = np.inf
  save_file(tensors, str(path))
  argv = [f"--sd_dir={copy / 'sd'}", f"--encoder_dir={copy / 'dino'}",
          f"--out_dir={tmp_path / 'out'}"]
  with pytest.raises(convert.CorruptWeightsError,
                     match=f"{path} holds NaN/Inf values in 1 tensor\\(s\\): {name} \\(2 of "):
    convert_cli.main(argv)
  assert convert_cli.cli(argv) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and str(path) in err
  assert not os.path.exists(tmp_path / "out")


def test_damaged_safetensors_is_one_line_naming_the_file(checkpoints, tmp_path, capsys):
  copy = _copy_checkpoints(checkpoints, tmp_path)
  path = copy / "dino" / "model.safetensors"
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])  # Truncated download.
  argv = [f"--sd_dir={copy / 'sd'}", f"--encoder_dir={copy / 'dino'}",
          f"--out_dir={tmp_path / 'out'}"]
  assert convert_cli.cli(argv) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert f"{path} is not a readable safetensors file" in err and "damaged" in err
  path.write_bytes(b"\x13" * 64)  # Garbage header.
  assert convert_cli.cli(argv) == 2
  assert f"{path} is not a readable safetensors file" in capsys.readouterr().err
