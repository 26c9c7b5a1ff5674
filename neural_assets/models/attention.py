"""Pluggable multi-head attention kernels shared by every attention layer of the models.

All kernels take `q [B, Lq, H, Dh]`, `k, v [B, Lk, H, Dh]` and return `[B, Lq, H, Dh]` computing
`softmax(q k^T / sqrt(Dh)) v`. Which kernel runs is a config choice (`attention_impl`):

- 'xla': explicit einsum + softmax. The reference; runs everywhere.
- 'dot_product': `jax.nn.dot_product_attention(implementation=None)`, XLA's fused lowering.
- 'cudnn': cuDNN flash attention (`implementation='cudnn'`); NVIDIA GPU, bf16 / fp16 inputs only.
- 'tpu_splash': Pallas splash attention on TPU. Sequences are zero-padded to the kernel's block
  size and the padded keys masked out, so any length works.

`upcast=True` follows diffusers' `upcast_attention`: the logits q k^T and the softmax are computed
in float32 whatever the input dtype (SD-2.1 768 overflows in fp16 otherwise). The fused kernels
('cudnn', 'tpu_splash') already accumulate logits and softmax in float32.

`mask`: optional bool array broadcastable to `[B, H, Lq, Lk]`, True where a query may attend.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

ATTENTION_IMPLS = ("xla", "dot_product", "cudnn", "tpu_splash")

# Splash attention tiles sequences in blocks of this many positions.
_SPLASH_BLOCK = 128


def _check_inputs(q, k, v):
  if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
    raise ValueError(f"attention expects q, k, v of rank 4 [B, L, H, Dh]; got shapes {q.shape}, "
                     f"{k.shape}, {v.shape}.")
  if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
    raise ValueError(f"attention: incompatible shapes q {q.shape}, k {k.shape}, v {v.shape} "
                     "(expected q [B, Lq, H, Dh], k = v [B, Lk, H, Dh]).")


def _xla_attention(q, k, v, upcast, mask):
  dtype = q.dtype
  scale = 1.0 / math.sqrt(q.shape[-1])
  if upcast:
    q, k = q.astype(jnp.float32), k.astype(jnp.float32)
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * jnp.asarray(scale, q.dtype)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", probs, v).astype(dtype)


def _dot_product_attention(q, k, v, upcast, mask, implementation):
  dtype = q.dtype
  if upcast and implementation is None:
    q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
  out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
  return out.astype(dtype)


def _cudnn_attention(q, k, v, mask):
  if jax.default_backend() != "gpu":
    raise ValueError(f"attention_impl='cudnn' needs an NVIDIA GPU, but the JAX backend is "
                     f"{jax.default_backend()!r}; use 'xla' or 'dot_product' here.")
  if q.dtype not in (jnp.bfloat16, jnp.float16):
    raise ValueError(f"attention_impl='cudnn' supports bfloat16 / float16 inputs only, got "
                     f"{q.dtype}; set the model dtype to bfloat16 or use 'dot_product'.")
  # cuDNN accumulates q k^T and the softmax in float32, which is what `upcast` asks for.
  return _dot_product_attention(q, k, v, upcast=False, mask=mask, implementation="cudnn")


@functools.lru_cache(maxsize=None)
def _splash_kernel(num_heads: int, q_len: int, kv_len: int, kv_valid: int):
  """Builds (once per shape) a splash kernel for padded lengths, masking keys >= kv_valid."""
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash  # pylint: disable=g-import-not-at-top
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks  # pylint: disable=g-import-not-at-top
  head_mask = np.zeros((q_len, kv_len), dtype=bool)
  head_mask[:, :kv_valid] = True
  mask = masks.MultiHeadMask([masks.NumpyMask(head_mask)] * num_heads)
  block = splash.BlockSizes(block_q=_SPLASH_BLOCK, block_kv=_SPLASH_BLOCK,
                            block_kv_compute=_SPLASH_BLOCK, block_q_dkv=_SPLASH_BLOCK,
                            block_kv_dkv=_SPLASH_BLOCK, block_kv_dkv_compute=_SPLASH_BLOCK,
                            block_q_dq=_SPLASH_BLOCK, block_kv_dq=_SPLASH_BLOCK)
  return splash.make_splash_mha(mask, block_sizes=block, head_shards=1, q_seq_shards=1)


def _splash_attention(q, k, v, mask):
  if mask is not None:
    raise ValueError("attention_impl='tpu_splash' does not take an array mask; use 'xla'.")
  if jax.default_backend() != "tpu":
    raise ValueError(f"attention_impl='tpu_splash' needs a TPU, but the JAX backend is "
                     f"{jax.default_backend()!r}; use 'xla' or 'dot_product' here.")
  round_up = lambda n: -(-n // _SPLASH_BLOCK) * _SPLASH_BLOCK
  lq, lk = q.shape[1], k.shape[1]
  try:
    kernel = _splash_kernel(q.shape[2], round_up(lq), round_up(lk), lk)
  except ImportError as e:
    raise ValueError("attention_impl='tpu_splash' needs jax.experimental.pallas splash attention, "
                     f"which this JAX install lacks ({e}).") from e
  # Padded keys are masked out by the kernel's mask; padded queries are sliced off below.
  pad = lambda x, n: jnp.pad(x, ((0, 0), (0, n - x.shape[1]), (0, 0), (0, 0)))
  to_hld = lambda x: jnp.transpose(x, (0, 2, 1, 3))
  # The kernel does not scale the logits and takes one example as [H, L, Dh].
  qs = pad(q * jnp.asarray(1.0 / math.sqrt(q.shape[-1]), q.dtype), round_up(lq))
  out = jax.vmap(kernel)(to_hld(qs), to_hld(pad(k, round_up(lk))), to_hld(pad(v, round_up(lk))))
  return to_hld(out)[:, :lq].astype(q.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, impl: str, upcast: bool = False,
              mask: Optional[jax.Array] = None) -> jax.Array:
  """Scaled dot-product attention, `[B, Lq, H, Dh] x [B, Lk, H, Dh]^2 -> [B, Lq, H, Dh]`.

  Args:
    q: queries [B, Lq, H, Dh].
    k: keys [B, Lk, H, Dh].
    v: values [B, Lk, H, Dh].
    impl: one of ATTENTION_IMPLS (see the module docstring).
    upcast: compute the logits and softmax in float32 (diffusers' `upcast_attention`).
    mask: optional bool, broadcastable to [B, H, Lq, Lk]; True = attend.

  Returns:
    [B, Lq, H, Dh] in q's dtype.
  """
  _check_inputs(q, k, v)
  if impl == "xla":
    return _xla_attention(q, k, v, upcast, mask)
  if impl == "dot_product":
    return _dot_product_attention(q, k, v, upcast, mask, implementation=None)
  if impl == "cudnn":
    return _cudnn_attention(q, k, v, mask)
  if impl == "tpu_splash":
    return _splash_attention(q, k, v, mask)
  raise ValueError(f"Unknown attention impl {impl!r}: expected one of {ATTENTION_IMPLS}.")
