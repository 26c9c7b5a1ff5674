"""Tests of data_pipelines.frame_pairs on synthetic videos with known geometry."""
import io
import struct
import zlib

import imagecodecs
import jax.numpy as jnp
import numpy as np
from PIL import Image
from PIL import PngImagePlugin
import pytest

from data_pipelines import frame_pairs as fp
from data_pipelines import image_decoding
from data_pipelines.video_record import CorruptRecordError
from neural_assets import geometry
from tests import frame_pairs_reference as reference
from tests import video_fixtures

# Two well separated objects (no overlap in any frame) for pixel-level checks.
_SEPARATED = dict(centers=[[-1.0, -0.2, 5.0], [1.1, 0.3, 5.5]],
                  sizes=[[0.8, 0.9, 0.7], [0.7, 0.6, 0.8]])


def _cfg(**kw):
  base = dict(resolution=(32, 32), max_objects=4)
  base.update(kw)
  return fp.FramePairConfig(**base)


def _counts(counts):
  return dict(zip(fp.OBJECT_COUNT_NAMES, counts.tolist()))


@pytest.mark.parametrize("min_gap,max_gap", [(0, 0), (0, None), (2, 3), (1, 100)])
def test_sample_frame_pair_respects_gap_range(min_gap, max_gap):
  num_frames = 6
  rng = np.random.default_rng(0)
  pairs = np.array([fp.sample_frame_pair(num_frames, min_gap, max_gap, 0.5, rng)
                    for _ in range(600)])
  gaps = np.abs(pairs[:, 1] - pairs[:, 0])
  top = num_frames - 1 if max_gap is None else min(max_gap, num_frames - 1)
  assert pairs.min() >= 0 and pairs.max() < num_frames
  assert gaps.min() == min_gap and gaps.max() == top  # Both ends of the range are reached.
  assert set(np.unique(gaps)) == set(range(min_gap, top + 1))
  if top > 0:
    swapped = np.mean(pairs[gaps > 0, 0] > pairs[gaps > 0, 1])
    assert 0.4 < swapped < 0.6
    # Every frame is used as a source somewhere.
    assert set(np.unique(pairs[:, 0])) == set(range(num_frames))


def test_sample_frame_pair_no_swap_and_too_short():
  rng = np.random.default_rng(1)
  pairs = np.array([fp.sample_frame_pair(5, 0, None, 0.0, rng) for _ in range(100)])
  assert np.all(pairs[:, 0] <= pairs[:, 1])
  with pytest.raises(CorruptRecordError, match="frame gap"):
    fp.sample_frame_pair(3, 3, None, 0.5, rng)


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="gap"):
    _cfg(min_gap=3, max_gap=2)
  with pytest.raises(ValueError, match="resize_method"):
    _cfg(resize_method="cubic-ish")
  with pytest.raises(ValueError, match="swap_prob"):
    _cfg(swap_prob=1.5)


@pytest.mark.parametrize("height,width,resolution", [(48, 64, (32, 32)), (64, 48, (32, 32)),
                                                     (48, 48, (16, 32))])
def test_crop_intrinsics_matches_pixel_crop(height, width, resolution):
  """Projecting with the cropped intrinsics = projecting in full-image pixels, then cropping."""
  crop = fp.center_crop_box(height, width, *resolution)
  y0, x0, ch, cw = crop
  assert np.isclose(cw / ch, resolution[1] / resolution[0])
  assert y0 >= 0 and x0 >= 0 and y0 + ch <= height + 1e-9 and x0 + cw <= width + 1e-9
  k = geometry.intrinsics_matrix(0.9, 1.1, 0.45, 0.55)
  points = np.random.default_rng(0).uniform([-1, -1, 2], [1, 1, 6], size=(20, 3))
  uv_full, _ = geometry.project(points, k)
  pixels = uv_full * [width, height]
  expected = (pixels - [x0, y0]) / [cw, ch]
  uv_crop, _ = geometry.project(points, fp.crop_intrinsics(k, crop, height, width))
  np.testing.assert_allclose(uv_crop, expected, atol=1e-5)


