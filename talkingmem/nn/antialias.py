"""Anti-aliased downsampling (Gaussian blur then stride), the FOMM `AntiAliasInterpolation2d`."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def gaussian_kernel(scale: float) -> np.ndarray:
  """The 2-D kernel the official code stores as the `down.weight` buffer, (k, k), sums to 1."""
  sigma = (1.0 / scale - 1.0) / 2.0
  size = 2 * round(sigma * 4) + 1
  grid = np.arange(size, dtype=np.float64)
  g = np.exp(-((grid - (size - 1) / 2.0) ** 2) / (2 * sigma ** 2))
  kernel = np.outer(g, g)
  return (kernel / kernel.sum()).astype(np.float32)


def antialias_downsample(x: jax.Array, scale: float) -> jax.Array:
  """Blurs (depthwise, zero padding) and keeps every 1/scale-th pixel from 0. x: (B, H, W, C)."""
  if scale == 1.0:
    return x
  kernel = gaussian_kernel(float(scale))
  size = kernel.shape[0]
  ka = size // 2
  kb = ka - 1 if size % 2 == 0 else ka
  step = int(1.0 / scale)
  channels = x.shape[-1]
  k = jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, channels)), x.dtype)
  out = jax.lax.conv_general_dilated(
      x, k, window_strides=(step, step), padding=((ka, kb), (ka, kb)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels,
      precision=jax.lax.Precision.HIGHEST)
  return out
