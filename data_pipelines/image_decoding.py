"""Frame decoding: an encoded PNG / JPEG frame -> [H, W, 3] uint8, centre-cropped and resized.

The fast path: an 8-bit RGB PNG that needs neither crop nor resize (e.g. MOVi-E at 256x256) is
sized from its IHDR chunk (`png_size`, no Pillow) and decoded by libpng
(`imagecodecs.png_decode`) straight into the caller's array: the same pixels as Pillow (PNG is
lossless; tested), ~1.5x faster and without Pillow's intermediate copies. Everything else
(JPEG, other PNG modes, crops, resizes) goes through Pillow, with optional DCT-domain JPEG
downscaling (`jpeg_draft`). A frame that cannot be decoded raises `CorruptRecordError`, so the
pipeline skips and counts its record.
"""
from __future__ import annotations

import io
import math
import struct

import imagecodecs
import numpy as np
from PIL import Image

from data_pipelines.video_record import CorruptRecordError

# `resize_method` names -> Pillow filters.
RESAMPLING = {
    "area": Image.Resampling.BOX,  # Exact area averaging when downsampling (the release's).
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}

FRAME_FORMATS = ("PNG", "JPEG")  # Pillow format names of the video-record frames.


def decode_frame(data: bytes, crop, out_size: tuple[int, int], resize_method: str = "area",
                 jpeg_draft: bool = True, expect_size: tuple[int, int] | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
  """Decodes a PNG/JPEG frame, crops `crop` (pixels of the full frame) and resizes.

  An 8-bit RGB PNG that needs neither crop nor resize (e.g. MOVi-E at 256x256) is decoded by
  libpng (`imagecodecs.png_decode`) straight into `out`: the same pixels as Pillow (PNG is
  lossless; tested), ~1.5x faster and without Pillow's intermediate copies. Everything else
  (JPEG, other PNG modes, crops, resizes) goes through Pillow.

  Args:
    data: encoded image bytes.
    crop: (y0, x0, crop_h, crop_w) in pixels of the full-size frame, or None for the full frame.
    out_size: (H, W) of the result.
    resize_method: key of `RESAMPLING`.
    jpeg_draft: allow DCT-domain downscaling for JPEGs much larger than the output.
    expect_size: (height, width) the frame must have; None accepts any.
    out: optional [H, W, 3] uint8 C-contiguous array to decode into (returned).

  Returns:
    [H, W, 3] uint8 (`out` when given).

  Raises:
    CorruptRecordError: the bytes are not a decodable image or have the wrong size.
  """
  return decode_opened(open_image(data), data, crop, out_size, resize_method, jpeg_draft,
                        expect_size, out)


def open_image(data) -> Image.Image:
  """Pillow image of an encoded frame (header parsed, pixels not decoded yet).

  Only the frame formats of the video-record schema are tried (Pillow would otherwise test
  every registered format's signature first).

  Raises:
    CorruptRecordError: not a PNG or JPEG image.
  """
  try:
    return Image.open(io.BytesIO(data), formats=FRAME_FORMATS)
  except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad bytes.
    raise CorruptRecordError(f"Frame cannot be decoded as an image: {e!r}") from e


def _decode_png_rgb8(data, out: np.ndarray | None) -> np.ndarray | None:
  """libpng's decode of an 8-bit RGB PNG into `out`; None when the PNG is of another kind
  (16-bit, transparency: imagecodecs refuses `out`'s dtype / shape before decoding)."""
  try:
    return imagecodecs.png_decode(data, out=out)
  except imagecodecs.PngError as e:  # libpng: bad CRC, zlib data check, truncated stream.
    raise CorruptRecordError(f"Frame cannot be decoded as an image: {e!r}") from e
  except ValueError:
    return None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A PNG's signature and header chunk: length (13), type, width, height (big-endian).
_PNG_HEAD = struct.Struct(f">{len(_PNG_SIGNATURE)}sI4sII")


def png_size(data) -> tuple[int, int] | None:
  """(height, width) of a PNG from its IHDR chunk; None if `data` does not start like a PNG
  (Pillow then reads the header and names what is wrong). The chunk's CRC is checked by libpng
  when the frame is decoded."""
  if len(data) < _PNG_HEAD.size:
    return None
  signature, length, kind, width, height = _PNG_HEAD.unpack_from(data)
  if (signature != _PNG_SIGNATURE or length != 13 or kind != b"IHDR" or not 0 < width < 2**31
      or not 0 < height < 2**31):
    return None
  return height, width


def whole_rgb8_png(image: Image.Image, crop, out_size) -> bool:
  """The frame is an 8-bit RGB PNG (as Pillow reads its header) needing no crop or resize."""
  full_w, full_h = image.size
  out_h, out_w = out_size
  y0, x0, crop_h, crop_w = crop if crop is not None else (0.0, 0.0, full_h, full_w)
  return ((full_h, full_w) == (out_h, out_w) and (y0, x0, crop_h, crop_w) == (0, 0, out_h, out_w)
          and image.format == "PNG" and image.mode == "RGB" and "transparency" not in image.info)


def decode_opened(image: Image.Image | None, data, crop, out_size, resize_method, jpeg_draft,
                   expect_size, out: np.ndarray | None = None) -> np.ndarray:
  """`decode_frame` of an opened image (`data`: its encoded bytes). `image` None: not opened yet,
  a frame of a video whose frames are PNGs of `expect_size` = `out_size` (as the source frame's
  IHDR says; the crop is then the whole frame): libpng is tried first and Pillow reads the
  header only if libpng refuses the frame (another kind of PNG, another size, not a PNG)."""
  out_h, out_w = out_size
  try:
    if image is None and bytes(data[:len(_PNG_SIGNATURE)]) != _PNG_SIGNATURE:
      image = open_image(data)  # Not a PNG (a JPEG, or not an image): Pillow.
    if image is None or whole_rgb8_png(image, crop, out_size):
      if out is None:
        out = np.empty((out_h, out_w, 3), np.uint8)
      pixels = _decode_png_rgb8(data, out)
      if pixels is not None:
        return pixels
      if image is None:
        image = open_image(data)
    full_w, full_h = image.size
    if expect_size is not None and (full_h, full_w) != tuple(expect_size):
      raise CorruptRecordError(f"Frame is {full_h}x{full_w}, other frames are "
                               f"{expect_size[0]}x{expect_size[1]}.")
    y0, x0, crop_h, crop_w = crop if crop is not None else (0.0, 0.0, full_h, full_w)
    if jpeg_draft and image.format == "JPEG":
      # Draft keeps every side >= the requested size, so the decoded crop still covers out_size.
      image.draft("RGB", (math.ceil(out_w * full_w / crop_w), math.ceil(out_h * full_h / crop_h)))
    if image.mode != "RGB":
      image = image.convert("RGB")
    sx, sy = image.size[0] / full_w, image.size[1] / full_h
    box = (x0 * sx, y0 * sy, (x0 + crop_w) * sx, (y0 + crop_h) * sy)
    if image.size != (out_w, out_h) or box != (0.0, 0.0, float(out_w), float(out_h)):
      image = image.resize((out_w, out_h), RESAMPLING[resize_method], box=box)
    pixels = np.asarray(image)
  except CorruptRecordError:
    raise
  except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad bytes.
    raise CorruptRecordError(f"Frame cannot be decoded as an image: {e!r}") from e
  if pixels.shape != (out_h, out_w, 3):
    raise CorruptRecordError(f"Decoded frame has shape {pixels.shape}, want {(out_h, out_w, 3)}.")
  if out is not None:
    out[...] = pixels
    return out
  return pixels


def image_size(data: bytes) -> tuple[int, int]:
  """(height, width) of an encoded image from its header only."""
  try:
    width, height = open_image(data).size
  except Exception as e:  # noqa: BLE001
    raise CorruptRecordError(f"Frame header cannot be read: {e!r}") from e
  return height, width
