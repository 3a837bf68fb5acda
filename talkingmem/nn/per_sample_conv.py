"""Convolution with a different kernel per batch element, written with jax.lax.

Two equivalent lowerings (benchmarked in experiments/benchmark_per_sample_conv.py):
- 'grouped': fold the batch into channels and run one grouped conv (feature_group_count = B), which is
  what the official PyTorch code does;
- 'vmap': vmap a single-sample conv over the batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_METHOD = "grouped"


def per_sample_conv(x: jax.Array, kernels: jax.Array, padding: int, method: str = DEFAULT_METHOD,
                    precision=None) -> jax.Array:
  """x: (B, H, W, Cin); kernels: (B, kh, kw, Cin, Cout) -> (B, H', W', Cout), stride 1."""
  b, h, w, cin = x.shape
  cout = kernels.shape[-1]
  pad = ((padding, padding), (padding, padding))
  dn = ("NHWC", "HWIO", "NHWC")
  if method == "vmap":
    def one(xi, ki):
      return jax.lax.conv_general_dilated(xi[None], ki, (1, 1), pad, dimension_numbers=dn,
                                          precision=precision)[0]
    return jax.vmap(one)(x, kernels)
  if method != "grouped":
    raise ValueError(f"method must be 'grouped' or 'vmap', got {method!r}")
  # (B, H, W, Cin) -> (1, H, W, B*Cin); kernel (kh, kw, Cin, B*Cout) with group g = sample g.
  xg = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h, w, b * cin)
  kh, kw = kernels.shape[1:3]
  kg = jnp.transpose(kernels, (1, 2, 3, 0, 4)).reshape(kh, kw, cin, b * cout)
  out = jax.lax.conv_general_dilated(xg, kg, (1, 1), pad, dimension_numbers=dn,
                                     feature_group_count=b, precision=precision)
  ho, wo = out.shape[1:3]
  return jnp.transpose(out.reshape(ho, wo, b, cout), (2, 0, 1, 3))
