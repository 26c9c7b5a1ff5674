"""The Neural Assets conditioning (asset tokenizer) at the paper's / release's values.

`config.model.conditioning` of every experiment. Tags as in configs/paper_base.py: (release) =
the authors' code release, (paper) = the paper or its authors in review, (open) = published in
neither: our choice.
Usage: `conditioning.get_config()` (MOVi-E: 23 objects, DINO ViT-B/8) or
`get_config('vits16', max_objects=10)` for MOVi-A/B/C with a small encoder.
"""
import ml_collections

from configs import dino


def get_config(encoder_variant: str = "vitb8", max_objects: int = 23) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      # Foreground slots; the background slot is appended by the model (release: 23 for MOVi-E).
      max_objects=max_objects,
      # Visual encoder (fine-tuned DINO ViT-B/8, release); includes the preprocessing keys
      # `input_size`, `image_mean`, `image_std`.
      encoder=dino.get_config(encoder_variant),
      # Resize of the (masked) source image to `encoder.input_size`: the release's
      # jax.image.resize(..., "bilinear", antialias=True) (release). False: no antialiasing.
      resize_method="bilinear",
      resize_antialias=True,
      # Value painted outside the foreground boxes (object image) / inside them (background).
      fill_value=0.5,
      # RoIAlign: 2x2 bins -> 4 tokens per slot (release). Samples per bin: 0 = adaptive,
      # ceil(box size / bins) per axis (torchvision's rule), so every patch under a box is read
      # (the release resamples with antialiasing to the same effect); a fixed 2 reads 16 of the
      # 784 patches for the background's global box. Half-pixel convention: (open).
      roi_output_size=(2, 2),
      roi_sampling_ratio=0,
      roi_aligned=True,
      # Appearance and pose token width (= context_dim / 2, release).
      token_dim=512,
      # Pose token: corners p0, p1, p2, p4 of the target-camera box, (u, v, depth) each -> 12-D,
      # then Dense 1024 -> GELU -> Dense token_dim (release).
      pose_corner_indices=(0, 1, 2, 4),
      pose_hidden_dim=1024,
      # Fourier features of the pose inputs before that MLP: sin / cos of pi 2^k x, k < bands
      # (open; 0 = raw coordinates, the release). The toy config uses them.
      pose_fourier_bands=0,
      # Background "pose": relative camera pose (3x3 rotation + translation = 12-D) through
      # Dense 24 -> GELU -> Dense 12 before the shared pose MLP (release).
      background_pose_hidden_dim=24,
      background_pose_dim=12,
      # Asset token width: SD-2.1's cross-attention dim (release).
      context_dim=1024,
      # Classifier-free guidance: all conditioning dropped per example with this prob (release).
      cfg_drop_prob=0.1,
      # Ablations (benchmarks/ablations.py); defaults = the paper. Background token: 'full',
      # 'no_pose' (without the camera pose) or 'none' (no background slot).
      background_token="full",
      # Control: pose tokens permuted among each example's objects during training.
      shuffle_pose=False,
      # The null (unconditional) context: "learned" = zero boxes and poses through the encoders,
      # f(0) (release); "zeros" = all tokens zeroed after the projection. Sampling uses the same.
      null_condition="learned",
  ))
