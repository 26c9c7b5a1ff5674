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
