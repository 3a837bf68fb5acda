"""Convolutional building blocks of the FOMM lineage (NHWC), named so official state dicts map 1:1.

Blocks take `train` to switch BatchNorm between batch statistics (train) and running averages (eval).
Under jit with a data-sharded batch, BatchNorm's batch mean/var are global reductions, i.e. synchronised BN.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkingmem.nn.warp import upsample_nearest

# PyTorch's default conv/linear weight init (kaiming_uniform, a=sqrt(5)) is U(±1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def conv(features: int, kernel: int, padding: int = 0, use_bias: bool = True, name: str | None = None,
         **kwargs) -> nn.Conv:
  """A square conv with symmetric zero padding, as torch.nn.Conv2d(kernel, padding)."""
  return nn.Conv(features, (kernel, kernel), padding=((padding, padding), (padding, padding)),
                 use_bias=use_bias, kernel_init=torch_default_init, name=name, **kwargs)


class TorchBatchNorm(nn.Module):
  """torch.nn.BatchNorm2d over the last axis, with flax.linen.BatchNorm's variable names.

  Normalises with the biased batch variance but keeps the unbiased one, N/(N-1) x, in the running
  variance, as torch does (flax keeps the biased one: at the keypoint detector's 4x4 level with a
  batch of 2 that is 1/31 = 3 % smaller). Statistics are computed in at least float32, two-pass.
  `momentum` is the weight of the old running value (torch's momentum 0.1 == 0.9 here).
  """
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features, axes = x.shape[-1], tuple(range(x.ndim - 1))
    stat_dtype = jnp.promote_types(x.dtype, jnp.float32)
    running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    running_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    scale = self.param("scale", nn.initializers.ones, (features,))
    bias = self.param("bias", nn.initializers.zeros, (features,))
    if self.use_running_average:
      mean, var = running_mean.value.astype(stat_dtype), running_var.value.astype(stat_dtype)
    else:
      xs = x.astype(stat_dtype)
      mean = jnp.mean(xs, axes)
      var = jnp.mean(jnp.square(xs - mean), axes)
      if not self.is_initializing():
        n = x.size // features
        unbiased = var * (n / max(n - 1, 1))
        m = self.momentum
        running_mean.value = m * running_mean.value + (1 - m) * jax.lax.stop_gradient(mean)
        running_var.value = m * running_var.value + (1 - m) * jax.lax.stop_gradient(unbiased)
    y = (x.astype(stat_dtype) - mean) * jax.lax.rsqrt(var + self.epsilon)
    return (y * scale + bias).astype(jnp.promote_types(x.dtype, scale.dtype))


def batch_norm(train: bool, name: str | None = None) -> TorchBatchNorm:
  return TorchBatchNorm(use_running_average=not train, name=name)


class SameBlock2d(nn.Module):
  """conv -> BN -> ReLU at the same resolution."""
  features: int
  kernel: int = 3
  padding: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = conv(self.features, self.kernel, self.padding, name="conv")(x)
    return nn.relu(batch_norm(train, "norm")(x))


class DownBlock2d(nn.Module):
  """conv 3x3 -> BN -> ReLU -> 2x2 average pool."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = conv(self.features, 3, 1, name="conv")(x)
    x = nn.relu(batch_norm(train, "norm")(x))
    return nn.avg_pool(x, (2, 2), (2, 2))


class UpBlock2d(nn.Module):
  """nearest x2 upsample -> conv 3x3 -> BN -> ReLU."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = conv(self.features, 3, 1, name="conv")(upsample_nearest(x, 2))
    return nn.relu(batch_norm(train, "norm")(x))


class ResBlock2d(nn.Module):
  """Pre-activation residual block: BN -> ReLU -> conv -> BN -> ReLU -> conv, plus identity."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = nn.relu(batch_norm(train, "norm1")(x))
    y = conv(self.features, 3, 1, name="conv1")(y)
    y = nn.relu(batch_norm(train, "norm2")(y))
    y = conv(self.features, 3, 1, name="conv2")(y)
    return x + y


def hourglass_channels(block_expansion: int, in_features: int, max_features: int,
                       num_blocks: int) -> tuple[list[int], list[int]]:
  """Output channels of the encoder's down blocks and the decoder's up blocks (in decoder order)."""
  down = [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
  up = [min(max_features, block_expansion * 2 ** i) for i in reversed(range(num_blocks))]
  return down, up


class Hourglass(nn.Module):
  """U-Net hourglass; output = concat(last up block, input) with block_expansion + in_features channels."""
  block_expansion: int
  in_features: int
  max_features: int
  num_blocks: int = 3

  @property
  def out_features(self) -> int:
    return self.block_expansion + self.in_features

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    down, up = hourglass_channels(self.block_expansion, self.in_features, self.max_features,
                                  self.num_blocks)
    skips = [x]
    for i, features in enumerate(down):
      skips.append(DownBlock2d(features, name=f"encoder_down_blocks_{i}")(skips[-1], train))
    out = skips.pop()
    for i, features in enumerate(up):
      out = UpBlock2d(features, name=f"decoder_up_blocks_{i}")(out, train)
      out = jnp.concatenate([out, skips.pop()], axis=-1)
    return out


def instance_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-5) -> jax.Array:
  """InstanceNorm2d(affine=True): per-sample, per-channel spatial statistics with biased variance.

  Means are taken over rows then columns: a single XLA:CPU reduction over H*W accumulates
  sequentially and loses float32 accuracy at 128x128 and above.
  """
  def spatial_mean(v):
    return jnp.mean(jnp.mean(v, axis=2, keepdims=True), axis=1, keepdims=True)
  mean = spatial_mean(x)
  var = spatial_mean(jnp.square(x - mean))
  return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


class InstanceNorm(nn.Module):
  """Affine instance norm with torch's initialisation (scale 1, bias 0)."""
  features: int
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (self.features,))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return instance_norm(x, scale, bias, self.eps)


def pool_mean(x: jax.Array, axes: Sequence[int] = (1, 2)) -> jax.Array:
  return jnp.mean(x, axis=tuple(axes))
