"""Evaluator: accumulation over batches against per-item references (skimage, PIL, scipy)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from PIL import Image
from safetensors.numpy import save_file
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from neural_assets.evaluation import Evaluator
from neural_assets.evaluation import default_config
from neural_assets.evaluation import lpips as lpips_lib

H, W, S = 32, 40, 32  # AlexNet LPIPS needs >= 31 px (images and crops).


def _batches(seed, count=2, batch=3, slots=4):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    tgt = rng.integers(0, 256, (batch, H, W, 3), dtype=np.uint8)
    gen = np.clip(tgt / 127.5 - 1 + rng.normal(0, 0.2, tgt.shape), -1, 1).astype(np.float32)
    y0, x0 = rng.uniform(0, 0.5, (2, batch, slots))
    hh, ww = rng.uniform(0.2, 0.5, (2, batch, slots))
    boxes = np.stack([y0, x0, y0 + hh, x0 + ww], -1).astype(np.float32)
    mask = rng.uniform(size=(batch, slots)) < 0.7
    boxes[~mask] = 0.0  # Padded slots have zero boxes.
    boxes[0, 0] = [0.1, 0.1, 0.1, 0.5]  # Degenerate (zero height): never counted.
    mask[0, 0] = True
    out.append((gen, tgt, boxes, mask))
  return out


def _config(**kw):
  config = default_config()
  config.object.crop_size = S
  config.network_batch_size = 4
  for k, v in kw.items():
    setattr(config, k, v)
  return config


def _pil_crop(image, box, size):
  y0, x0, y1, x1 = np.clip(box, 0, 1) * np.array([H, W, H, W])
  return np.stack([np.asarray(Image.fromarray(image[..., c], mode="F").resize(
      (size, size), Image.BILINEAR, box=(x0, y0, x1, y1))) for c in range(3)], -1)


def _reference_items(batches):
  """[0, 1] image pairs and object-crop pairs, computed independently of the Evaluator."""
  images, crops = [], []
  for gen, tgt, boxes, mask in batches:
    g01, t01 = (gen + 1) / 2, tgt.astype(np.float32) / 255
    for b in range(gen.shape[0]):
      images.append((g01[b], t01[b]))
      for n in range(boxes.shape[1]):
        y0, x0, y1, x1 = np.clip(boxes[b, n], 0, 1) * np.array([H, W, H, W])
        if mask[b, n] and y1 - y0 >= 2 and x1 - x0 >= 2:
          crops.append((_pil_crop(g01[b], boxes[b, n], S), _pil_crop(t01[b], boxes[b, n], S)))
  return images, crops


def _sk(pairs):
  psnr = np.mean([peak_signal_noise_ratio(t, g, data_range=1.0) for g, t in pairs])
  ssim = np.mean([structural_similarity(t, g, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0,
                                        channel_axis=-1) for g, t in pairs])
  return psnr, ssim


def test_pixel_metrics_image_and_object_level():
  batches = _batches(0)
  ev = Evaluator(_config())
  for batch in batches:
    ev.update(*batch)
  res = ev.result()
  images, crops = _reference_items(batches)
  assert res["image/count"] == 6 and res["object/count"] == len(crops) > 4
  # LPIPS is scored by default, with the installed pretrained AlexNet weights.
  assert set(res) == {"image/count", "object/count", "image/psnr", "image/ssim", "object/psnr",
                      "object/ssim", "image/lpips", "object/lpips"}
  pretrained = lpips_lib.distance_fn("pretrained", "alex")
  for level, pairs in (("image", images), ("object", crops)):
    g, t = (np.stack(a).astype(np.float32) for a in zip(*pairs))
    np.testing.assert_allclose(res[f"{level}/lpips"], np.mean(pretrained(g, t)), rtol=1e-4)
  psnr, ssim = _sk(images)
  np.testing.assert_allclose([res["image/psnr"], res["image/ssim"]], [psnr, ssim], rtol=1e-5)
  psnr, ssim = _sk(crops)
  np.testing.assert_allclose([res["object/psnr"], res["object/ssim"]], [psnr, ssim], rtol=2e-4)
  ev.reset()
  assert ev.result() == {"image/count": 0, "object/count": 0}


def _scipy_fid(f1, f2):
  s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
  return (np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.trace(s1) + np.trace(s2)
          - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))


def test_network_metrics_with_given_functions(tmp_path):
  # Tiny stand-ins: a random-weight LPIPS, a random feature map for FID and DINO.
  module = lpips_lib.LPIPS(net="vgg", width_divisor=16)
  z = jnp.zeros((1, S, S, 3))
  params = jax.jit(module.init)(jax.random.key(0), z, z)["params"]
  lpips_fn = jax.jit(lambda x, y: lpips_lib.lpips_distance_unit(module, params, x, y))
  proj = jax.random.normal(jax.random.key(1), (3 * 4 * 4, 5))

  @jax.jit
  def features(x):  # [B, h, w, 3] -> [B, 5]: 4x4 pooled pixels, projected.
    pooled = jax.image.resize(x, (x.shape[0], 4, 4, 3), "linear")
    return jnp.tanh(pooled.reshape(x.shape[0], -1) @ proj)

  batches = _batches(1)
  ev = Evaluator(_config(), lpips_fn=lpips_fn, inception_fn=features, dino_fn=features)
  assert ev.metric_names == ["psnr", "ssim", "lpips", "fid", "dino"]
  for batch in batches:
    ev.update(*batch)
  res = ev.result()
  images, crops = _reference_items(batches)
  for level, pairs in (("image", images), ("object", crops)):
    g, t = (np.stack(x) for x in zip(*pairs))
    tol = dict(rtol=1e-5) if level == "image" else dict(rtol=5e-5)  # PIL vs JAX crops.
    np.testing.assert_allclose(res[f"{level}/lpips"], np.mean(lpips_fn(g, t)), **tol)
    fg, ft = np.asarray(features(g), np.float64), np.asarray(features(t), np.float64)
    cos = np.sum(fg * ft, 1) / np.linalg.norm(fg, axis=1) / np.linalg.norm(ft, axis=1)
    np.testing.assert_allclose(res[f"{level}/dino"], cos.mean(), **tol)
    np.testing.assert_allclose(res[f"{level}/fid"], _scipy_fid(fg, ft), **tol)


def test_weights_from_config_paths(tmp_path):
  module = lpips_lib.LPIPS(net="alex")
  z = jnp.zeros((1, H, W, 3))
  params = jax.jit(module.init)(jax.random.key(0), z, z)["params"]
  # Save the params in the lpips package layout, as a user's converted checkpoint would be.
  slice_of = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
  state = {}
  for name, leaf in params.items():
    kernel = np.transpose(np.asarray(leaf["kernel"]), (3, 2, 0, 1))
    if name.startswith("lin"):
      state[f"{name}.model.1.weight"] = np.abs(kernel)
    else:
      index = int(name.split("_")[1])
      state[f"net.slice{slice_of[index]}.{index}.weight"] = kernel
      state[f"net.slice{slice_of[index]}.{index}.bias"] = np.asarray(leaf["bias"])
  path = str(tmp_path / "lpips.safetensors")
  save_file(state, path)
  config = _config(levels=("image",))
  config.lpips.weights = path
  ev = Evaluator(config)
  assert ev.metric_names == ["psnr", "ssim", "lpips"]
  gen, tgt, _, _ = _batches(3, count=1)[0]
  ev.update(gen, tgt)
  _, loaded = lpips_lib.load_lpips(path)
  want = module.apply({"params": loaded}, gen, tgt.astype(np.float32) / 127.5 - 1)
  np.testing.assert_allclose(ev.result()["image/lpips"], np.mean(want), rtol=1e-5)

  config.lpips.weights = str(tmp_path / "missing.safetensors")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    Evaluator(config)
  config.lpips.weights = ""  # Neither "pretrained", "none" nor a file: refused, not skipped.
  with pytest.raises(ValueError, match="expected 'pretrained', 'none'"):
    Evaluator(config)
  config.lpips.weights = "none"
  assert Evaluator(config).metric_names == ["psnr", "ssim"]
  config.fid.weights = str(tmp_path / "missing_inception.safetensors")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    Evaluator(config)
  config.fid.weights = ""
  config.dino.checkpoint_dir = str(tmp_path / "no_dino")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    Evaluator(config)


def test_bad_inputs_raise():
  ev = Evaluator(_config())
  gen, tgt, boxes, mask = _batches(2, count=1)[0]
  with pytest.raises(ValueError, match="outside"):
    ev.update(gen * 2.0, tgt, boxes, mask)
  with pytest.raises(ValueError, match="NaN"):
    ev.update(np.full_like(gen, np.nan), tgt, boxes, mask)
  with pytest.raises(ValueError, match="target_boxes and slot_mask"):
    ev.update(gen, tgt)
  with pytest.raises(ValueError, match="slot_mask"):
    ev.update(gen, tgt, boxes, mask[:, :2])
  with pytest.raises(ValueError, match="shapes differ"):
    ev.update(gen[:, :16], tgt, boxes, mask)
  with pytest.raises(ValueError, match="levels"):
    Evaluator(_config(levels=("scene",)))
  small = _config()
  small.object.crop_size = 8
  with pytest.raises(ValueError, match="SSIM window"):
    Evaluator(small)
