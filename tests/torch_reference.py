"""Helpers for the PyTorch reference models the parity tests build with random weights."""
import torch


def randomise(model: torch.nn.Module, seed: int) -> None:
  """Small random weights everywhere, norms near identity, layer scales near 0.5: no
  zero-initialised layer (diffusers zero-inits some) can hide a conversion bug."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if "norm" in name and name.endswith("weight"):
        p.copy_(1.0 + 0.1 * noise)
      elif "lambda1" in name:
        p.copy_(0.5 + 0.2 * noise)
      elif name.endswith(("cls_token", "position_embeddings", "register_tokens")):
        p.copy_(0.5 * noise)
      else:
        p.copy_(0.1 * noise)
