"""Cached VAE latents of every training frame (`config.training.cache_latents`).

The VAE is frozen and, without `vae_sample_posterior`, its latent of a frame is a fixed
function of the frame: encoding every target image again at every step (13% of the demo's step
on CPU, benchmarks/train_step.py profile) recomputes the same arrays. With the cache the trainer
encodes each frame of the training split once, before the first step, exactly as the pipeline
decodes it for training (`image_decoding.decode_frame`: centre crop + resize to
`data.resolution`) and as the step encodes it (`train_step.encode_latents`, posterior mean,
scaling factor applied), and gives the step `target_latents` looked up by
(`video_index`, `target_frame`), which every batch carries.

For small datasets: the cache holds frames x h x w x c float32 in host memory on every process
(the demo: 4,096 frames x 16 x 16 x 4 = 16 MiB; MOVi-E's 234k frames at 256 px would be
3.6 GiB). It is rebuilt at every start (a resumed run recomputes the same arrays) and refuses
to start beyond `max_bytes`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import numpy as np

from data_pipelines import data_config
from data_pipelines import frame_pairs
from data_pipelines import record_source

LATENTS_KEY = "target_latents"


class LatentCache:
  """Latents of every frame of every video: `lookup(video_index [B], frame [B]) -> [B, h, w, c]`.

  Args:
    latents: [total_frames, h, w, c] float32, the videos' frames back to back.
    offsets: [num_videos + 1] int64, video v's frames are latents[offsets[v]:offsets[v + 1]].
  """

  def __init__(self, latents: np.ndarray, offsets: np.ndarray):
    if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != len(latents):
      raise ValueError(f"offsets must run from 0 to {len(latents)}, got {offsets[[0, -1]]}.")
    self.latents = latents
    self.offsets = offsets

  @property
  def num_videos(self) -> int:
    return len(self.offsets) - 1

  def lookup(self, video_index: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """[B] video indices, [B] frame indices -> [B, h, w, c]; raises IndexError out of range."""
    video_index, frame = np.asarray(video_index), np.asarray(frame)
    if np.any((video_index < 0) | (video_index >= self.num_videos)):
      raise IndexError(f"video index out of range [0, {self.num_videos}): {video_index}.")
    counts = self.offsets[video_index + 1] - self.offsets[video_index]
    if np.any((frame < 0) | (frame >= counts)):
      raise IndexError(f"frame index out of range of its video: frames {frame}, "
                       f"frame counts {counts}.")
    return self.latents[self.offsets[video_index] + frame]

  def add_to(self, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch with `target_latents` (a new dict; the batch's arrays are shared)."""
    return {**batch, LATENTS_KEY: self.lookup(batch["video_index"], batch["target_frame"])}


def build(config: Any, encode_fn: Callable[[np.ndarray], Any], chunk_size: int,
          max_bytes: int) -> LatentCache:
  """Encodes every frame of the training split (`config.data.train_files`).

  Args:
    config: the experiment config (`data`: files, resolution, crop / resize options).
    encode_fn: uint8 images [chunk_size, H, W, 3] -> latents [chunk_size, h, w, c] (the train
      step's encoding); the last chunk is padded to `chunk_size` (one compiled shape).
    chunk_size: frames per call of `encode_fn`.
    max_bytes: refuse (ValueError) a cache larger than this, as soon as the first chunk tells
      the size of a latent.

  Raises:
    video_record.CorruptRecordError: a frame cannot be read or decoded (the cache must cover
      every frame the pipeline may pick).
  """
  cfg = data_config.frame_pair_config(config)
  source = record_source.VideoRecordSource(
      data_config.resolve_files(config.data.data_dir, config.data.train_files))
  pending, chunks, offsets = [], [], [0]

  def encode(images: list[np.ndarray]) -> np.ndarray:
    batch = np.zeros((chunk_size,) + images[0].shape, np.uint8)
    batch[:len(images)] = images
    return np.asarray(jax.device_get(encode_fn(batch)), np.float32)[:len(images)]

  for video in range(len(source)):
    frames = frame_pairs.decode_frames(source.read_record(video)["frames"], cfg)
    offsets.append(offsets[-1] + len(frames))
    pending.extend(frames)
    while len(pending) >= chunk_size:
      chunks.append(encode(pending[:chunk_size]))
      del pending[:chunk_size]
      if len(chunks) == 1:
        estimate = chunks[0][0].nbytes * offsets[-1] / (video + 1) * len(source)
        if estimate > max_bytes:
          raise ValueError(
              f"training.cache_latents: ~{estimate:.3g} bytes of latents for {len(source)} "
              f"videos exceed training.cache_latents_max_bytes={max_bytes}; turn the cache off "
              "for this dataset (or raise the limit).")
  if pending:
    chunks.append(encode(pending))
  return LatentCache(np.concatenate(chunks), np.asarray(offsets, np.int64))
