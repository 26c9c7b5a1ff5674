"""Visual encoders: DINO v1 ViT-S/B with patch 8/16 (facebook/dino-*), DINOv2 with registers.

Field names follow the transformers `ViTConfig` / `Dinov2Config` keys. Usage:
`configs/dino.py:vitb8` (the paper's encoder), `vits16`, `vitb16`, `vits8`, `dinov2_vitb14_reg`.
"""
import ml_collections

_WIDTHS = {"s": (384, 6, 1536), "b": (768, 12, 3072)}
# The variants with a published checkpoint (tests/test_configs.py builds each); the parser below
# also accepts the other size / patch combinations.
VARIANTS = ("vitb8", "vits16", "vitb16", "vits8", "dinov2_vitb14_reg")


def get_config(variant: str = "vitb8") -> ml_collections.ConfigDict:
  if variant.startswith("dinov2_vit"):
    size, patch = variant[len("dinov2_vit")], 14
    registers = 4 if variant.endswith("_reg") else 0
    kind = "dinov2"
  elif variant.startswith("vit") and len(variant) in (5, 6):
    size, patch, registers, kind = variant[3], int(variant[4:]), 0, "dino"
  else:
    raise ValueError(f"Unknown encoder variant {variant!r}.")
  if size not in _WIDTHS:
    raise ValueError(f"Unknown ViT size {size!r} in {variant!r}: expected one of {list(_WIDTHS)}.")
  hidden, heads, mlp = _WIDTHS[size]
  return ml_collections.ConfigDict(dict(
      kind=kind,
      hidden_size=hidden,
      num_hidden_layers=12,
      num_attention_heads=heads,
      intermediate_size=mlp,
      patch_size=patch,
      image_size=224 if kind == "dino" else 518,
      # As in the published transformers config.json files (facebook/dino-* say 1e-12, although
      # the original DINO code used 1e-6; the difference is far below float32 resolution).
      layer_norm_eps=1e-12 if kind == "dino" else 1e-6,
      num_register_tokens=registers,
      # transformers' Dinov2WithRegistersModel resamples position embeddings with antialiasing.
      interpolate_antialias=registers > 0,
      # ImageNet normalisation expected by every DINO checkpoint.
      image_mean=(0.485, 0.456, 0.406),
      image_std=(0.229, 0.224, 0.225),
      # Resolution the encoder is run at inside Neural Assets (28x28 patches for ViT-B/8).
      input_size=224,
  ))
