"""grid_sample and resizing against independent NumPy references of PyTorch's definitions."""
import numpy as np
import pytest
import jax.numpy as jnp

from talkingmem.nn.warp import grid_sample, make_coordinate_grid, resize_bilinear_align_corners


def _reference_grid_sample(img, grid, align_corners, padding):
  b, h, w, c = img.shape
  out = np.zeros(grid.shape[:3] + (c,))
  for n in range(b):
    for i in range(grid.shape[1]):
      for j in range(grid.shape[2]):
        gx, gy = grid[n, i, j]
        if align_corners:
          x, y = (gx + 1) / 2 * (w - 1), (gy + 1) / 2 * (h - 1)
        else:
          x, y = ((gx + 1) * w - 1) / 2, ((gy + 1) * h - 1) / 2
        if padding == "border":
          x, y = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        for xx, yy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
          wgt = (1 - abs(x - xx)) * (1 - abs(y - yy))
          if 0 <= xx < w and 0 <= yy < h:
            out[n, i, j] += wgt * img[n, yy, xx]
  return out


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_grid_sample_matches_reference(align_corners, padding):
  rng = np.random.default_rng(0)
  img = rng.normal(size=(2, 5, 7, 3))
  grid = rng.uniform(-1.3, 1.3, size=(2, 4, 6, 2))
  got = grid_sample(jnp.asarray(img, jnp.float32), jnp.asarray(grid, jnp.float32),
                    align_corners=align_corners, padding_mode=padding)
  np.testing.assert_allclose(got, _reference_grid_sample(img, grid, align_corners, padding), atol=1e-5)


def test_identity_grid_reproduces_image():
  img = np.random.default_rng(1).normal(size=(1, 6, 9, 2)).astype(np.float32)
  grid = make_coordinate_grid(6, 9)[None]
  np.testing.assert_allclose(grid_sample(jnp.asarray(img), grid, align_corners=True), img, atol=1e-6)


def test_reflection_padding_stays_in_range_and_mirrors():
  img = np.arange(5, dtype=np.float32).reshape(1, 1, 5, 1)
  # x = 1.5 in normalised coords is half a span beyond the right edge: mirrors to pixel 3.
  grid = jnp.asarray([[[[1.5, 0.0]]]], jnp.float32)
  got = grid_sample(jnp.asarray(img), grid, align_corners=True, padding_mode="reflection")
  np.testing.assert_allclose(np.asarray(got).ravel(), [3.0], atol=1e-6)


def test_resize_align_corners_keeps_corners_and_is_linear():
  x = np.random.default_rng(2).normal(size=(1, 4, 5, 2)).astype(np.float32)
  y = np.asarray(resize_bilinear_align_corners(jnp.asarray(x), 7, 9))
  for (i, j), (p, q) in {(0, 0): (0, 0), (0, 8): (0, 4), (6, 0): (3, 0), (6, 8): (3, 4)}.items():
    np.testing.assert_allclose(y[0, i, j], x[0, p, q], atol=1e-6)
  # Midpoint between rows 0 and 1 of the input lands at output row 1 (of 0..6, step 0.5).
  np.testing.assert_allclose(y[0, 1, 0], 0.5 * (x[0, 0, 0] + x[0, 1, 0]), atol=1e-6)
