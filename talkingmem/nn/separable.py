"""Separable filtering as two small matrix products.

A 1-D filter along H (then W) with zero padding and a stride is a banded (out, n) matrix. Applying it
with dot_general instead of a depthwise convolution matters for training: XLA:CPU lowers the gradient
of a depthwise (feature_group_count=C) convolution very slowly (~0.5 s for the 4-scale pyramid loss of
a 64x64 batch of 8, against ~20 ms as matmuls), and matmuls are what every accelerator does best.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def filter_matrix(n: int, taps: tuple[float, ...], stride: int = 1, pad_before: int = 0,
                  pad_after: int = 0) -> np.ndarray:
  """(out, n) float32 matrix M with (M @ v)[o] = sum_t taps[t] * v_padded[o * stride + t].

  v_padded is v with `pad_before` / `pad_after` zeros, so this is cross-correlation as conv_general_dilated
  computes it, out = (n + pad_before + pad_after - len(taps)) // stride + 1.
  """
  k = len(taps)
  out = (n + pad_before + pad_after - k) // stride + 1
  if out < 1:
    raise ValueError(f"a {k}-tap filter does not fit {n} samples with padding {pad_before}+{pad_after}")
  matrix = np.zeros((out, n), np.float64)
  for o in range(out):
    for t, w in enumerate(taps):
      i = o * stride + t - pad_before
      if 0 <= i < n:
        matrix[o, i] += w
  return matrix.astype(np.float32)


def filter_hw(x: jax.Array, rows: np.ndarray, cols: np.ndarray) -> jax.Array:
  """Applies `rows` (H', H) along H and `cols` (W', W) along W of x (B, H, W, C) -> (B, H', W', C)."""
  hp = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,bhwc->bowc", jnp.asarray(rows, x.dtype), x, precision=hp)
  return jnp.einsum("pw,bowc->bopc", jnp.asarray(cols, x.dtype), x, precision=hp)
