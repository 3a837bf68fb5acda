"""Convolution with a different kernel per batch element, written with jax.lax.

Lowerings (benchmarked in experiments/benchmark_per_sample_conv.py, results in experiments/RESULTS.md):
- 'grouped': fold the batch into channels and run one grouped conv (feature_group_count = B), which is
  what the official PyTorch code does;
- 'vmap': vmap a single-sample conv over the batch (JAX emits the same grouped conv);
- 'im2col': the kh*kw shifted views concatenated into (B, H'*W', kh*kw*Cin) patches and one batched
  matmul. XLA:CPU runs grouped convs (and above all their kernel gradient) 10-45x slower than this;
- 'auto' (default): 'im2col' on CPU, 'grouped' elsewhere (cuDNN/TPU grouped convs are not pathological,
  and im2col's patches cost kh*kw times the input's memory).
All lowerings give the same result up to float rounding (tests/test_nn_per_sample_conv.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_METHOD = "auto"
METHODS = ("auto", "grouped", "vmap", "im2col")


def resolve_method(method: str) -> str:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if method == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "grouped"
  return method


def _im2col(x: jax.Array, kernels: jax.Array, padding: int, precision) -> jax.Array:
  b, kh, kw, cin, cout = kernels.shape
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  views = [xp[:, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)]  # Row-major taps = HWIO.
  patches = jnp.concatenate(views, axis=-1).reshape(b, ho * wo, kh * kw * cin)
  out = jnp.einsum("bpk,bko->bpo", patches, kernels.reshape(b, kh * kw * cin, cout),
                   precision=precision)
  return out.reshape(b, ho, wo, cout)


def per_sample_conv(x: jax.Array, kernels: jax.Array, padding: int, method: str = DEFAULT_METHOD,
                    precision=None) -> jax.Array:
  """x: (B, H, W, Cin); kernels: (B, kh, kw, Cin, Cout) -> (B, H', W', Cout), stride 1."""
  method = resolve_method(method)
  b, h, w, cin = x.shape
  cout = kernels.shape[-1]
  if method == "im2col":
    return _im2col(x, kernels, padding, precision)
  pad = ((padding, padding), (padding, padding))
  dn = ("NHWC", "HWIO", "NHWC")
  if method == "vmap":
    def one(xi, ki):
      return jax.lax.conv_general_dilated(xi[None], ki, (1, 1), pad, dimension_numbers=dn,
                                          precision=precision)[0]
    return jax.vmap(one)(x, kernels)
  # (B, H, W, Cin) -> (1, H, W, B*Cin); kernel (kh, kw, Cin, B*Cout) with group g = sample g.
  xg = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h, w, b * cin)
  kh, kw = kernels.shape[1:3]
  kg = jnp.transpose(kernels, (1, 2, 3, 0, 4)).reshape(kh, kw, cin, b * cout)
  out = jax.lax.conv_general_dilated(xg, kg, (1, 1), pad, dimension_numbers=dn,
                                     feature_group_count=b, precision=precision)
  ho, wo = out.shape[1:3]
  return jnp.transpose(out.reshape(ho, wo, b, cout), (2, 0, 1, 3))
