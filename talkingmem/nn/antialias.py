"""Anti-aliased downsampling (Gaussian blur then stride), the FOMM `AntiAliasInterpolation2d`."""
from __future__ import annotations

import functools

import jax
import numpy as np

from talkingmem.nn.separable import filter_hw, filter_matrix


@functools.lru_cache(maxsize=None)
def gaussian_taps(scale: float) -> tuple[float, ...]:
  """The 1-D factor of the official kernel (sigma = (1/scale - 1) / 2, 2*round(4 sigma)+1 taps), sums to 1."""
  sigma = (1.0 / scale - 1.0) / 2.0
  size = 2 * round(sigma * 4) + 1
  grid = np.arange(size, dtype=np.float64)
  g = np.exp(-((grid - (size - 1) / 2.0) ** 2) / (2 * sigma ** 2))
  return tuple(g / g.sum())


@functools.lru_cache(maxsize=None)
def gaussian_kernel(scale: float) -> np.ndarray:
  """The 2-D kernel the official code stores as the `down.weight` buffer, (k, k), sums to 1."""
  g = np.asarray(gaussian_taps(scale))
  return np.outer(g, g).astype(np.float32)


def antialias_downsample(x: jax.Array, scale: float) -> jax.Array:
  """Blurs (separable Gaussian, zero padding) and keeps every 1/scale-th pixel from 0. x: (B, H, W, C).

  The official 2-D kernel is the outer product of `gaussian_taps`, so filtering rows then columns is
  the same operation; done as matrix products (see talkingmem/nn/separable.py for why).
  """
  if scale == 1.0:
    return x
  taps = gaussian_taps(float(scale))
  ka = len(taps) // 2
  kb = ka - 1 if len(taps) % 2 == 0 else ka
  step = int(1.0 / scale)
  rows = filter_matrix(x.shape[1], taps, step, ka, kb)
  cols = filter_matrix(x.shape[2], taps, step, ka, kb)
  return filter_hw(x, rows, cols)
