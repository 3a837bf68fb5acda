"""Dynamic convolution (Chen et al. 2020): K kernels mixed per sample by a softmax attention."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkingmem.nn.blocks import torch_default_init
from talkingmem.nn.per_sample_conv import DEFAULT_METHOD, per_sample_conv


class KernelAttention(nn.Module):
  """softmax(fc2(relu(fc1(GAP(x)))) / temperature) over the K kernels; fc1 has no bias."""
  num_kernels: int
  ratio: float = 0.25
  temperature: float = 34.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = int(x.shape[-1] * self.ratio) + 1
    pooled = jnp.mean(x, axis=(1, 2))
    h = nn.relu(nn.Dense(hidden, use_bias=False, kernel_init=torch_default_init, name="fc1")(pooled))
    logits = nn.Dense(self.num_kernels, kernel_init=torch_default_init, name="fc2")(h)
    return jax.nn.softmax(logits / self.temperature, axis=-1)


class DynamicConv(nn.Module):
  """Applies to `x` the kernel sum_k a_k W_k (and bias sum_k a_k b_k), with `a` computed from `context`.

  In MCNet the kernel is chosen from the projected features (context) and applied to the memory (x).
  """
  features: int
  kernel_size: int = 3
  num_kernels: int = 4
  temperature: float = 34.0
  ratio: float = 0.25
  conv_method: str = DEFAULT_METHOD

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    k, cin = self.kernel_size, x.shape[-1]
    attention = KernelAttention(self.num_kernels, self.ratio, self.temperature, name="attention")(context)
    fan_in_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=(1, 2, 3),
                                                   out_axis=4, batch_axis=(0,))
    weight = self.param("weight", fan_in_init, (self.num_kernels, k, k, cin, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.num_kernels, self.features))
    kernels = jnp.einsum("bk,khwio->bhwio", attention, weight)
    out = per_sample_conv(x, kernels, k // 2, self.conv_method)
    return out + (attention @ bias)[:, None, None, :], attention
