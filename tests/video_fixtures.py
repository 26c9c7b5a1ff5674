"""Synthetic video records with known geometry, shared by the frame-pair and pipeline tests.

A pinhole camera (OpenCV frame, square pixels) translates along world x and pans slightly; the
objects are axis-aligned boxes in front of it. 2D boxes and visibility are computed from the
projection, and every frame is painted: grey background, each visible object's 2D box filled with
its own colour (later objects over earlier ones), so pixel content and boxes can be compared.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from neural_assets import geometry

COLORS = np.array([[230, 30, 30], [30, 200, 30], [40, 40, 230], [230, 230, 20], [20, 220, 220],
                   [220, 20, 220], [250, 140, 0], [120, 60, 20]], np.uint8)
BACKGROUND = 128


def camera_w2c(num_frames: int, step: float = 0.3, pan: float = 0.05) -> np.ndarray:
  """[T, 4, 4] world-to-camera: camera at (step * t, 0, 0) turning by `pan` rad/frame about y."""
  w2c = []
  for t in range(num_frames):
    a = pan * t
    rot_c2w = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    c2w = geometry.pose_matrix(rot_c2w, np.array([step * t, 0.0, 0.0]))
    w2c.append(geometry.invert_pose(c2w))
  return np.stack(w2c).astype(np.float32)


def encode_image(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
  return buf.getvalue()


def paint(height: int, width: int, boxes: np.ndarray, visible: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 frame with box k filled with COLORS[k] (pixel centres inside the box)."""
  image = np.full((height, width, 3), BACKGROUND, np.uint8)
  ys = (np.arange(height) + 0.5) / height
  xs = (np.arange(width) + 0.5) / width
  for k in range(boxes.shape[0]):
    if not visible[k]:
      continue
    y0, x0, y1, x1 = boxes[k]
    rows = (ys >= y0) & (ys < y1)
    cols = (xs >= x0) & (xs < x1)
    image[np.ix_(rows, cols)] = COLORS[k % len(COLORS)]
  return image


def make_video_record(num_frames: int = 6, height: int = 48, width: int = 64,
                      centers=None, sizes=None, fmt: str = "PNG", video_id: bytes = b"synthetic",
                      focal: float = 0.9, step: float = 0.3, pan: float = 0.05):
  """A schema-valid video record with known geometry.

  Args:
    num_frames, height, width: video size.
    centers: [K, 3] world box centres (static objects); default 4 objects 4-7 m away.
    sizes: [K, 3] box extents.
    fmt: "PNG" or "JPEG".

  Returns:
    the record dict (see data_pipelines.video_record).
  """
  if centers is None:
    centers = np.array([[-0.8, -0.3, 5.0], [0.6, 0.4, 6.0], [0.2, -0.5, 4.0], [1.2, 0.1, 7.0]])
  if sizes is None:
    sizes = np.array([[0.8, 0.6, 0.7], [1.0, 1.2, 0.9], [0.4, 0.3, 0.5], [0.6, 0.6, 0.6]])
  centers, sizes = np.asarray(centers, np.float32), np.asarray(sizes, np.float32)
  num_objects = centers.shape[0]
  w2c = camera_w2c(num_frames, step, pan)
  k = geometry.intrinsics_matrix(focal, focal * width / height, 0.5, 0.5)  # square pixels.
  intrinsics = np.broadcast_to(k, (num_frames, 3, 3)).astype(np.float32)
  corners = geometry.box_corners(centers, sizes, np.eye(3, dtype=np.float32))  # [K, 8, 3]
  corners = np.broadcast_to(corners, (num_frames, num_objects, 8, 3)).astype(np.float32)
  uvd = geometry.project_box(corners, w2c[:, None], intrinsics[:, None])
  valid, _ = geometry.box_validity(uvd)
  boxes = np.where(valid[..., None], geometry.box2d_from_corners(uvd), 0.0).astype(np.float32)
  frames = [encode_image(paint(height, width, boxes[t], valid[t]), fmt) for t in range(num_frames)]
  return {
      "video_id": video_id,
      "frames": frames,
      "intrinsics": intrinsics,
      "world_to_camera": w2c,
      "box_corners_world": corners,
      "boxes_2d": boxes,
      "visible": np.asarray(valid, bool),
      "instance_ids": np.arange(num_objects, dtype=np.int32),
      "category": np.full((num_objects,), -1, np.int32),
  }


def render_synthetic_splits(out_dir, splits, resolution: int, num_frames: int, env=None) -> None:
  """Renders `data_pipelines.synthetic` splits into out_dir: splits = ((name, videos, seed), ...)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = env or {**os.environ, "PYTHONPATH": root}
  for split, videos, seed in splits:
    subprocess.run([sys.executable, "-m", "data_pipelines.synthetic", f"--out_dir={out_dir}",
                    f"--num_videos={videos}", f"--resolution={resolution}",
                    f"--num_frames={num_frames}", f"--seed={seed}", f"--split={split}"],
                   cwd=root, env=env, check=True, capture_output=True, timeout=120)
