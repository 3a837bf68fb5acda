"""Separable matrix filtering against direct NumPy correlation and the 2-D depthwise convolution."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.nn.antialias import antialias_downsample, gaussian_kernel
from talkingmem.nn.separable import filter_hw, filter_matrix


def _correlate_numpy(x, taps_h, taps_w, stride, pad):
  """Direct 2-D correlation of (B, H, W, C) with the outer-product kernel, zero padding and stride."""
  kernel = np.outer(taps_h, taps_w)
  xp = np.pad(x, ((0, 0), pad, pad, (0, 0)))
  k = kernel.shape[0]
  out_h = (xp.shape[1] - k) // stride + 1
  out_w = (xp.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
  for i in range(out_h):
    for j in range(out_w):
      patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k]
      out[:, i, j] = np.einsum("bhwc,hw->bc", patch, kernel)
  return out


@pytest.mark.parametrize("stride,pad", [(1, (0, 0)), (2, (3, 3)), (4, (2, 1))])
def test_filter_hw_matches_direct_correlation(stride, pad):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 13, 11, 3))
  taps = tuple(rng.uniform(size=5))
  rows = filter_matrix(13, taps, stride, *pad)
  cols = filter_matrix(11, taps, stride, *pad)
  got = np.asarray(filter_hw(jnp.asarray(x, jnp.float32), rows, cols))
  np.testing.assert_allclose(got, _correlate_numpy(x, taps, taps, stride, pad), atol=1e-5)


def test_filter_matrix_rejects_a_filter_longer_than_the_signal():
  with pytest.raises(ValueError, match="does not fit"):
    filter_matrix(4, (1.0,) * 7)


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.125])
def test_antialias_downsample_equals_the_official_depthwise_convolution(scale):
  """The official module: conv2d with the 2-D kernel, groups=C, zero padding (ka, kb), stride 1/scale."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(size=(2, 64, 48, 3)), jnp.float32)
  kernel = gaussian_kernel(scale)
  ka = kernel.shape[0] // 2
  kb = ka - 1 if kernel.shape[0] % 2 == 0 else ka
  step = int(1 / scale)
  k = jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, 3)))
  want = jax.lax.conv_general_dilated(x, k, (step, step), ((ka, kb), (ka, kb)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=3,
                                      precision=jax.lax.Precision.HIGHEST)
  got = antialias_downsample(x, scale)
  assert got.shape == want.shape == (2, int(64 * scale), int(48 * scale), 3)
  np.testing.assert_allclose(got, want, atol=2e-6)
  # Gradients agree too (the reason for the matrix form is a cheaper backward pass).
  w = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
  g_got = jax.grad(lambda v: jnp.sum(antialias_downsample(v, scale) * w))(x)
  g_want = jax.grad(lambda v: jnp.sum(jax.lax.conv_general_dilated(
      v, k, (step, step), ((ka, kb), (ka, kb)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=3, precision=jax.lax.Precision.HIGHEST) * w))(x)
  np.testing.assert_allclose(g_got, g_want, atol=1e-5)
