"""MemFace's neural renderer with the explicit memory (paper Sec. 3.3, Fig. 4), NHWC, Flax Linen.

A pix2pix-style U-Net takes the shaded render of the 3D face and the masked template frame
(concatenated, 6 channels) and outputs the frame (sigmoid, [0, 1]). Between encoder and decoder the
memory is read: the query is the frame's mouth vertices (M*3), the keys are memory mouth vertices
and the weights are softmax(-d / temperature) with d the RMS vertex distance divided by the
speaker's mouth-shape spread (`key_scale`), so the temperature is unit-free. The read is the
weighted mixture of the values (mouth patches, p x p x 3); a small conv encoder brings it to the
bottleneck's size and it is concatenated with the bottleneck features and merged by a conv.

Variants (`config.memory`):
  'explicit'  keys/values from the speaker's video (data_pipelines/speech/explicit_memory.py), passed
              in `memory` (one speaker, or stacked speakers + the batch's `speaker` index);
  'implicit'  the ablation "w/ impl. mem.": N learned keys (in the query space standardised by
              `memory['key_mean']`, `memory['key_scale']` when given) and N learned patches;
  'none'      the ablation "w/o mem.": the same U-Net without the memory branch.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from talkingmem.nn.blocks import InstanceNorm
from talkingmem.nn.discriminator import MultiScaleDiscriminator

MEMORY_KINDS = ("explicit", "implicit", "none")
_MASKED = -1e9  # Logit of excluded / padding slots (finite: no NaN if everything is excluded).


def default_config() -> ml_collections.ConfigDict:
  """The renderer's sizes (configs/memface_renderer.py overrides them per variant)."""
  return ml_collections.ConfigDict(dict(
      image_size=256, base_features=64, max_features=512, num_downs=6, memory="explicit",
      memory_size=300, patch_size=64, patch_features=64, temperature=0.1))


def rms_distance(query: jax.Array, keys: jax.Array) -> jax.Array:
  """(B, K) x (..., N, K) -> (B, ..., N) RMS distances (sqrt of the mean squared difference)."""
  q = query.reshape(query.shape[:1] + (1,) * (keys.ndim - 1) + query.shape[1:])
  return jnp.sqrt(jnp.mean(jnp.square(q - keys[None]), -1) + 1e-12)


def read_memory(query: jax.Array, keys: jax.Array, values: jax.Array, temperature: float,
                key_scale: jax.Array | float = 1.0, valid: jax.Array | None = None,
                speaker: jax.Array | None = None, exclude: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array]:
  """Attention read of a patch memory.

  Args:
    query: (B, K) mouth vertices.
    keys, values: (N, K), (N, p, p, C) for one memory, or (S, N, K), (S, N, p, p, C) for S speakers
      (then `speaker` (B,) picks each example's memory).
    temperature: softmax temperature of -distance / key_scale.
    key_scale: () or (S,) distance unit.
    valid: (N,) or (S, N) False for padding slots.
    speaker: (B,) int, with stacked memories.
    exclude: (B, N) or (B, S, N) True for slots an example must not read (leave-one-out training).

  Returns:
    read (B, p, p, C) and weights (B, N) or (B, S, N) (summing to 1 per example).
  """
  stacked = keys.ndim == 3
  if not stacked:
    keys, values = keys[None], values[None]
    valid = None if valid is None else valid[None]
    exclude = None if exclude is None else exclude[:, None]
    speaker = jnp.zeros(query.shape[:1], jnp.int32)
  elif speaker is None:
    raise ValueError("stacked (per-speaker) memories need the batch's speaker index")
  scale = jnp.reshape(jnp.asarray(key_scale, query.dtype), (-1, 1))  # (S or 1, 1)
  logits = -rms_distance(query, keys) / (scale[None] * temperature)  # (B, S, N)
  allowed = jax.nn.one_hot(speaker, keys.shape[0], dtype=bool)[:, :, None]
  if valid is not None:
    allowed = allowed & valid[None]
  if exclude is not None:
    allowed = allowed & ~exclude
  b, s, n = logits.shape
  weights = jax.nn.softmax(jnp.where(allowed, logits, _MASKED).reshape(b, s * n), -1)
  read = jnp.einsum("bm,mx->bx", weights, values.reshape(s * n, -1).astype(weights.dtype))
  read = read.reshape((b,) + values.shape[2:])
  weights = weights.reshape(b, s, n)
  return read, (weights if stacked else weights[:, 0])


class PatchEncoder(nn.Module):
  """Memory read (B, p, p, 3) -> features at the bottleneck's (h, w)."""
  features: int
  out_hw: tuple[int, int]

  @nn.compact
  def __call__(self, patch: jax.Array) -> jax.Array:
    x = nn.leaky_relu(nn.Conv(self.features, (3, 3), name="stem")(patch), 0.2)
    level = 0
    while x.shape[1] >= 2 * self.out_hw[0] and x.shape[1] >= 4:
      x = nn.Conv(self.features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                  name=f"down_{level}")(x)
      x = nn.leaky_relu(InstanceNorm(self.features, name=f"norm_{level}")(x), 0.2)
      level += 1
    if x.shape[1:3] != self.out_hw:
      x = jax.image.resize(x, (x.shape[0], *self.out_hw, x.shape[3]), "linear")
    return x


