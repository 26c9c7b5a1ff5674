"""RoIAlign against a direct, loop-by-loop numpy evaluation of the detection op's definition."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neural_assets.models.roi_align import roi_align


def _bilinear(fmap, y, x):
  """torchvision / detectron2 `bilinear_interpolate` on one [H, W, C] map."""
  height, width = fmap.shape[:2]
  if y < -1.0 or y > height or x < -1.0 or x > width:
    return np.zeros(fmap.shape[-1])
  y, x = max(y, 0.0), max(x, 0.0)
  y_low, x_low = int(y), int(x)
  if y_low >= height - 1:
    y_low = y_high = height - 1
    y = float(y_low)
  else:
    y_high = y_low + 1
  if x_low >= width - 1:
    x_low = x_high = width - 1
    x = float(x_low)
  else:
    x_high = x_low + 1
  ly, lx = y - y_low, x - x_low
  hy, hx = 1.0 - ly, 1.0 - lx
  return (hy * hx * fmap[y_low, x_low] + hy * lx * fmap[y_low, x_high]
          + ly * hx * fmap[y_high, x_low] + ly * lx * fmap[y_high, x_high])


def _reference(features, boxes, valid, out_hw, ratio, aligned):
  """ratio <= 0: adaptive, ceil(roi size / bins) samples per bin along each axis (torchvision)."""
  batch, height, width, chans = features.shape
  num = boxes.shape[1]
  out = np.zeros((batch, num, *out_hw, chans))
  offset = 0.5 if aligned else 0.0
  for b in range(batch):
    for n in range(num):
      if not valid[b, n]:
        continue
      y0, x0, y1, x1 = boxes[b, n]
      start_h, start_w = y0 * height - offset, x0 * width - offset
      roi_h, roi_w = y1 * height - offset - start_h, x1 * width - offset - start_w
      if not aligned:
        roi_h, roi_w = max(roi_h, 1.0), max(roi_w, 1.0)
      bin_h, bin_w = roi_h / out_hw[0], roi_w / out_hw[1]
      grid_h = ratio if ratio > 0 else int(np.ceil(roi_h / out_hw[0]))
      grid_w = ratio if ratio > 0 else int(np.ceil(roi_w / out_hw[1]))
      count = max(grid_h * grid_w, 1)
      for ph in range(out_hw[0]):
        for pw in range(out_hw[1]):
          acc = np.zeros(chans)
          for iy in range(grid_h):
            yy = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
            for ix in range(grid_w):
              xx = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
              acc += _bilinear(features[b], yy, xx)
          out[b, n, ph, pw] = acc / count
  return out


# Boxes [y0, x0, y1, x1], normalised: interior, touching the edges, partly and fully outside,
# sub-pixel, degenerate (zero size) and inverted.
_BOXES = np.array([
    [0.1, 0.2, 0.7, 0.9],
    [0.0, 0.0, 1.0, 1.0],
    [-0.3, 0.6, 0.4, 1.4],
    [0.95, 0.95, 1.2, 1.3],
    [0.41, 0.52, 0.43, 0.55],
    [0.5, 0.5, 0.5, 0.5],
    [0.8, 0.7, 0.3, 0.2],
    [-0.5, -0.5, -0.2, -0.1],
    [1.05, 0.1, 1.3, 0.4],
], np.float64)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio,out_hw", [(1, (2, 2)), (2, (2, 2)), (3, (3, 4)), (2, (7, 5)),
                                          (0, (2, 2)), (-1, (3, 4)), (0, (7, 5))])
def test_matches_reference(aligned, ratio, out_hw):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(2, 9, 13, 3))
  boxes = np.stack([_BOXES, _BOXES[::-1]])
  valid = np.ones(boxes.shape[:2], bool)
  valid[1, 2] = False
  expected = _reference(features, boxes, valid, out_hw, ratio, aligned)
  got = roi_align(jnp.asarray(features, jnp.float32), jnp.asarray(boxes, jnp.float32),
                  jnp.asarray(valid), out_hw, ratio, aligned)
  assert got.shape == (2, len(_BOXES), *out_hw, 3)
  np.testing.assert_allclose(np.asarray(got), expected, atol=2e-5, rtol=1e-5)
  # Invalid boxes are exactly zero.
  assert np.all(np.asarray(got[1, 2]) == 0.0)


def test_random_boxes_jit():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(3, 6, 5, 4))
  corners = rng.uniform(-0.2, 1.2, size=(3, 11, 2, 2))
  boxes = np.concatenate([corners.min(2), corners.max(2)], -1)
  valid = rng.uniform(size=(3, 11)) > 0.3
  fn = jax.jit(roi_align, static_argnums=(3, 4, 5))
  got = fn(jnp.asarray(features, jnp.float32), jnp.asarray(boxes, jnp.float32),
           jnp.asarray(valid), (2, 2), 2, True)
  expected = _reference(features, boxes, valid, (2, 2), 2, True)
  np.testing.assert_allclose(np.asarray(got), expected, atol=2e-5, rtol=1e-5)


def test_constant_map_inside_is_constant():
  # Any box well inside a constant map pools to that constant (weights sum to one).
  features = jnp.full((1, 8, 8, 2), 3.5)
  boxes = jnp.array([[[0.2, 0.3, 0.6, 0.55], [0.1, 0.1, 0.101, 0.102]]])
  got = roi_align(features, boxes, None, (2, 2), 2, True)
  np.testing.assert_allclose(np.asarray(got), 3.5, rtol=1e-6)


def test_gradients_finite():
  rng = np.random.default_rng(2)
  features = jnp.asarray(rng.normal(size=(2, 7, 7, 3)), jnp.float32)
  boxes = jnp.asarray(np.stack([_BOXES, _BOXES]), jnp.float32)
  valid = jnp.ones(boxes.shape[:2], bool)

  def loss(f, b):
    return jnp.sum(roi_align(f, b, valid, (2, 2), 2, True) ** 2)

  gf, gb = jax.grad(loss, argnums=(0, 1))(features, boxes)
  assert np.all(np.isfinite(np.asarray(gf))) and np.all(np.isfinite(np.asarray(gb)))
  assert np.abs(np.asarray(gf)).sum() > 0 and np.abs(np.asarray(gb)).sum() > 0
  # Box gradient of an interior box against central finite differences.
  eps = 1e-3
  delta = jnp.zeros_like(boxes).at[0, 0, 1].set(eps)
  numeric = (loss(features, boxes + delta) - loss(features, boxes - delta)) / (2 * eps)
  np.testing.assert_allclose(float(gb[0, 0, 1]), float(numeric), rtol=2e-2, atol=1e-3)


def test_adaptive_global_box_reads_every_feature():
  # Aligned, adaptive: the global box's 2x2 bins of a 28x28 map take 14x14 samples each, at the
  # pixel centres, so each bin is exactly its quadrant's mean (a fixed ratio of 2 reads 16 of
  # the 784 features).
  rng = np.random.default_rng(3)
  features = rng.normal(size=(1, 28, 28, 2))
  got = np.asarray(roi_align(jnp.asarray(features, jnp.float32),
                             jnp.array([[[0.0, 0.0, 1.0, 1.0]]]), None, (2, 2), 0, True))
  quadrants = features[0].reshape(2, 14, 2, 14, 2).mean(axis=(1, 3))
  np.testing.assert_allclose(got[0, 0], quadrants, atol=1e-5)
  fixed = np.asarray(roi_align(jnp.asarray(features, jnp.float32),
                               jnp.array([[[0.0, 0.0, 1.0, 1.0]]]), None, (2, 2), 2, True))
  assert np.abs(fixed[0, 0] - quadrants).max() > 1e-2


def test_adaptive_jit_and_empty_box_is_zero():
  rng = np.random.default_rng(4)
  features = rng.normal(size=(2, 10, 12, 3))
  corners = rng.uniform(0.0, 1.0, size=(2, 6, 2, 2))
  boxes = np.concatenate([corners.min(2), corners.max(2)], -1)
  boxes[0, 0] = 0.0  # an empty (all-zero) box reads nothing
  fn = jax.jit(roi_align, static_argnums=(3, 4, 5))
  got = fn(jnp.asarray(features, jnp.float32), jnp.asarray(boxes, jnp.float32), None, (2, 2), 0,
           True)
  np.testing.assert_allclose(np.asarray(got), _reference(features, boxes, np.ones((2, 6), bool),
                                                         (2, 2), 0, True), atol=2e-5, rtol=1e-5)
  assert np.all(np.asarray(got[0, 0]) == 0.0)


def test_rejects_non_int_sampling_ratio():
  with pytest.raises(ValueError, match="sampling_ratio"):
    roi_align(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 1, 4)), None, (2, 2), 2.0, True)


def test_rejects_bad_shapes():
  with pytest.raises(ValueError, match="boxes"):
    roi_align(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 1, 3)), None, (2, 2), 2, True)
  with pytest.raises(ValueError, match="features"):
    roi_align(jnp.zeros((4, 4, 1)), jnp.zeros((1, 1, 4)), None, (2, 2), 2, True)