@pytest.mark.parametrize("height,width", [(48, 64), (64, 48)])
def test_crop_resize_keeps_boxes_pixels_and_projection_consistent(height, width):
  record = video_fixtures.make_video_record(num_frames=4, height=height, width=width, pan=0.0,
                                            step=0.1, **_SEPARATED)
  assert record["visible"].all()
  cfg = _cfg(resolution=(32, 32))
  example, counts = reference.make_frame_pair(record, 0, 3, video_index=7, cfg=cfg)
  assert _counts(counts)["kept"] == 2
  np.testing.assert_array_equal(example["slot_mask"], [True, True, False, False])
  side = min(height, width)
  y_off, x_off = (height - side) / 2, (width - side) / 2
  for frame, key in ((0, "source_boxes"), (3, "target_boxes")):
    full = record["boxes_2d"][frame]  # [K, 4] of the full frame.
    expected = np.stack([(full[:, 0] * height - y_off) / side, (full[:, 1] * width - x_off) / side,
                         (full[:, 2] * height - y_off) / side,
                         (full[:, 3] * width - x_off) / side], -1)
    np.testing.assert_allclose(example[key][:2], np.clip(expected, 0, 1), atol=1e-5)
  # Projection with the recomputed intrinsics gives the same boxes as cropping the 2D boxes.
  corners = example["target_corners"][:2]
  np.testing.assert_allclose(geometry.box2d_from_corners(corners), example["target_boxes"][:2],
                             atol=1e-5)
  assert np.all(corners[..., 2] > 0)
  # Pixels: each object's colour region in the resized images lies on its box (<= 1 px off).
  for image_key, box_key in (("source_image", "source_boxes"), ("target_image", "target_boxes")):
    image = example[image_key].astype(np.int32)
    for k in range(2):
      dist = np.abs(image - video_fixtures.COLORS[k].astype(np.int32)).sum(-1)
      ys, xs = np.nonzero(dist < 60)
      assert ys.size > 0
      got = np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], np.float32)
      np.testing.assert_allclose(got, example[box_key][k] * 32, atol=1.01)
  np.testing.assert_array_equal(example["target_corners"][2:], 0)
  np.testing.assert_array_equal(example["source_boxes"][2:], 0)
  assert example["video_index"] == 7 and example["source_frame"] == 0
  assert example["target_frame"] == 3


def test_same_frame_pair_and_relative_pose():
  record = video_fixtures.make_video_record(num_frames=5)
  cfg = _cfg()
  same, _ = reference.make_frame_pair(record, 2, 2, 0, cfg)
  np.testing.assert_array_equal(same["source_image"], same["target_image"])
  np.testing.assert_allclose(same["relative_pose"], np.eye(4), atol=1e-5)
  example, _ = reference.make_frame_pair(record, 4, 1, 0, cfg)
  w2c = record["world_to_camera"]
  point = np.array([0.3, -0.2, 5.0, 1.0])
  np.testing.assert_allclose(example["relative_pose"] @ (w2c[4] @ point), w2c[1] @ point,
                             atol=1e-5)


def test_slot_padding_keeps_largest_objects():
  centers = [[-1.5, 0.0, 6.0], [-0.5, 0.0, 6.0], [0.5, 0.0, 6.0], [1.5, 0.0, 6.0]]
  sizes = [[0.3, 0.3, 0.3], [0.8, 0.8, 0.8], [0.5, 0.5, 0.5], [0.7, 0.7, 0.7]]
  record = video_fixtures.make_video_record(num_frames=2, height=64, width=64, centers=centers,
                                            sizes=sizes, pan=0.0, step=0.0)
  example, counts = reference.make_frame_pair(record, 0, 1, 0, _cfg(max_objects=2))
  assert _counts(counts)["kept"] == 2 and _counts(counts)["over_max_objects"] == 2
  np.testing.assert_allclose(example["target_boxes"], record["boxes_2d"][1][[1, 3]], atol=1e-6)
  assert example["slot_mask"].all()

  example, counts = reference.make_frame_pair(record, 0, 1, 0, _cfg(max_objects=6))
  assert _counts(counts)["kept"] == 4
  np.testing.assert_array_equal(example["slot_mask"], [True] * 4 + [False] * 2)
  np.testing.assert_allclose(example["source_boxes"][:4], record["boxes_2d"][0], atol=1e-6)
  assert example["source_boxes"].shape == (6, 4) and example["target_corners"].shape == (6, 8, 3)
  np.testing.assert_array_equal(example["target_boxes"][4:], 0)