class NeuralRenderer(nn.Module):
  """U-Net renderer with a memory at the bottleneck (module docstring)."""
  config: ml_collections.ConfigDict

  def _features(self, level: int) -> int:
    c = self.config
    return min(int(c.max_features), int(c.base_features) * 2 ** level)

  @nn.compact
  def __call__(self, rendered: jax.Array, masked: jax.Array, query_vertices: jax.Array,
               memory: Mapping[str, jax.Array] | None = None, train: bool = False,
               speaker: jax.Array | None = None, exclude: jax.Array | None = None,
               return_weights: bool = False) -> Any:
    """(B, H, W, 3) render + masked frame, (B, M*3) query -> (B, H, W, 3) in [0, 1]
    (with return_weights: (image, attention weights or None))."""
    del train  # No dropout / batch statistics: train and eval are the same function.
    c = self.config
    if c.memory not in MEMORY_KINDS:
      raise ValueError(f"config.memory must be one of {MEMORY_KINDS}, got {c.memory!r}")
    downs = int(c.num_downs)
    size = rendered.shape[1]
    if rendered.shape[1] != rendered.shape[2] or size % 2 ** downs:
      raise ValueError(f"images must be square with a side divisible by 2^{downs}, got "
                       f"{rendered.shape[1:3]} (config num_downs / image_size)")
    x = jnp.concatenate([rendered, masked], -1)
    skips = []
    for level in range(downs):  # Encoder: conv 4x4 / 2 -> [norm] -> LeakyReLU(0.2).
      f = self._features(level)
      x = nn.Conv(f, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), name=f"down_{level}")(x)
      if 0 < level < downs - 1:
        x = InstanceNorm(f, name=f"down_norm_{level}")(x)
      x = nn.leaky_relu(x, 0.2)
      skips.append(x)
    weights = None
    if c.memory != "none":
      read, weights = self._read(query_vertices, memory, speaker, exclude)
      patch = PatchEncoder(int(c.patch_features), x.shape[1:3], name="patch_encoder")(read)
      x = jnp.concatenate([x, patch.astype(x.dtype)], -1)
      x = nn.leaky_relu(nn.Conv(self._features(downs - 1), (3, 3), name="merge")(x), 0.2)
    for level in reversed(range(1, downs)):  # Decoder: up 4x4 / 2 -> norm -> ReLU, skip concat.
      f = self._features(level - 1)
      x = nn.ConvTranspose(f, (4, 4), strides=(2, 2), padding="SAME", name=f"up_{level}")(x)
      x = nn.relu(InstanceNorm(f, name=f"up_norm_{level}")(x))
      x = jnp.concatenate([x, skips[level - 1]], -1)
    x = nn.ConvTranspose(3, (4, 4), strides=(2, 2), padding="SAME", name="up_0")(x)
    image = nn.sigmoid(x)
    return (image, weights) if return_weights else image

  def _read(self, query, memory, speaker, exclude):
    c = self.config
    p, n = int(c.patch_size), int(c.memory_size)
    if c.memory == "explicit":
      if memory is None or "keys" not in memory:
        raise ValueError("memory='explicit' needs the speaker's explicit memory (keys, values, "
                         "...) from data_pipelines.speech.explicit_memory")
      if memory["keys"].shape[-1] != query.shape[-1]:
        raise ValueError(f"memory keys have {memory['keys'].shape[-1]} coordinates, the query "
                         f"{query.shape[-1]}")
      return read_memory(query, memory["keys"], memory["values"], float(c.temperature),
                         memory.get("key_scale", 1.0), memory.get("valid"), speaker, exclude)
    keys = self.param("keys", nn.initializers.normal(1.0), (n, query.shape[-1]))
    values = self.param("values", lambda k, s: 0.5 + 0.1 * jax.random.normal(k, s), (n, p, p, 3))
    if memory is not None and "key_mean" in memory:  # Learned keys live in standardised units.
      query = (query - memory["key_mean"]) / memory["key_scale"]
    return read_memory(query, keys, values, float(c.temperature))


class PatchDiscriminator(nn.Module):
  """Conditional PatchGAN: FOMM's patch discriminator (talkingmem/nn/discriminator.py, no
  keypoints, one scale) on the image concatenated with the renderer's inputs."""
  block_expansion: int = 64
  max_features: int = 512
  num_blocks: int = 4

  @nn.compact
  def __call__(self, image: jax.Array, rendered: jax.Array, masked: jax.Array):
    x = jnp.concatenate([image, rendered, masked], -1)
    return MultiScaleDiscriminator(scales=(1,), block_expansion=self.block_expansion,
                                   max_features=self.max_features, num_blocks=self.num_blocks,
                                   use_kp=False, name="patchgan")(x)
