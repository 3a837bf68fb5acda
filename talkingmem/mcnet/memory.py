"""MCNet's memory unit: implicit scale conditioned memory (ISCM) + memory compensation module (MCM).

One unit is shared by all decoder levels (as the official `ExpendMemoryUnit`); only the input
projection and the output conv/norm are per level, sized from that level's channel count.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkingmem.nn.attention import flash_memory_cross_attention, memory_cross_attention
from talkingmem.nn.blocks import InstanceNorm, conv, torch_default_init
from talkingmem.nn.dynamic_conv import DynamicConv
from talkingmem.nn.modulated_conv import StyleConv
from talkingmem.nn.per_sample_conv import DEFAULT_METHOD
from talkingmem.nn.warp import resize_bilinear_align_corners


def split_even_odd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Interleaved channel split: (even channels, odd channels)."""
  return x[..., 0::2], x[..., 1::2]


def merge_even_odd(even: jax.Array, odd: jax.Array) -> jax.Array:
  """Inverse of split_even_odd: channel 2i from `even`, 2i+1 from `odd`."""
  return jnp.stack([even, odd], axis=-1).reshape(*even.shape[:-1], 2 * even.shape[-1])


class MemoryUnit(nn.Module):
  """Compensates warped features with a learned global meta-memory conditioned on the source.

  level_channels: {level: channel count of the feature map the unit sees at that level}.
  Call with the level to use that level's projection/output layers.
  """
  level_channels: tuple[tuple[int, int], ...]
  memory_channels: int = 512
  memory_size: int = 32
  style_dim: int = 512
  style_hidden: int = 128
  num_kernels: int = 4
  kernel_temperature: float = 34.0
  attention_scale: float = 0.25
  attention_chunk: int | None = None
  attention_impl: str = "plain"  # 'plain' or 'flash' (nn/attention.py: custom VJP, no score matrix kept)
  # ISCM inputs (paper Table 4 ablations "ISCM w/o keypoints" / "ISCM w/o F_proj"); both in the paper.
  iscm_keypoints: bool = True
  iscm_features: bool = True
  conv_method: str = DEFAULT_METHOD

  @nn.compact
  def __call__(self, x: jax.Array, kp_source: jax.Array, level: int,
               noise: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x: (B, H, W, C) warped features at decoder `level`; kp_source: (B, K, 2) -> (output, internals)."""
    c, s, b = self.memory_channels, self.memory_size, x.shape[0]
    level_channels = dict(self.level_channels)
    if level not in level_channels:
      raise ValueError(f"memory unit has no layers for level {level}; it has {sorted(level_channels)}")
    meta_memory = self.param(
        "memory", nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=(1, 2, 3),
                                                   out_axis=0), (1, s, s, c))
    same, processed = split_even_odd(x)
    feat = conv(c, 1, name=f"feat_proj_{level}")(processed)
    # ISCM: an implicit scale code from pooled features and source keypoints conditions the memory.
    style_in = jnp.concatenate(iscm_inputs(feat, kp_source, self.iscm_features, self.iscm_keypoints),
                               axis=-1)
    hidden = nn.relu(nn.Dense(self.style_hidden, kernel_init=torch_default_init, name="style_fc1")(style_in))
    style = nn.Dense(self.style_dim, kernel_init=torch_default_init, name="style_fc2")(hidden)
    memory = jnp.broadcast_to(meta_memory, (b, s, s, c))
    memory = StyleConv(c, conv_method=self.conv_method, name="styleconv")(memory, style, noise)
    # MCM: a feature-chosen dynamic kernel turns the conditioned memory into keys and values.
    kv, kernel_attention = DynamicConv(2 * c, 3, self.num_kernels, self.kernel_temperature,
                                       conv_method=self.conv_method, name="conv_kv")(memory, feat)
    key, value = jnp.split(nn.relu(kv), 2, axis=-1)
    query = nn.relu(conv(c, 1, name="query_conv")(feat))
    if self.attention_impl == "flash":
      residual = flash_memory_cross_attention(query, key, value, self.attention_scale,
                                              self.attention_chunk or 1024)
    elif self.attention_impl == "plain":
      residual = memory_cross_attention(query, key, value, self.attention_scale, self.attention_chunk)
    else:
      raise ValueError(f"memory.attention_impl must be 'plain' or 'flash', got {self.attention_impl!r}")
    out = feat + nn.relu(conv(c, 1, name="diff_conv")(feat - residual))
    half = level_channels[level] // 2
    out = nn.relu(InstanceNorm(half, name=f"out_norm_{level}")(conv(half, 3, 1, name=f"out_conv_{level}")(out)))
    internals = {"feat": feat, "query": query, "key": key, "value": value, "memory": memory,
                 "residual": residual, "style_input": style_in, "style": style,
                 "kernel_attention": kernel_attention}
    return merge_even_odd(same, out), internals


def iscm_inputs(feat: jax.Array, kp_source: jax.Array, features: bool, keypoints: bool
                ) -> list[jax.Array]:
  """ISCM's input parts: the pooled projected feature and/or the flattened source keypoints."""
  if not (features or keypoints):
    raise ValueError("memory.iscm_features and memory.iscm_keypoints are both False: the implicit scale "
                     "code needs at least one input (use model.use_memory=False for no memory at all)")
  return ([jnp.mean(feat, axis=(1, 2))] if features else []) + (
      [kp_source.reshape(kp_source.shape[0], -1)] if keypoints else [])


def memory_target(feat: jax.Array, size: tuple[int, int]) -> jax.Array:
  """The projected features resized to the memory's size (bilinear, align_corners=True, no anti-alias)."""
  return resize_bilinear_align_corners(feat, *size)


def memory_consistency(feat: jax.Array, value: jax.Array) -> jax.Array:
  """mean |value - stopgrad(resize(feat -> memory size))|: ties memory values to projected features.

  Only the value branch is pulled toward the features; the features are the target (as official).
  """
  target = memory_target(feat, value.shape[1:3])
  return jnp.mean(jnp.abs(value - jax.lax.stop_gradient(target)))