def test_filters_mask_and_count_reasons():
  centers = [[-1.5, -0.5, 6.0], [-0.5, -0.5, 6.0], [0.5, -0.5, 6.0], [1.5, -0.5, 6.0],
             [-0.5, 0.7, 6.0], [0.6, 0.7, 6.0]]
  sizes = [[0.6, 0.6, 0.6]] * 5 + [[0.05, 0.05, 0.05]]
  record = video_fixtures.make_video_record(num_frames=3, height=64, width=64, centers=centers,
                                            sizes=sizes, pan=0.0, step=0.0)
  assert record["visible"].all()
  src, tgt = 0, 2
  # Object 1: not visible in the source frame.
  record["visible"][src, 1] = False
  # Object 2: its target 3D box is behind the camera although flagged visible.
  record["box_corners_world"][tgt, 2, :, 2] -= 10.0
  # Object 3: degenerate (all corners equal) in the target.
  record["box_corners_world"][tgt, 3] = record["box_corners_world"][tgt, 3, :1]
  # Object 5 is tiny: removed by min_box_size.
  example, counts = reference.make_frame_pair(record, src, tgt, 0,
                                              _cfg(max_objects=4, min_box_size=0.05))
  got = _counts(counts)
  assert got["kept"] == 2 and got["not_visible_source"] == 1
  assert got["invalid_3d_behind_camera"] == 1 and got["invalid_3d_degenerate"] == 1
  assert got["small_box_source"] == 1
  assert sum(got.values()) == 6
  np.testing.assert_array_equal(example["slot_mask"], [True, True, False, False])
  np.testing.assert_allclose(example["target_boxes"][:2], record["boxes_2d"][tgt][[0, 4]],
                             atol=1e-6)
  for value in example.values():
    assert np.all(np.isfinite(np.asarray(value, np.float64)))

  # visible_in_both=False: object 1 (absent from the source) keeps a slot with a zero source box.
  example, counts = reference.make_frame_pair(record, src, tgt, 0,
                                              _cfg(max_objects=4, visible_in_both=False,
                                                   min_box_size=0.05))
  assert _counts(counts)["kept"] == 3 and _counts(counts)["small_box_source"] == 1
  np.testing.assert_array_equal(example["source_boxes"][1], 0)
  assert np.all(example["target_boxes"][1] > 0)


def test_jpeg_frames_and_draft_decode():
  png = video_fixtures.make_video_record(num_frames=2, height=128, width=128, **_SEPARATED)
  jpg = video_fixtures.make_video_record(num_frames=2, height=128, width=128, fmt="JPEG",
                                         **_SEPARATED)
  cfg = _cfg(resolution=(32, 32))
  ref, _ = reference.make_frame_pair(png, 0, 1, 0, cfg)
  for draft in (False, True):
    out, _ = reference.make_frame_pair(jpg, 0, 1, 0, _cfg(resolution=(32, 32), jpeg_draft=draft))
    diff = np.abs(out["target_image"].astype(int) - ref["target_image"].astype(int))
    assert diff.mean() < 6, (draft, diff.mean())
    np.testing.assert_allclose(out["target_corners"], ref["target_corners"])


def _png(array, **save_kw) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG", **save_kw)
  return buffer.getvalue()


def _png_rgb16(array16) -> bytes:
  """A 16-bit RGB PNG (Pillow cannot write one): IHDR bit depth 16, colour type 2."""
  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  height, width, _ = array16.shape
  rows = b"".join(b"\x00" + array16[y].astype(">u2").tobytes() for y in range(height))
  header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
          + chunk(b"IEND", b""))


def _png_kinds():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
  gamma = PngImagePlugin.PngInfo()
  gamma.add(b"gAMA", (45455).to_bytes(4, "big"))
  return {
      "rgb": _png(rgb),
      "rgb_gamma": _png(rgb, pnginfo=gamma),
      "rgb_transparency": _png(rgb, transparency=(1, 2, 3)),
      "rgba": _png(np.dstack([rgb, rgb[..., :1]])),
      "gray": _png(rgb[..., 0]),
      "palette": _png(np.asarray(Image.fromarray(rgb).convert("P").convert("RGB"))),
      "rgb16": _png_rgb16(rgb.astype(np.uint16) * 257 + 3),
  }


@pytest.mark.parametrize("kind", sorted(_png_kinds()))
def test_full_size_png_decode_equals_pillow(kind):
  """8-bit RGB PNGs take libpng (imagecodecs) straight into `out`; every other kind falls back
  to Pillow; either way the pixels are Pillow's RGB conversion."""
  data = _png_kinds()[kind]
  want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  got = image_decoding.decode_frame(memoryview(data), None, (24, 40))
  np.testing.assert_array_equal(got, want)
  out = np.full((24, 40, 3), 7, np.uint8)
  assert image_decoding.decode_frame(data, None, (24, 40), out=out) is out
  np.testing.assert_array_equal(out, want)
  # A resize goes through Pillow whatever the kind.
  resized = image_decoding.decode_frame(data, (0.0, 0.0, 24.0, 40.0), (12, 20), "bilinear")
  np.testing.assert_array_equal(resized, np.asarray(
      Image.open(io.BytesIO(data)).convert("RGB").resize((20, 12), Image.BILINEAR)))


def test_fast_png_path_is_libpng_for_8bit_rgb(monkeypatch):
  calls = []
  decode = imagecodecs.png_decode
  monkeypatch.setattr(imagecodecs, "png_decode", lambda *a, **k: calls.append(1) or decode(*a, **k))
  kinds = _png_kinds()
  image_decoding.decode_frame(kinds["rgb"], None, (24, 40))
  assert calls == [1]
  image_decoding.decode_frame(kinds["rgb"], (0.0, 0.0, 24.0, 40.0), (12, 20))  # resized: Pillow
  image_decoding.decode_frame(kinds["gray"], None, (24, 40))  # not RGB: Pillow
  assert calls == [1]


