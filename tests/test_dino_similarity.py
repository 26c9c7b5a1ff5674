"""DINO similarity: feature extraction against transformers' ViTModel; cosine similarity."""
import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from neural_assets.evaluation import dino_similarity

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _tiny_vit(tmp_path):
  torch.manual_seed(0)
  config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, image_size=32, patch_size=8)
  model = transformers.ViTModel(config, add_pooling_layer=False).eval()
  model.save_pretrained(str(tmp_path))
  return model


def _reference_features(model, images, size, pooling):
  """transformers' DINO preprocessing (PIL bilinear resize, ImageNet norm) + ViTModel."""
  pixels = []
  for img in images:
    chans = [np.asarray(Image.fromarray(img[..., c], mode="F").resize((size, size),
                                                                      Image.BILINEAR))
             for c in range(3)]
    pixels.append((np.stack(chans, -1) - np.array(MEAN)) / np.array(STD))
  x = torch.from_numpy(np.stack(pixels).astype(np.float32)).permute(0, 3, 1, 2)
  with torch.no_grad():
    hidden = model(pixel_values=x).last_hidden_state.numpy()
  return hidden[:, 0] if pooling == "cls" else hidden[:, 1:].mean(1)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_features_match_transformers(tmp_path, pooling):
  model = _tiny_vit(tmp_path)
  images = np.random.default_rng(0).uniform(0, 1, (3, 48, 40, 3)).astype(np.float32)
  fn = dino_similarity.load_dino_feature_fn(str(tmp_path), image_size=32, image_mean=MEAN,
                                            image_std=STD, pooling=pooling)
  got = np.asarray(fn(images))
  want = _reference_features(model, images, 32, pooling)
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_cosine_similarity():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
  want = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
  np.testing.assert_allclose(dino_similarity.cosine_similarity(a, b), want, rtol=1e-5)
  np.testing.assert_allclose(dino_similarity.cosine_similarity(a, 3 * a), 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match=r"\[B, D\]"):
    dino_similarity.cosine_similarity(a, b[:2])


def test_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    dino_similarity.load_dino_feature_fn(str(tmp_path / "nope"), image_size=32, image_mean=MEAN,
                                         image_std=STD)
  with pytest.raises(ValueError, match="pooling"):
    dino_similarity.make_vit_feature_fn(lambda x: x, image_size=8, image_mean=MEAN,
                                        image_std=STD, pooling="max")
