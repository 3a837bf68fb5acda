"""StyleGAN2 modulated/demodulated convolution with noise injection and fused leaky ReLU (StyleConv)."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkingmem.nn.per_sample_conv import DEFAULT_METHOD, per_sample_conv


class EqualLinear(nn.Module):
  """Linear layer with the equalised-learning-rate runtime scale 1/sqrt(in) (lr_mul = 1)."""
  features: int
  bias_init_value: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    weight = self.param("weight", nn.initializers.normal(1.0), (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.constant(self.bias_init_value), (self.features,))
    return x @ (weight * (1.0 / math.sqrt(x.shape[-1]))) + bias


class StyleConv(nn.Module):
  """Modulated conv (per-sample kernels from a style vector), then noise, then sqrt(2)*leaky_relu(x+b).

  `noise` is explicit so evaluation is deterministic: None adds nothing, an array (B, H, W, 1) is scaled
  by the learned strength (zero at init), as StyleGAN2's NoiseInjection.
  """
  features: int
  kernel_size: int = 3
  demodulate: bool = True
  conv_method: str = DEFAULT_METHOD

  @nn.compact
  def __call__(self, x: jax.Array, style: jax.Array, noise: jax.Array | None = None) -> jax.Array:
    cin = x.shape[-1]
    k = self.kernel_size
    style = EqualLinear(cin, bias_init_value=1.0, name="modulation")(style)  # (B, Cin)
    weight = self.param("weight", nn.initializers.normal(1.0), (k, k, cin, self.features))
    w = weight[None] * (1.0 / math.sqrt(cin * k * k)) * style[:, None, None, :, None]
    if self.demodulate:
      w = w * jax.lax.rsqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3), keepdims=True) + 1e-8)
    out = per_sample_conv(x, w, k // 2, self.conv_method)
    strength = self.param("noise_strength", nn.initializers.zeros, (1,))
    if noise is not None:
      out = out + strength * noise
    bias = self.param("activation_bias", nn.initializers.zeros, (self.features,))
    return nn.leaky_relu(out + bias, 0.2) * math.sqrt(2.0)