def test_frames_of_another_kind_decode_as_pillow(monkeypatch):
  """PNG frames at the training size are sized from their IHDR and go to libpng first; Pillow
  reads a header only when libpng refuses the frame: every other kind, as source or target,
  still decodes as Pillow, and a frame of another size is still a corrupt record."""
  rng = np.random.default_rng(1)
  rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
  jpeg = io.BytesIO()
  Image.fromarray(rgb).save(jpeg, format="JPEG")
  kinds = dict(_png_kinds(), jpeg=jpeg.getvalue())
  cfg = _cfg(resolution=(24, 40))
  for kind, data in kinds.items():
    record = video_fixtures.make_video_record(num_frames=2, height=24, width=40)
    record["frames"][1] = data
    want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    for source, target in ((0, 1), (1, 0), (1, 1)):
      example = fp.prepare_example(record, source, target, 0, cfg)
      images = {source: example["source_image"], target: example["target_image"]}
      np.testing.assert_array_equal(images[1], want, err_msg=f"{kind} {source} {target}")
      assert example["_frame_size"] == (24, 40)
  opened = []
  open_image = image_decoding.open_image
  monkeypatch.setattr(image_decoding, "open_image",
                      lambda data: opened.append(1) or open_image(data))
  record = video_fixtures.make_video_record(num_frames=2, height=24, width=40)
  fp.prepare_example(record, 0, 1, 0, cfg)
  assert not opened  # 8-bit RGB PNGs at the training size: no Pillow at all.
  monkeypatch.undo()
  for bad_size in (0, 2**31):  # An IHDR no PNG can have: Pillow names the error.
    bad = bytearray(_png(rgb))
    bad[16:20] = bad_size.to_bytes(4, "big")
    record["frames"][1] = bytes(bad)
    with pytest.raises(CorruptRecordError):
      fp.prepare_example(record, 1, 0, 0, cfg)
  record = video_fixtures.make_video_record(num_frames=2, height=24, width=40)
  record["frames"][1] = _png(rgb[:20])
  with pytest.raises(CorruptRecordError, match="other frames"):
    fp.prepare_example(record, 0, 1, 0, cfg)
  record["frames"][1] = b"not an image"
  with pytest.raises(CorruptRecordError):
    fp.prepare_example(record, 0, 1, 0, cfg)


