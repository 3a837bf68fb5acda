"""MemFace's audio-to-expression model (paper Sec. 3.2, Fig. 3).

  per-frame audio windows (B, T, W, D)
    -> window encoder (strided 1-D convs over the W feature frames, as NVP / AD-NeRF's AudioNet)
    -> + sinusoidal positions -> transformer encoder over the T frames      = query Q (B, T, d)
    -> implicit memory: Q + softmax(Q K^T / sqrt(d)) V                      (or explicit / none)
    -> transformer decoder (self-attention layers) -> linear               = coefficients (B, T, C)

The paper gives M = 1000 slots of d = 64 and ~240k parameters in total (128k of them the memory) but
no layer sizes; all sizes are attributes, and the defaults (d_model 64, 2 + 2 layers, 4 heads, MLP 128)
give ~295k for 16x29 DeepSpeech windows and 64 coefficients. Attention is written out with jax.numpy.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkingmem.memface import memory as memory_lib

MEMORY_KINDS = ("implicit", "explicit", "none")


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
  """(length, dim) transformer positional encoding (sin on even, cos on odd channels)."""
  pos = np.arange(length)[:, None]
  rates = np.exp(-np.log(10000.0) * (np.arange(0, dim, 2) / dim))
  table = np.zeros((length, dim), np.float32)
  table[:, 0::2] = np.sin(pos * rates)
  table[:, 1::2] = np.cos(pos * rates[: dim // 2])
  return table


class SelfAttention(nn.Module):
  """Multi-head self-attention; `mask` (B, T) marks valid frames."""
  num_heads: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    d = x.shape[-1]
    if d % self.num_heads:
      raise ValueError(f"d_model {d} is not divisible by {self.num_heads} heads")
    head = d // self.num_heads
    qkv = nn.DenseGeneral((3, self.num_heads, head), name="qkv")(x)  # (B, T, 3, H, dh)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head)
    if mask is not None:
      logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    weights = nn.Dropout(self.dropout)(weights, deterministic=not train)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return nn.DenseGeneral(d, axis=(-2, -1), name="out")(out)


class TransformerLayer(nn.Module):
  """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x))."""
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    drop = nn.Dropout(self.dropout, deterministic=not train)
    h = SelfAttention(self.num_heads, self.dropout, name="attn")(nn.LayerNorm(name="ln1")(x), mask,
                                                                  train)
    x = x + drop(h)
    h = nn.Dense(self.mlp_dim, name="mlp_in")(nn.LayerNorm(name="ln2")(x))
    h = nn.Dense(x.shape[-1], name="mlp_out")(drop(nn.gelu(h)))
    return x + drop(h)


class TransformerStack(nn.Module):
  num_layers: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    for i in range(self.num_layers):
      x = TransformerLayer(self.num_heads, self.mlp_dim, self.dropout, name=f"layer_{i}")(x, mask,
                                                                                        train)
    return nn.LayerNorm(name="ln_final")(x)


class WindowEncoder(nn.Module):
  """(..., W, D) audio window -> (..., d_model): strided convs over W, then a linear layer."""
  d_model: int
  conv_features: Sequence[int] = (32, 32, 64, 64)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    lead = x.shape[:-2]
    h = x.reshape((-1,) + x.shape[-2:])
    for i, features in enumerate(self.conv_features):
      h = nn.Conv(features, (3,), strides=(2,), padding="SAME", name=f"conv_{i}")(h)
      h = nn.leaky_relu(h, 0.02)
    h = nn.Dense(self.d_model, name="proj")(h.reshape(h.shape[0], -1))
    return h.reshape(lead + (self.d_model,))


class AudioToExpression(nn.Module):
  """Audio windows (B, T, W, D) -> expression coefficients (B, T, num_coeffs).

  Attributes:
    num_coeffs: C, the mouth-related expression coefficients predicted.
    d_model: transformer width.
    num_heads: self-attention heads.
    encoder_layers / decoder_layers: transformer blocks before / after the memory.
    mlp_dim: hidden size of the transformer MLPs.
    dropout: dropout rate (active when train=True; needs a 'dropout' rng).
    conv_features: channels of the stride-2 convs over each audio window.
    memory: 'implicit' (MemFace), 'explicit' (ablation) or 'none' (ablation).
    memory_slots: M (implicit) or N (explicit).
    memory_dim: key/value size of the implicit memory; the query is projected to it (and back)
      when it differs from d_model.
    memory_project: learn eq. 2's W_q / W_k inside the implicit memory.
  """
  num_coeffs: int
  d_model: int = 64
  num_heads: int = 4
  encoder_layers: int = 2
  decoder_layers: int = 2
  mlp_dim: int = 128
  dropout: float = 0.1
  conv_features: Sequence[int] = (32, 32, 64, 64)
  memory: str = "implicit"
  memory_slots: int = 1000
  memory_dim: int = 64
  memory_project: bool = False

  @nn.compact
  def __call__(self, audio: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> dict[str, jax.Array]:
    """Returns coeffs (B, T, C), query (B, T, d) and, with a memory, memory_weights (B, T, M)."""
    if self.memory not in MEMORY_KINDS:
      raise ValueError(f"memory must be one of {MEMORY_KINDS}, got {self.memory!r}")
    x = WindowEncoder(self.d_model, self.conv_features, name="window_encoder")(audio)
    x = x + sinusoidal_positions(x.shape[1], self.d_model)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    query = TransformerStack(self.encoder_layers, self.num_heads, self.mlp_dim, self.dropout,
                             name="encoder")(x, mask, train)
    out = {"query": query}
    hidden = query
    if self.memory == "implicit":
      q = query
      if self.memory_dim != self.d_model:
        q = nn.Dense(self.memory_dim, name="memory_in")(q)
      merged, out["memory_weights"] = memory_lib.ImplicitMemory(
          self.memory_slots, self.memory_dim, self.memory_project, name="memory")(q)
      if self.memory_dim != self.d_model:
        merged = nn.Dense(self.d_model, name="memory_out")(merged)
      hidden = merged
    elif self.memory == "explicit":
      flat_audio = audio.reshape(audio.shape[:2] + (-1,))
      hidden, out["memory_weights"] = memory_lib.ExplicitMemory(
          self.memory_slots, self.num_coeffs, name="memory")(flat_audio, query)
    h = TransformerStack(self.decoder_layers, self.num_heads, self.mlp_dim, self.dropout,
                         name="decoder")(hidden, mask, train)
    out["coeffs"] = nn.Dense(self.num_coeffs, name="head")(h)
    return out
