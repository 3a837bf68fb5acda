"""Pixel metrics in JAX: L1, PSNR and SSIM on batched NHWC images.

SSIM matches `skimage.metrics.structural_similarity(a, b,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=data_range, channel_axis=-1)`: an 11x11 Gaussian window (truncated at
3.5 sigma), statistics only where the window fits inside the image (skimage
filters the whole image and crops a 5-pixel border, which is the same thing),
averaged over pixels then channels.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkingmem.nn.separable import filter_hw, filter_matrix

__all__ = ["l1", "psnr", "ssim", "ssim_map", "masked_l1", "masked_psnr", "masked_ssim", "gaussian_window"]

_K1, _K2 = 0.01, 0.03


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
  """1-D normalised Gaussian taps as scipy.ndimage (radius int(t*s+.5))."""
  radius = int(truncate * sigma + 0.5)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  w = np.exp(-0.5 * (x / sigma) ** 2)
  return w / w.sum()


def _check(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  if a.shape != b.shape or a.ndim != 4:
    raise ValueError(f"expected equal NHWC shapes, got {a.shape} and {b.shape}")
  return a, b


def _reduce(per_image: jax.Array, reduce: bool) -> jax.Array:
  return per_image.mean() if reduce else per_image


def l1(a: jax.Array, b: jax.Array, reduce: bool = True) -> jax.Array:
  """Mean absolute error per image (N,), or its batch mean."""
  a, b = _check(a, b)
  return _reduce(jnp.abs(a - b).mean(axis=(1, 2, 3)), reduce)


def psnr(a: jax.Array, b: jax.Array, data_range: float = 1.0,
         reduce: bool = True) -> jax.Array:
  """PSNR in dB per image (N,), or the mean of the per-image values.

  Identical images give +inf (as skimage's `peak_signal_noise_ratio`).
  """
  a, b = _check(a, b)
  mse = jnp.square(a - b).mean(axis=(1, 2, 3))
  return _reduce(10.0 * jnp.log10(data_range**2 / mse), reduce)


def _filter_valid(x: jax.Array, taps: np.ndarray) -> jax.Array:
  """Separable 'valid' correlation over H and W of (N, H, W, C) maps, as two matrix products (their
  gradient is far cheaper than a depthwise convolution's on CPU: talkingmem/nn/separable.py)."""
  taps = tuple(float(t) for t in taps)
  rows = filter_matrix(x.shape[1], taps)
  cols = filter_matrix(x.shape[2], taps)
  return filter_hw(x, rows, cols)


def ssim_map(a: jax.Array, b: jax.Array, data_range: float = 1.0, sigma: float = 1.5) -> jax.Array:
  """Per-pixel SSIM (N, H - 2r, W - 2r, C) where the window of radius r fits inside the image: skimage's
  `full=True` map with its r-pixel border cropped (the part its mean uses)."""
  a, b = _check(a, b)
  taps = gaussian_window(sigma)
  if min(a.shape[1:3]) < len(taps):
    raise ValueError(f"images {a.shape[1:3]} smaller than the "
                     f"{len(taps)}x{len(taps)} SSIM window")
  # Variances are shift-invariant: centre each image/channel first so that
  # E[x^2] - E[x]^2 does not cancel catastrophically in float32.
  ca = a - a.mean(axis=(1, 2), keepdims=True)
  cb = b - b.mean(axis=(1, 2), keepdims=True)
  # All seven filtered maps in one pair of convolutions.
  stats = _filter_valid(jnp.concatenate([a, b, ca, cb, ca * ca, cb * cb, ca * cb], axis=-1), taps)
  ux, uy, mx, my, sxx, syy, sxy = jnp.split(stats, 7, axis=-1)
  vx, vy, vxy = sxx - mx * mx, syy - my * my, sxy - mx * my
  c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
  return ((2 * ux * uy + c1) * (2 * vxy + c2) /
          ((ux * ux + uy * uy + c1) * (vx + vy + c2)))


def ssim(a: jax.Array, b: jax.Array, data_range: float = 1.0,
         sigma: float = 1.5, reduce: bool = True) -> jax.Array:
  """Gaussian-window SSIM per image (N,), or its batch mean (see module doc)."""
  return _reduce(ssim_map(a, b, data_range, sigma).mean(axis=(1, 2, 3)), reduce)


def _masked_mean(values: jax.Array, masks: jax.Array) -> jax.Array:
  """(N,) mean of (N, H, W, C) values over the pixels of (N, H, W) masks, NaN for an empty mask."""
  weight = jnp.asarray(masks, jnp.float32)[..., None]
  count = weight.sum(axis=(1, 2, 3)) * values.shape[-1]
  return jnp.where(count > 0, (weight * values).sum(axis=(1, 2, 3)) / jnp.maximum(count, 1), jnp.nan)


def masked_l1(a: jax.Array, b: jax.Array, masks: jax.Array) -> jax.Array:
  """(N,) mean absolute error inside (N, H, W) masks (NaN where a mask is empty)."""
  a, b = _check(a, b)
  return _masked_mean(jnp.abs(a - b), masks)


def masked_psnr(a: jax.Array, b: jax.Array, masks: jax.Array, data_range: float = 1.0) -> jax.Array:
  """(N,) PSNR in dB of the pixels inside (N, H, W) masks (NaN where a mask is empty)."""
  a, b = _check(a, b)
  mse = _masked_mean(jnp.square(a - b), masks)
  return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-10))


def masked_ssim(a: jax.Array, b: jax.Array, masks: jax.Array, data_range: float = 1.0,
                sigma: float = 1.5) -> jax.Array:
  """(N,) mean SSIM over the pixels of (N, H, W) masks whose window fits in the image (NaN where a
  mask has no such pixel): the SSIM map's mean restricted to a region, channels averaged."""
  per_pixel = ssim_map(a, b, data_range, sigma).mean(axis=-1)
  r = (a.shape[1] - per_pixel.shape[1]) // 2
  inside = jnp.asarray(masks, jnp.float32)[:, r:a.shape[1] - r, r:a.shape[2] - r]
  count = inside.sum(axis=(1, 2))
  return jnp.where(count > 0, (per_pixel * inside).sum(axis=(1, 2)) / jnp.maximum(count, 1), jnp.nan)