def test_damaged_png_is_a_corrupt_record_on_the_libpng_path():
  data = bytearray(_png_kinds()["rgb"])
  data[len(data) // 2] ^= 0xFF  # Inside IDAT: libpng's CRC / zlib check fails.
  with pytest.raises(CorruptRecordError, match="cannot be decoded"):
    image_decoding.decode_frame(bytes(data), None, (24, 40))
  with pytest.raises(CorruptRecordError):
    image_decoding.decode_frame(_png_kinds()["rgb"][:-40], None, (24, 40))  # truncated


def test_prepare_example_decodes_into_given_slots():
  record = video_fixtures.make_video_record(num_frames=3, height=32, width=32)
  cfg = _cfg(resolution=(32, 32))
  for source, target in ((0, 2), (1, 1)):
    want = fp.prepare_example(record, source, target, 0, cfg)
    slots = np.zeros((2, 32, 32, 3), np.uint8)
    out = (slots[0], slots[1])
    got = fp.prepare_example(record, source, target, 0, cfg, out=out,
                             encoded=fp.read_pair_frames(record, source, target))
    assert got["source_image"] is out[0] and got["target_image"] is out[1]
    np.testing.assert_array_equal(slots[0], want["source_image"])
    np.testing.assert_array_equal(slots[1], want["target_image"])
    assert want["source_image"].any()


def test_bad_frames_raise_corrupt_record_error():
  record = video_fixtures.make_video_record(num_frames=3)
  record["frames"][1] = b"\x89PNG not really"
  with pytest.raises(CorruptRecordError):
    reference.make_frame_pair(record, 0, 1, 0, _cfg())
  record = video_fixtures.make_video_record(num_frames=3)
  record["frames"][2] = video_fixtures.make_video_record(num_frames=1, height=40)["frames"][0]
  with pytest.raises(CorruptRecordError, match="other frames"):
    reference.make_frame_pair(record, 0, 2, 0, _cfg())


def test_keep_all_objects_slots_every_object_with_appearance_mask():
  """Release slot selection (invalid_3d_boxes="keep"): objects invisible in the source or target,
  behind the camera or off screen keep a slot (with their pose); only a degenerate 3D box drops
  one. An object invisible in the source has a zero box and no appearance; padding stays
  padding. With "drop" the object behind the camera drops too."""
  centers = [[-1.5, -0.5, 6.0], [-0.5, -0.5, 6.0], [0.5, -0.5, 6.0], [1.5, -0.5, 6.0],
             [-0.5, 0.7, 6.0]]
  sizes = [[0.6, 0.6, 0.6]] * 5
  record = video_fixtures.make_video_record(num_frames=3, height=64, width=64, centers=centers,
                                            sizes=sizes, pan=0.0, step=0.0)
  src, tgt = 0, 2
  record["visible"][src, 1] = False  # not in the source
  record["visible"][tgt, 4] = False  # not in the target
  record["box_corners_world"][tgt, 2, :, 2] -= 10.0  # behind the target camera
  record["box_corners_world"][tgt, 3] = record["box_corners_world"][tgt, 3, :1]  # degenerate
  cfg = _cfg(max_objects=6, keep_all_objects=True, invalid_3d_boxes="keep")
  example, counts = reference.make_frame_pair(record, src, tgt, 0, cfg)
  got = _counts(counts)
  assert got["kept"] == 4 and got["invalid_3d_degenerate"] == 1 and sum(got.values()) == 5
  np.testing.assert_array_equal(example["slot_mask"], [True] * 4 + [False] * 2)
  # Slots in object order: objects 0, 1, 2, 4.
  np.testing.assert_array_equal(example["appearance_mask"], [True, False, True, True, False,
                                                             False])
  np.testing.assert_array_equal(example["source_boxes"][1], 0.0)
  assert np.all(example["target_corners"][1] != 0)  # its pose is there
  assert np.all(np.isfinite(example["target_corners"])) and np.all(example["target_corners"][4:] == 0)
  np.testing.assert_array_equal(example["target_boxes"][3], 0.0)  # object 4, not in the target
  assert np.abs(example["target_corners"][3]).sum() > 0
  # "drop": object 2 (behind the camera) loses its slot; objects 0, 1, 4 keep theirs.
  dropped, dropped_counts = reference.make_frame_pair(record, src, tgt, 0, _cfg(
      max_objects=6, keep_all_objects=True, invalid_3d_boxes="drop"))
  got = _counts(dropped_counts)
  assert got["kept"] == 3 and got["invalid_3d_behind_camera"] == 1
  np.testing.assert_array_equal(dropped["appearance_mask"], [True, False, True] + [False] * 3)
  np.testing.assert_array_equal(dropped["target_corners"][:3], example["target_corners"][[0, 1, 3]])
  # The old rule drops objects 1, 2, 3, 4; its appearance_mask equals slot_mask.
  old, old_counts = reference.make_frame_pair(record, src, tgt, 0, _cfg(max_objects=6))
  assert _counts(old_counts)["kept"] == 1
  np.testing.assert_array_equal(old["appearance_mask"], old["slot_mask"])


def test_background_mask_covers_every_source_visible_object():
  """paint_all_source_objects: the background mask is the union of the source boxes of every
  object visible in the source, also those that got no slot (over max_objects)."""
  centers = [[-1.5, 0.0, 6.0], [-0.5, 0.0, 6.0], [0.5, 0.0, 6.0], [1.5, 0.0, 6.0]]
  sizes = [[0.3, 0.3, 0.3], [0.8, 0.8, 0.8], [0.5, 0.5, 0.5], [0.7, 0.7, 0.7]]
  record = video_fixtures.make_video_record(num_frames=2, height=64, width=64, centers=centers,
                                            sizes=sizes, pan=0.0, step=0.0)
  record["visible"][0, 2] = False  # invisible in the source: not painted
  cfg = _cfg(max_objects=2, resolution=(64, 64), paint_all_source_objects=True)
  example, _ = reference.make_frame_pair(record, 0, 1, 0, cfg)
  mask = example["background_mask"]
  assert mask.shape == (64, 64) and mask.dtype == bool
  centre = (np.arange(64) + 0.5) / 64
  expected = np.zeros((64, 64), bool)
  for k in (0, 1, 3):  # object 0 is unslotted (smallest), but visible in the source
    y0, x0, y1, x1 = record["boxes_2d"][0, k]
    expected |= (((centre >= y0) & (centre <= y1))[:, None]
                 & ((centre >= x0) & (centre <= x1))[None, :])
  np.testing.assert_array_equal(mask, expected)
  assert expected.sum() > 0
  example, _ = reference.make_frame_pair(record, 0, 1, 0, _cfg(max_objects=2))
  assert "background_mask" not in example


def test_boxes_union_mask_is_one_rule_for_numpy_and_jax():
  """geometry.boxes_union_mask serves the pipeline (numpy) and the tokenizer (JAX): the same
  pixels, box edges on pixel centres included, as a per-pixel reading of the rule."""
  rng = np.random.default_rng(0)
  corners = np.sort(rng.integers(0, 9, (2, 5, 2, 2)) / 8, axis=-2)  # Edges on pixel centres.
  boxes = np.stack([corners[..., 0, 0], corners[..., 0, 1], corners[..., 1, 0],
                    corners[..., 1, 1]], -1).astype(np.float32)  # [2, 5, 4]
  valid = rng.random((2, 5)) > 0.3
  height, width = 4, 8
  centre_y, centre_x = (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width
  expected = np.zeros((2, height, width), bool)
  for b, n in zip(*np.nonzero(valid)):
    y0, x0, y1, x1 = boxes[b, n]
    expected[b] |= (((centre_y >= y0) & (centre_y <= y1))[:, None]
                    & ((centre_x >= x0) & (centre_x <= x1))[None, :])
  np_mask = geometry.boxes_union_mask(boxes, valid, height, width)
  jax_mask = geometry.boxes_union_mask(jnp.asarray(boxes), jnp.asarray(valid), height, width)
  assert isinstance(np_mask, np.ndarray) and np_mask.dtype == bool
  np.testing.assert_array_equal(np_mask, expected)
  np.testing.assert_array_equal(np.asarray(jax_mask), expected)
  assert 0 < expected.sum() < expected.size


def _reference_objects(record, source_frame, target_frame, cfg):
  """The object fields of make_frame_pair rebuilt from the public per-array helpers and
  `geometry` (project_box, box_validity, relative_pose) and a plain-Python selection: an
  independent reference for the vectorised `finish_examples`."""
  height, width = image_decoding.image_size(record["frames"][source_frame])
  crop = fp.center_crop_box(height, width, *cfg.resolution)
  visible = np.asarray(record["visible"])
  boxes = [fp.crop_boxes(record["boxes_2d"][f], crop, height, width) * visible[f, :, None]
           for f in (source_frame, target_frame)]
  intrinsics = fp.crop_intrinsics(record["intrinsics"][target_frame], crop, height, width)
  corners = record["box_corners_world"][target_frame]
  uvd = geometry.project_box(corners, record["world_to_camera"][target_frame], intrinsics)
  sizes = np.linalg.norm(corners[:, [4, 2, 1]] - corners[:, :1], axis=-1)
  valid, reason = geometry.box_validity(uvd, cfg.min_depth, cfg.min_projected_size, sizes)
  names = {int(s): f"invalid_3d_{s.name.lower()}" for s in geometry.BoxStatus}
  outcome, area = [], []
  for k in range(visible.shape[1]):
    vs, vt = bool(visible[source_frame, k]), bool(visible[target_frame, k])
    (hs, ws), (ht, wt) = [(b[k, 2] - b[k, 0], b[k, 3] - b[k, 1]) for b in boxes]
    if cfg.keep_all_objects:  # Only the 3D box can drop an object (which, per invalid_3d_boxes).
      dropped = {geometry.BoxStatus.DEGENERATE} | (
          {geometry.BoxStatus.BEHIND_CAMERA, geometry.BoxStatus.OFF_SCREEN}
          if cfg.invalid_3d_boxes == "drop" else set())
      outcome.append(names[int(reason[k])] if int(reason[k]) in dropped else None)
      area.append(max(hs * ws * vs, ht * wt))
      continue
    rules = [("not_visible_source", cfg.visible_in_both and not vs),
             ("not_visible_target", not vt),
             ("cropped_out_source", vs and min(hs, ws) <= 0),
             ("cropped_out_target", min(ht, wt) <= 0),
             ("small_box_source", vs and min(hs, ws) < cfg.min_box_size),
             ("small_box_target", min(ht, wt) < cfg.min_box_size),
             (names.get(int(reason[k])), not valid[k])]
    outcome.append(next((name for name, failed in rules if failed), None))
    area.append(max(hs * ws * vs, ht * wt))
  candidates = sorted((k for k, o in enumerate(outcome) if o is None), key=lambda k: -area[k])
  keep = sorted(candidates[:cfg.max_objects])
  for k in candidates:
    outcome[k] = "kept" if k in keep else "over_max_objects"
  n = cfg.max_objects
  out = {"source_boxes": np.zeros((n, 4)), "target_boxes": np.zeros((n, 4)),
         "target_corners": np.zeros((n, 8, 3)), "slot_mask": np.zeros(n, bool)}
  for slot, k in enumerate(keep):
    out["source_boxes"][slot], out["target_boxes"][slot] = boxes[0][k], boxes[1][k]
    out["target_corners"][slot], out["slot_mask"][slot] = uvd[k], True
  out["relative_pose"] = geometry.relative_pose(record["world_to_camera"][source_frame],
                                                record["world_to_camera"][target_frame])
  counts = np.array([outcome.count(name) for name in fp.OBJECT_COUNT_NAMES])
  return out, counts


def _hard_record(seed, height=48, width=64, num_objects=7):
  """Random boxes, some behind the camera, degenerate, tiny, invisible or off-screen."""
  rng = np.random.default_rng(seed)
  centers = np.stack([rng.uniform(-3, 3, num_objects), rng.uniform(-1, 1, num_objects),
                      rng.uniform(3, 8, num_objects)], -1)
  sizes = rng.uniform(0.05, 1.0, (num_objects, 3))
  record = video_fixtures.make_video_record(num_frames=5, height=height, width=width,
                                            centers=centers, sizes=sizes)
  record["visible"][rng.integers(0, 5), rng.integers(0, num_objects)] = False
  record["box_corners_world"][:, 0, :, 2] -= 9.0  # behind the camera
  record["box_corners_world"][:, 1] = record["box_corners_world"][:, 1, :1]  # degenerate
  return record


@pytest.mark.parametrize("seed", range(4))
def test_object_logic_matches_the_per_array_reference(seed):
  record = _hard_record(seed, *((48, 64), (64, 48), (32, 32), (40, 90))[seed])
  for kwargs in (dict(max_objects=3), dict(max_objects=8, min_box_size=0.08,
                                           min_projected_size=0.05, visible_in_both=False),
                 dict(max_objects=5, keep_all_objects=True, min_projected_size=0.05),
                 dict(max_objects=8, keep_all_objects=True, invalid_3d_boxes="keep")):
    cfg = _cfg(**kwargs)
    for source_frame, target_frame in ((0, 4), (3, 1), (2, 2)):
      example, counts = reference.make_frame_pair(record, source_frame, target_frame, 0, cfg)
      expected, expected_counts = _reference_objects(record, source_frame, target_frame, cfg)
      np.testing.assert_array_equal(counts, expected_counts)
      for key, value in expected.items():
        np.testing.assert_allclose(example[key], value, atol=1e-5, err_msg=key)
        assert example[key].dtype == (bool if key == "slot_mask" else np.float32)


@pytest.mark.parametrize("keep_all", [False, True])
def test_batched_object_logic_equals_per_example(keep_all):
  cfg = _cfg(max_objects=3, min_box_size=0.05, keep_all_objects=keep_all)
  records = [_hard_record(0), _hard_record(1, 64, 48), _hard_record(2, num_objects=2)]
  empty = _hard_record(3)  # No objects at all.
  for key in ("box_corners_world", "boxes_2d", "visible"):
    empty[key] = empty[key][:, :0]
  for key in ("instance_ids", "category"):
    empty[key] = empty[key][:0]
  records.insert(1, empty)
  pairs = [(0, 3), (4, 4), (2, 0), (1, 3)]
  prepared = [fp.prepare_example(r, s, t, i, cfg) for i, (r, (s, t)) in
              enumerate(zip(records, pairs))]
  objects, counts = fp.finish_examples(prepared, cfg)
  for i, (record, (s, t)) in enumerate(zip(records, pairs)):
    example, example_counts = reference.make_frame_pair(record, s, t, i, cfg)
    np.testing.assert_array_equal(counts[i], example_counts)
    for key, value in objects.items():
      np.testing.assert_array_equal(value[i], example[key], err_msg=key)
  assert counts[1].sum() == 0 and not objects["slot_mask"][1].any()


def test_select_objects_largest_first_ties_to_lower_index():
  # Areas 0.04, 0.09, 0.04, 0.09, 0.16 (3D box behind the camera), 0.01 (invisible in source).
  sides = np.array([0.2, 0.3, 0.2, 0.3, 0.4, 0.1])
  boxes = np.stack([np.zeros(6), np.zeros(6), sides, sides], -1)
  visible_src = np.array([True, True, True, True, True, False])
  status = geometry.BoxStatus
  reason = np.array([status.OK] * 4 + [status.BEHIND_CAMERA, status.OK], np.int32)
  valid = reason == status.OK
  for max_objects, kept in ((2, [1, 3]), (3, [0, 1, 3]), (4, [0, 1, 2, 3])):
    keep, counts = reference.select_objects(visible_src, np.ones(6, bool), boxes, boxes, valid,
                                            reason, _cfg(max_objects=max_objects))
    assert keep.tolist() == kept
    assert _counts(counts) == dict(
        {name: 0 for name in fp.OBJECT_COUNT_NAMES}, kept=len(kept),
        over_max_objects=4 - len(kept), invalid_3d_behind_camera=1, not_visible_source=1)
  # keep_all_objects, "keep": every non-degenerate object, the invisible and the invalid one too.
  reason[2] = status.DEGENERATE
  keep, counts = reference.select_objects(visible_src, np.ones(6, bool), boxes, boxes,
                                          reason == status.OK, reason,
                                          _cfg(max_objects=6, keep_all_objects=True,
                                               invalid_3d_boxes="keep"))
  assert keep.tolist() == [0, 1, 3, 4, 5]
  assert _counts(counts)["invalid_3d_degenerate"] == 1 and _counts(counts)["kept"] == 5
  # "drop": not the one behind the camera (nor an off-screen one); a too-small one stays.
  reason[0], reason[5] = status.OFF_SCREEN, status.TOO_SMALL
  keep, counts = reference.select_objects(visible_src, np.ones(6, bool), boxes, boxes,
                                          reason == status.OK, reason,
                                          _cfg(max_objects=6, keep_all_objects=True))
  assert keep.tolist() == [1, 3, 5]
  assert _counts(counts) == dict(
      {name: 0 for name in fp.OBJECT_COUNT_NAMES}, kept=3, invalid_3d_degenerate=1,
      invalid_3d_behind_camera=1, invalid_3d_off_screen=1)
  with pytest.raises(ValueError, match="not BoxStatus"):
    reference.select_objects(visible_src, np.ones(6, bool), boxes, boxes, np.zeros(6, bool),
                             np.full(6, 9), _cfg())


# Objects for the pose-input bound of `invalid_3d_boxes`: a static camera at the origin looking
# down +z (pan = step = 0), two boxes on screen, one whose near face lies on the camera plane
# (depth exactly 0: the projection divides by geometry.PROJECT_EPS) and one in front of the
# camera but right of the image (u ~ 1.7).
_ON_SCREEN = [[-0.5, 0.0, 6.0], [0.5, 0.0, 6.0]]
_ON_CAMERA_PLANE = [0.5, 0.2, 0.3]  # Size 0.6: corners at depth 0 and 0.6.
_RIGHT_OF_SCREEN = [8.0, 0.0, 6.0]
# Projections are normalised to [0, 1] on screen; a kept box overlaps the screen, so with these
# small boxes its corners lie within a screen's size of it.
_POSE_INPUT_MARGIN = 1.0


def _invalid_3d_record():
  return video_fixtures.make_video_record(
      num_frames=2, height=64, width=64, pan=0.0, step=0.0,
      centers=_ON_SCREEN + [_ON_CAMERA_PLANE, _RIGHT_OF_SCREEN], sizes=[[0.6, 0.6, 0.6]] * 4)


def test_keep_all_objects_drops_boxes_behind_the_camera_or_off_screen():
  """keep_all_objects with invalid_3d_boxes="drop" (the paper configs): an object whose target 3D
  box is behind the camera or off screen gets no slot, so the pose encoder's inputs stay within
  the screen plus a margin, and each is counted under its invalid_3d_* reason."""
  record = _invalid_3d_record()
  cfg = _cfg(max_objects=6, keep_all_objects=True, invalid_3d_boxes="drop")
  example, counts = reference.make_frame_pair(record, 0, 1, 0, cfg)
  assert _counts(counts) == dict({name: 0 for name in fp.OBJECT_COUNT_NAMES}, kept=2,
                                 invalid_3d_behind_camera=1, invalid_3d_off_screen=1)
  np.testing.assert_array_equal(example["slot_mask"], [True, True] + [False] * 4)
  uv = example["target_corners"][example["slot_mask"], :, :2]
  assert np.all(uv >= -_POSE_INPUT_MARGIN) and np.all(uv <= 1.0 + _POSE_INPUT_MARGIN)
  assert np.all(example["target_corners"][example["slot_mask"], :, 2] > cfg.min_depth)
  assert fp.FramePairConfig().invalid_3d_boxes == "drop"  # The default.


def test_keep_all_objects_keep_invalid_3d_boxes_is_the_release():
  """invalid_3d_boxes="keep" (the MOVi-E release): every non-degenerate object gets a slot with
  its raw projection, |u| of order 1e6 for a corner on the camera plane."""
  record = _invalid_3d_record()
  cfg = _cfg(max_objects=6, keep_all_objects=True, invalid_3d_boxes="keep")
  example, counts = reference.make_frame_pair(record, 0, 1, 0, cfg)
  assert _counts(counts)["kept"] == 4 and counts.sum() == 4
  u = np.abs(example["target_corners"][2, :, 0])  # Slot 2: the box on the camera plane.
  assert u.max() > 0.1 / geometry.PROJECT_EPS
  assert 1.0 < example["target_corners"][3, :, 0].min() < 2.0  # Right of the screen, kept.


def test_invalid_3d_boxes_rejects_unknown_values():
  with pytest.raises(ValueError, match="invalid_3d_boxes"):
    _cfg(invalid_3d_boxes="clamp")
