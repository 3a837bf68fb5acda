"""Coordinate grids, grid_sample and align_corners=True resizing (NHWC), matching PyTorch conventions.

Keypoints and flow fields are (x, y) in [-1, 1]: x indexes width, y indexes height.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def make_coordinate_grid(height: int, width: int, dtype=jnp.float32) -> jax.Array:
  """(H, W, 2) grid of (x, y) with pixel centres spanning [-1, 1] (x_i = 2i/(n-1) - 1)."""
  x = 2.0 * jnp.arange(width, dtype=dtype) / max(width - 1, 1) - 1.0
  y = 2.0 * jnp.arange(height, dtype=dtype) / max(height - 1, 1) - 1.0
  xx = jnp.broadcast_to(x[None, :], (height, width))
  yy = jnp.broadcast_to(y[:, None], (height, width))
  return jnp.stack([xx, yy], axis=-1)


def _unnormalize(coord: jax.Array, size: int, align_corners: bool) -> jax.Array:
  if align_corners:
    return (coord + 1.0) * 0.5 * (size - 1)
  return ((coord + 1.0) * size - 1.0) * 0.5


def _reflect(coord: jax.Array, size: int, align_corners: bool) -> jax.Array:
  """Reflects pixel coordinates into range, as torch's padding_mode='reflection'."""
  if align_corners:
    lo, span = 0.0, float(size - 1)
  else:
    lo, span = -0.5, float(size)
  if span <= 0:
    return jnp.zeros_like(coord)
  c = jnp.abs(coord - lo)
  flips = jnp.floor(c / span)
  extra = c - flips * span
  reflected = jnp.where(jnp.mod(flips, 2) == 0, lo + extra, lo + span - extra)
  return jnp.clip(reflected, 0, size - 1)


def grid_sample(image: jax.Array, grid: jax.Array, *, align_corners: bool,
                padding_mode: str = "zeros") -> jax.Array:
  """Bilinear sampling of `image` (B, H, W, C) at `grid` (B, Ho, Wo, 2), like torch's F.grid_sample.

  padding_mode: 'zeros' (out-of-range taps contribute 0), 'border' or 'reflection'.
  Written as four gathers so XLA can fuse it; differentiable w.r.t. image and grid.
  """
  b, h, w, c = image.shape
  ix = _unnormalize(grid[..., 0].astype(jnp.float32), w, align_corners)
  iy = _unnormalize(grid[..., 1].astype(jnp.float32), h, align_corners)
  if padding_mode == "border":
    ix, iy = jnp.clip(ix, 0, w - 1), jnp.clip(iy, 0, h - 1)
  elif padding_mode == "reflection":
    ix, iy = _reflect(ix, w, align_corners), _reflect(iy, h, align_corners)
  elif padding_mode != "zeros":
    raise ValueError(f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
  x0, y0 = jnp.floor(ix), jnp.floor(iy)
  x1, y1 = x0 + 1, y0 + 1
  wx1, wy1 = ix - x0, iy - y0
  wx0, wy0 = 1.0 - wx1, 1.0 - wy1
  flat = image.reshape(b, h * w, c)

  def tap(xs, ys, weight):
    valid = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    xi = jnp.clip(xs, 0, w - 1).astype(jnp.int32)
    yi = jnp.clip(ys, 0, h - 1).astype(jnp.int32)
    idx = (yi * w + xi).reshape(b, -1, 1)
    vals = jnp.take_along_axis(flat, idx, axis=1).reshape(*xs.shape, c)
    return vals * (weight * valid).astype(image.dtype)[..., None]

  return (tap(x0, y0, wx0 * wy0) + tap(x1, y0, wx1 * wy0) +
          tap(x0, y1, wx0 * wy1) + tap(x1, y1, wx1 * wy1))


@functools.lru_cache(maxsize=None)
def _align_corners_matrix(n_out: int, n_in: int) -> np.ndarray:
  """(n_out, n_in) linear-interpolation matrix with align_corners=True sampling positions."""
  m = np.zeros((n_out, n_in), np.float64)
  pos = np.zeros(n_out) if n_out == 1 else np.arange(n_out) * (n_in - 1) / (n_out - 1)
  lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = pos - lo
  m[np.arange(n_out), lo] += 1.0 - frac
  m[np.arange(n_out), hi] += frac
  return m.astype(np.float32)


def resize_bilinear_align_corners(x: jax.Array, height: int, width: int) -> jax.Array:
  """F.interpolate(mode='bilinear', align_corners=True) on NHWC, as two small matmuls."""
  if x.shape[1:3] == (height, width):
    return x
  my = jnp.asarray(_align_corners_matrix(height, x.shape[1]), x.dtype)
  mx = jnp.asarray(_align_corners_matrix(width, x.shape[2]), x.dtype)
  x = jnp.einsum("oh,bhwc->bowc", my, x, precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum("pw,bowc->bopc", mx, x, precision=jax.lax.Precision.HIGHEST)


def deform_input(features: jax.Array, deformation: jax.Array) -> jax.Array:
  """Warps features (B, H, W, C) by a flow (B, h, w, 2), resizing the flow first (generator convention)."""
  h, w = features.shape[1:3]
  deformation = resize_bilinear_align_corners(deformation, h, w)
  return grid_sample(features, deformation, align_corners=True)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling by an integer factor (F.interpolate default mode)."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def kp_to_gaussian(kp: jax.Array, height: int, width: int, variance: float) -> jax.Array:
  """exp(-|grid - kp|^2 / (2 variance)) for each keypoint: (B, K, 2) -> (B, H, W, K)."""
  grid = make_coordinate_grid(height, width, kp.dtype)
  diff = grid[None, :, :, None, :] - kp[:, None, None, :, :]
  return jnp.exp(-0.5 * jnp.sum(jnp.square(diff), axis=-1) / variance)
