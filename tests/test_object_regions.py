"""Object crops against PIL's box resize; validity and square boxes."""
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from neural_assets.evaluation import object_regions


def _pil_crop(image, px_box, size):
  """PIL reference: antialiased bilinear resize of the continuous box, channel by channel."""
  y0, x0, y1, x1 = [float(v) for v in px_box]
  return np.stack([np.asarray(Image.fromarray(image[..., c], mode="F").resize(
      (size, size), Image.BILINEAR, box=(x0, y0, x1, y1))) for c in range(image.shape[-1])], -1)


def test_crops_match_pil_box_resize():
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 1, (2, 40, 52, 3)).astype(np.float32)
  boxes = np.array([[[0.1, 0.2, 0.6, 0.5], [0.0, 0.0, 1.0, 1.0], [0.33, 0.41, 0.47, 0.58]],
                    [[0.25, 0.25, 0.75, 0.75], [0.5, 0.1, 0.9, 0.95], [0.05, 0.6, 0.3, 0.7]]],
                   np.float32)
  for size in (16, 9):  # Down- and up-sampling boxes.
    crops = np.asarray(object_regions.crop_boxes(images, boxes, size))
    assert crops.shape == (2, 3, size, size, 3)
    for b in range(2):
      for n in range(3):
        px = boxes[b, n] * np.array([40, 52, 40, 52])
        np.testing.assert_allclose(crops[b, n], _pil_crop(images[b], px, size), atol=2e-5,
                                   err_msg=f"box {b},{n} size {size}")


def test_integer_box_at_native_size_is_exact_crop():
  images = np.random.default_rng(1).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
  boxes = np.array([[[8 / 32, 4 / 32, 24 / 32, 20 / 32]]], np.float32)
  crops = object_regions.crop_boxes(images, boxes, 16)
  np.testing.assert_allclose(crops[0, 0], images[0, 8:24, 4:20], atol=1e-6)


def test_valid_objects_and_square_boxes():
  boxes = jnp.array([[[0.1, 0.1, 0.5, 0.2], [0.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.3, 0.3],
                      [-0.5, 0.9, 0.5, 1.5]]])
  mask = jnp.array([[True, True, False, True]])
  valid = object_regions.valid_objects(boxes, mask, 100, 100, min_box_pixels=2.0)
  np.testing.assert_array_equal(valid, [[True, False, False, True]])
  px = object_regions.pixel_boxes(boxes, 100, 100)
  np.testing.assert_allclose(px[0, 3], [0, 90, 50, 100])  # Clipped to the image.
  sq = object_regions.square_pixel_boxes(px, 100, 100)
  # 40x10 -> 40x40 about the centre x=15, then shifted right to start at the image edge.
  np.testing.assert_allclose(sq[0, 0], [10, 0, 50, 40], atol=1e-5)
  np.testing.assert_allclose(sq[0, 3], [0, 50, 50, 100], atol=1e-5)  # Shifted back inside.


def test_bad_boxes_raise():
  with pytest.raises(ValueError, match=r"\[B, N, 4\]"):
    object_regions.crop_boxes(jnp.zeros((2, 8, 8, 3)), jnp.zeros((2, 4)), 4)
  with pytest.raises(ValueError, match="slot_mask"):
    object_regions.valid_objects(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), bool), 8, 8, 1.0)
