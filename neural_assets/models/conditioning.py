"""Neural Assets conditioning: per-object appearance + pose tokens and a background token.

Each concept of the paper is one module here:
- `AppearanceEncoder`: RoIAlign (2x2; adaptive sampling by default, so the global box reads every
  patch) of the visual encoder's patch feature map inside each source box, flattened into 4
  tokens, Dense -> token_dim (512).
- `PoseEncoder`: the target-camera (u, v, depth) of box corners p0, p1, p2, p4 (12-D) through
  Dense 1024 -> GELU -> Dense 512, repeated to the 4 appearance tokens.
- `BackgroundEncoder`: the global box (0, 0, 1, 1) over the feature map of the source image with
  every foreground box painted 0.5 (appearance), and the relative camera pose source -> target
  (rotation + translation, 12-D) through a small MLP and then the *shared* pose MLP (pose).
- `AssetTokenizer`: runs the visual encoder once on [object image; background image], fuses
  appearance and pose per slot (concat -> Dense -> context_dim, SD-2.1's 1024), appends the
  background slot last and applies classifier-free-guidance dropout.

Masking choices (DESIGN.md): the tokens of padded slots are exactly zero — after the final
projection, so no bias leaks in — and the UNet sees them unmasked. The release does not zero
padded slots' pose tokens; we zero whole padded slots, pose included. The appearance token of a
slot without appearance (`appearance_mask` False, or an empty source box) is exactly zero before
the projection. Classifier-free guidance, `config.null_condition`:
- "learned" (release, the paper configs): a dropped example's source boxes, target poses and
  relative camera pose are replaced by zeros *before* the encoders, so its context is f(0), a
  learned constant: the same token at every foreground slot, padded ones included (as in the
  release, so the unconditional branch cannot read the object count off the context), and the
  background's own f(0) in the background slot;
- "zeros": every token of a dropped example is zero after the projection (the unconditional
  context is all zeros).
Sampling must use the null context the model was trained with: the tokenizer's output for the
same batch with every example dropped (`NeuralAssetsModel.tokenize_cond_and_null`), either mode.

Batch keys read by `AssetTokenizer` (DESIGN.md frame-pair example, batched):
- `source_image` [B, H, W, 3]: float in [0, 1] (the contract) or uint8 (divided by 255 here);
- `source_boxes` [B, N, 4] normalised [y0, x0, y1, x1];
- `target_corners` [B, N, 8, 3] (u, v, depth) in the target camera;
- `slot_mask` [B, N] bool;
- `relative_pose` [B, 4, 4] source camera -> target camera;
- optional `appearance_mask` [B, N] bool: slots whose appearance is known (default `slot_mask`);
  an object inserted by an edit has a pose but a zero appearance token (paper). A slot whose
  source box is empty (zero height or width) has no appearance either way;
- optional `background_mask` [B, H, W] bool: pixels painted out of the background token's image
  (the pipeline's box union of every source-visible object, slotted or not); default: the union
  of the slots' source boxes that have appearance.

Ablation switches (config; defaults = the paper): `background_token` 'full' | 'no_pose' (camera
pose token zeroed) | 'none' (no background slot: zero tokens); `shuffle_pose` (training only:
pose tokens permuted among the valid objects of each example, a control that must lose).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from neural_assets.geometry import boxes_union_mask  # The one box-mask pixel rule.
from neural_assets.models import vit as vit_lib
from neural_assets.models.partitioning import constrain_batch
from neural_assets.models.roi_align import roi_align

REQUIRED_BATCH_KEYS = ("source_image", "source_boxes", "target_corners", "slot_mask",
                       "relative_pose")
# `config.background_token` (ablations; the paper: 'full').
BACKGROUND_TOKENS = ("full", "no_pose", "none")
NULL_CONDITIONS = ("learned", "zeros")


def sample_drop_cond(key: jax.Array, batch_size: int, drop_prob: float) -> jax.Array:
  """[B] bool: which examples drop all conditioning (classifier-free guidance training)."""
  if not 0.0 <= drop_prob <= 1.0:
    raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}.")
  return jax.random.bernoulli(key, drop_prob, (batch_size,))


def shuffle_slots(key: jax.Array, tokens: jax.Array, valid: jax.Array) -> jax.Array:
  """Permutes tokens [B, N, ...] among the valid slots [B, N] of each example, at random.

  Invalid slots keep their own tokens; valid slot i gets the tokens of valid slot perm(i).
  """
  num = valid.shape[1]
  index = jnp.arange(num)
  # Valid slots in random order, then invalid ones in index order ...
  shuffled = jnp.argsort(jnp.where(valid, jax.random.uniform(key, valid.shape), 2.0 + index))
  # ... written to the valid slots in index order, then to the invalid ones (identity there).
  positions = jnp.argsort(jnp.where(valid, index, num + index))
  source = jnp.zeros_like(positions).at[jnp.arange(valid.shape[0])[:, None], positions].set(
      shuffled)
  return jnp.take_along_axis(tokens, source.reshape(source.shape + (1,) * (tokens.ndim - 2)),
                             axis=1)


def nonempty_boxes(boxes: jax.Array) -> jax.Array:
  """[..., 4] [y0, x0, y1, x1] -> [...] bool: positive height and width."""
  return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def relative_pose_features(relative_pose: jax.Array) -> jax.Array:
  """[B, 4, 4] rigid transform -> [B, 12]: the 3x3 rotation row-major, then the translation."""
  rotation = einops.rearrange(relative_pose[..., :3, :3], "... i j -> ... (i j)")
  return jnp.concatenate([rotation, relative_pose[..., :3, 3]], axis=-1)


class AppearanceEncoder(nn.Module):
  """RoIAlign of a patch feature map per box -> Dense: [B, h, w, D] x [B, N, 4] -> [B, N, T, E].

  T = output_size[0] * output_size[1] tokens per box (4), E = token_dim (512). Invalid boxes pool
  zeros (the Dense bias is left to the tokenizer's slot masking). `sampling_ratio` <= 0: adaptive
  (`roi_align`).
  """
  token_dim: int
  output_size: Sequence[int] = (2, 2)
  sampling_ratio: int = 0
  aligned: bool = True

  @nn.compact
  def __call__(self, feature_map: jax.Array, boxes: jax.Array, valid: jax.Array) -> jax.Array:
    pooled = roi_align(feature_map, boxes, valid, tuple(self.output_size), self.sampling_ratio,
                       self.aligned)  # [B, N, h, w, D]
    tokens = constrain_batch(einops.rearrange(pooled, "b n h w d -> b n (h w) d"))
    return constrain_batch(nn.Dense(self.token_dim, name="projection")(tokens))


def fourier_features(x: jax.Array, bands: int) -> jax.Array:
  """[..., F] -> [..., F (1 + 2 K)]: x, then sin and cos of pi 2^k x for k < K (K = `bands`),
  feature-major within each; K = 0 returns x unchanged."""
  if not bands:
    return x
  freqs = jnp.pi * 2.0 ** jnp.arange(bands, dtype=x.dtype)
  angles = einops.rearrange(x[..., None] * freqs, "... f k -> ... (f k)")
  return jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)], axis=-1)


class PoseEncoder(nn.Module):
  """Box corners in the target camera -> pose tokens: [B, N, 8, 3] -> [B, N, T, E].

  The pose MLP (`mlp`) is also applied to the background's camera-pose features via
  `encode_features`, which is why it is a method of its own.
  """
  token_dim: int
  hidden_dim: int = 1024
  corner_indices: Sequence[int] = (0, 1, 2, 4)
  num_tokens: int = 4
  fourier_bands: int = 0

  def setup(self):
    self.hidden = nn.Dense(self.hidden_dim, name="hidden")
    self.out = nn.Dense(self.token_dim, name="out")

  def encode_features(self, features: jax.Array) -> jax.Array:
    """[..., F] pose features (F = 12) -> [..., T, E], the token repeated T times.

    `fourier_bands` K > 0 appends sin / cos of pi 2^k x (k < K) of every feature before the
    MLP (as GLIGEN embeds boxes): an MLP on raw coordinates learns sharp functions of position
    slowly; 0 is the release (raw coordinates).
    """
    features = fourier_features(features, self.fourier_bands)
    token = self.out(nn.gelu(self.hidden(features), approximate=False))
    return einops.repeat(token, "... e -> ... t e", t=self.num_tokens)

  def __call__(self, corners: jax.Array) -> jax.Array:
    if corners.ndim != 4 or corners.shape[-2:] != (8, 3):
      raise ValueError(f"target_corners must be [B, N, 8, 3], got {corners.shape}.")
    picked = corners[..., jnp.asarray(self.corner_indices), :]  # [B, N, 4, 3]
    return self.encode_features(einops.rearrange(picked, "b n k c -> b n (k c)"))


class BackgroundEncoder(nn.Module):
  """The background slot: appearance over the global box, pose from the relative camera pose.

  `appearance_encoder` and `pose_encoder` are the tokenizer's own (shared) modules; this module
  owns only the camera-pose pre-MLP (`camera_mlp`).

  Inputs: background feature map [B, h, w, D] (source image with foreground boxes painted),
  relative_pose [B, 4, 4]. Output: (appearance [B, 1, T, E], pose [B, 1, T, E]).
  """
  appearance_encoder: AppearanceEncoder
  pose_encoder: PoseEncoder
  hidden_dim: int = 24
  pose_dim: int = 12

  @nn.compact
  def __call__(self, feature_map: jax.Array, relative_pose: jax.Array):
    if relative_pose.ndim != 3 or relative_pose.shape[-2:] != (4, 4):
      raise ValueError(f"relative_pose must be [B, 4, 4], got {relative_pose.shape}.")
    batch = feature_map.shape[0]
    global_box = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0, 1.0], jnp.float32), (batch, 1, 4))
    appearance = self.appearance_encoder(feature_map, global_box, jnp.ones((batch, 1), bool))
    cam = relative_pose_features(relative_pose.astype(jnp.float32))
    cam = nn.Dense(self.hidden_dim, name="camera_mlp_hidden")(cam)
    cam = nn.Dense(self.pose_dim, name="camera_mlp_out")(nn.gelu(cam, approximate=False))
    pose = self.pose_encoder.encode_features(cam)[:, None]  # [B, 1, T, E]
    return appearance, pose


class AssetTokenizer(nn.Module):
  """`(batch, drop_cond [B] bool) -> (tokens [B, (N+1)*T, context_dim], token_mask [B, (N+1)*T])`.

  `config` is `config.model.conditioning` (configs/conditioning.py). Token order: slot-major,
  foreground slots 0..N-1 then the background, T = 4 tokens per slot. `token_mask` is False for
  the tokens that are exactly zero: padded slots of a kept example, and every token of a dropped
  example with `null_condition='zeros'` (with 'learned' a dropped example's slots are all f(0),
  padded ones included, and all True).
  """
  config: Any

  def setup(self):
    c = self.config
    out_h, out_w = c.roi_output_size
    num_tokens = out_h * out_w
    if c.token_dim * 2 != c.context_dim:
      # Not a hard law of the method, but the release's sizing; a typo here would silently train
      # a different model, so ask for it to be stated consistently.
      raise ValueError(f"token_dim ({c.token_dim}) must be context_dim / 2 ({c.context_dim}).")
    if len(c.pose_corner_indices) * 3 != c.background_pose_dim:
      raise ValueError(f"background_pose_dim ({c.background_pose_dim}) must equal the object pose "
                       f"feature size 3 * {len(c.pose_corner_indices)} (the pose MLP is shared).")
    # `from_config` skips the preprocessing keys (input_size, image_mean, image_std).
    self.encoder = vit_lib.ViT.from_config(c.encoder, name="encoder")
    self.appearance_encoder = AppearanceEncoder(
        c.token_dim, tuple(c.roi_output_size), c.roi_sampling_ratio, c.roi_aligned,
        name="appearance_encoder")
    self.pose_encoder = PoseEncoder(c.token_dim, c.pose_hidden_dim, tuple(c.pose_corner_indices),
                                    num_tokens, int(c.pose_fourier_bands),
                                    name="pose_encoder")
    self.background_encoder = BackgroundEncoder(
        self.appearance_encoder, self.pose_encoder, c.background_pose_hidden_dim,
        c.background_pose_dim, name="background_encoder")
    self.asset_projection = nn.Dense(c.context_dim, name="asset_projection")

  def preprocess(self, image: jax.Array, boxes: jax.Array, valid: jax.Array,
                 background_mask: jax.Array | None = None) -> jax.Array:
    """[B, H, W, 3] source image -> [2B, S, S, 3] encoder input, rows 2b and 2b + 1 the object
    and the background image of example b (interleaved, so a batch-sharded device holds both
    images of its own examples and splitting them moves no data).

    Object image: pixels outside the union of valid boxes painted `fill_value`. Background image:
    pixels inside `background_mask` [B, H, W] (default: that union) painted. Both resized to
    `encoder.input_size` (`resize_method`, `resize_antialias`: the release's
    `jax.image.resize(..., 'bilinear', antialias=True)`) and ImageNet-normalised.
    """
    c = self.config
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"source_image must be [B, H, W, 3], got {image.shape}.")
    if image.dtype == jnp.uint8:
      image = image.astype(jnp.float32) / 255.0
    elif not jnp.issubdtype(image.dtype, jnp.floating):
      raise ValueError(f"source_image must be float in [0, 1] or uint8, got {image.dtype}.")
    image = image.astype(jnp.float32)
    batch, height, width, _ = image.shape
    union = boxes_union_mask(boxes, valid, height, width)[..., None]  # [B, H, W, 1]
    if background_mask is None:
      painted = union
    else:
      if background_mask.shape != (batch, height, width):
        raise ValueError(f"background_mask must be [B, H, W] = {(batch, height, width)}, got "
                         f"{background_mask.shape}.")
      painted = background_mask.astype(bool)[..., None]
    objects = jnp.where(union, image, c.fill_value)
    background = jnp.where(painted, c.fill_value, image)
    pixels = constrain_batch(einops.rearrange(jnp.stack([objects, background], axis=1),
                                              "b two h w c -> (b two) h w c"))
    size = c.encoder.input_size
    pixels = jax.image.resize(pixels, (2 * batch, size, size, 3), method=c.resize_method,
                              antialias=c.resize_antialias)
    mean = jnp.asarray(c.encoder.image_mean, jnp.float32)
    std = jnp.asarray(c.encoder.image_std, jnp.float32)
    return constrain_batch((pixels - mean) / std)

  def feature_map(self, pixels: jax.Array) -> jax.Array:
    """[B, S, S, 3] normalised pixels -> [B, S/p, S/p, D] patch features (CLS/registers dropped)."""
    c = self.config.encoder
    hidden = self.encoder(pixels)
    grid = c.input_size // c.patch_size
    return vit_lib.patch_feature_map(hidden, 1 + c.num_register_tokens, (grid, grid))

  def __call__(self, batch: Mapping[str, jax.Array], drop_cond: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    # CFG dropout comes in through `drop_cond`; `train` only switches the shuffle_pose control.
    missing = [k for k in REQUIRED_BATCH_KEYS if k not in batch]
    if missing:
      raise KeyError(f"AssetTokenizer batch lacks {missing}; has {sorted(batch)}.")
    c = self.config
    boxes = batch["source_boxes"].astype(jnp.float32)
    slot_mask = batch["slot_mask"].astype(bool)
    bsz, num_slots = slot_mask.shape
    if num_slots != c.max_objects:
      raise ValueError(f"Batch has {num_slots} slots but config.max_objects={c.max_objects}.")
    if boxes.shape != (bsz, num_slots, 4):
      raise ValueError(f"source_boxes must be [B, N, 4] = {(bsz, num_slots, 4)}, "
                       f"got {boxes.shape}.")
    if drop_cond.shape != (bsz,):
      raise ValueError(f"drop_cond must be [B] = ({bsz},), got {drop_cond.shape}.")
    null_condition = c.null_condition  # No default: sampling must match what was trained.
    if null_condition not in NULL_CONDITIONS:
      raise ValueError(f"config.null_condition={null_condition!r}: expected one of "
                       f"{NULL_CONDITIONS}.")
    drop = drop_cond.astype(bool)
    corners = batch["target_corners"].astype(jnp.float32)
    relative_pose = batch["relative_pose"].astype(jnp.float32)
    background_mask = batch.get("background_mask")
    appearance_mask = (batch.get("appearance_mask", slot_mask).astype(bool) & slot_mask
                       & nonempty_boxes(boxes))
    background_valid = jnp.ones((bsz, 1), bool)
    if null_condition == "learned":
      # Release: a dropped example's boxes and poses are zeros that go through the encoders.
      keep = ~drop
      boxes = boxes * keep[:, None, None]
      corners = corners * keep[:, None, None, None]
      relative_pose = relative_pose * keep[:, None, None]
      appearance_mask = appearance_mask & keep[:, None]
      background_valid = keep[:, None]
      if background_mask is not None:
        background_mask = background_mask & keep[:, None, None]

    features = self.feature_map(self.preprocess(batch["source_image"], boxes, appearance_mask,
                                                background_mask))
    obj_features, bg_features = (constrain_batch(f) for f in einops.rearrange(
        features, "(b two) h w d -> two b h w d", two=2))

    appearance = self.appearance_encoder(obj_features, boxes, appearance_mask)  # [B, N, T, E]
    appearance = appearance * appearance_mask[..., None, None]
    pose = self.pose_encoder(corners)  # [B, N, T, E]
    if c.shuffle_pose and train:
      # Ablation control: each object gets another object's pose (fresh permutation per step).
      pose = shuffle_slots(self.make_rng("dropout"), pose, slot_mask)
    bg_appearance, bg_pose = self.background_encoder(bg_features, relative_pose)
    bg_appearance = bg_appearance * background_valid[..., None, None]
    background = c.background_token
    if background not in BACKGROUND_TOKENS:
      raise ValueError(f"background_token must be one of {BACKGROUND_TOKENS}, got {background!r}.")
    if background == "no_pose":  # Ablation: the background token without the camera pose.
      bg_pose = jnp.zeros_like(bg_pose)

    appearance = jnp.concatenate([appearance, bg_appearance], axis=1)  # [B, N+1, T, E]
    pose = jnp.concatenate([pose, bg_pose], axis=1)
    tokens = self.asset_projection(constrain_batch(jnp.concatenate([appearance, pose], axis=-1)))

    # background_token='none' (ablation): the background slot is empty (zero tokens).
    slot_valid = jnp.concatenate([slot_mask, jnp.full((bsz, 1), background != "none")],
                                 axis=1)  # [B, N+1]
    if null_condition == "zeros":
      slot_valid = slot_valid & ~drop[:, None]
    else:  # "learned": every slot of a dropped example holds f(0), padded foreground ones too.
      slot_valid = slot_valid | (drop[:, None] & jnp.concatenate(
          [jnp.ones((bsz, num_slots), bool), slot_valid[:, -1:]], axis=1))
    tokens = tokens * slot_valid[..., None, None]
    token_mask = einops.repeat(slot_valid, "b s -> b (s t)", t=tokens.shape[2])
    return constrain_batch(einops.rearrange(tokens, "b s t d -> b (s t) d")), token_mask
