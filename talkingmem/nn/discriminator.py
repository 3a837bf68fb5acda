"""FOMM's multi-scale patch discriminator with keypoint heatmaps, and its LSGAN losses.

MCNet's official run trains it (discriminator_gan 1) but sets generator_gan 0, so the generator
never sees it; it is here for runs that turn the GAN on. Params are named after the official keys:
`discs.{s}.down_blocks.{i}.conv.weight` <-> `discs_{s}/down_blocks_{i}/conv/kernel` (OIHW -> HWIO),
`...norm.weight/bias` <-> `.../norm/scale|bias`, `discs.{s}.conv.*` <-> `discs_{s}/conv/*`; see
`convert_discriminator`. Spectral norm (FOMM's `sn`) is not implemented; MCNet's config disables it.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkingmem.nn.antialias import antialias_downsample
from talkingmem.nn.blocks import InstanceNorm, conv
from talkingmem.nn.warp import kp_to_gaussian


def scale_key(scale: float) -> str:
  """The official ModuleDict key of a scale: str(scale) with '.' -> '-' (1 -> '1', 0.5 -> '0-5')."""
  return f"{float(scale):g}".replace(".", "-")


class DiscriminatorOutput(NamedTuple):
  feature_maps: list[jax.Array]  # One per down block, for feature matching.
  prediction_map: jax.Array  # (B, h, w, 1) patch scores.


class DownBlock(nn.Module):
  """conv 4x4 (no padding) -> [InstanceNorm] -> LeakyReLU(0.2) -> [avg-pool 2]."""
  features: int
  norm: bool
  pool: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if min(x.shape[1:3]) < 4:
      raise ValueError(f"{x.shape[1:3]} maps are too small for a 4x4 valid conv; use larger images, "
                       "fewer blocks or fewer scales")
    x = conv(self.features, 4, 0, name="conv")(x)
    if self.norm:
      x = InstanceNorm(self.features, name="norm")(x)
    x = nn.leaky_relu(x, 0.2)
    if self.pool:
      x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    return x


class Discriminator(nn.Module):
  """One patch discriminator; the image is concatenated with Gaussian keypoint heatmaps."""
  block_expansion: int = 32
  max_features: int = 512
  num_blocks: int = 4
  use_kp: bool = True
  kp_variance: float = 0.01

  @nn.compact
  def __call__(self, x: jax.Array, kp_value: jax.Array | None = None) -> DiscriminatorOutput:
    if self.use_kp:
      if kp_value is None:
        raise ValueError("use_kp=True needs keypoints")
      heatmap = kp_to_gaussian(kp_value, x.shape[1], x.shape[2], self.kp_variance).astype(x.dtype)
      x = jnp.concatenate([x, heatmap], axis=-1)
    feature_maps = []
    for i in range(self.num_blocks):
      features = min(self.max_features, self.block_expansion * 2 ** (i + 1))
      x = DownBlock(features, norm=i != 0, pool=i != self.num_blocks - 1, name=f"down_blocks_{i}")(x)
      feature_maps.append(x)
    return DiscriminatorOutput(feature_maps, conv(1, 1, 0, name="conv")(x))


class MultiScaleDiscriminator(nn.Module):
  """One Discriminator per scale of the image pyramid (official vox-256: scales (1,))."""
  scales: Sequence[float] = (1,)
  block_expansion: int = 32
  max_features: int = 512
  num_blocks: int = 4
  use_kp: bool = True
  kp_variance: float = 0.01

  @nn.compact
  def __call__(self, images: jax.Array | Mapping[float, jax.Array],
               kp: jax.Array | Mapping[str, jax.Array] | None = None
               ) -> dict[float, DiscriminatorOutput]:
    """images: (B, H, W, C) or a pyramid {scale: image}; kp: (B, K, 2) or a kp dict.

    Pass stop_gradient'ed keypoints (FOMM detaches them) and, for the discriminator's own loss, a
    stop_gradient'ed prediction.
    """
    kp_value = kp["value"] if isinstance(kp, Mapping) else kp
    out = {}
    for s in self.scales:
      image = images[s] if isinstance(images, Mapping) else antialias_downsample(images, float(s))
      disc = Discriminator(self.block_expansion, self.max_features, self.num_blocks, self.use_kp,
                           self.kp_variance, name=f"discs_{scale_key(s)}")
      out[s] = disc(image, kp_value)
    return out


# ------------------------------------------------------------------------------------ losses


def generator_gan_loss(fake: Mapping[float, DiscriminatorOutput], weight: float = 1.0) -> jax.Array:
  """LSGAN generator term: weight * sum_scales mean((1 - D(fake))^2)."""
  return weight * sum(jnp.mean(jnp.square(1.0 - o.prediction_map)) for o in fake.values())


def discriminator_gan_loss(real: Mapping[float, DiscriminatorOutput],
                           fake: Mapping[float, DiscriminatorOutput],
                           weight: float = 1.0) -> jax.Array:
  """LSGAN discriminator term: weight * sum_scales mean((1 - D(real))^2 + D(fake)^2)."""
  return weight * sum(
      jnp.mean(jnp.square(1.0 - real[s].prediction_map) + jnp.square(fake[s].prediction_map))
      for s in real)


def feature_matching_loss(real: Mapping[float, DiscriminatorOutput],
                          fake: Mapping[float, DiscriminatorOutput],
                          weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0)) -> jax.Array:
  """sum_scales sum_blocks w_i * mean|D_i(real) - D_i(fake)|; the real features are targets."""
  total = jnp.zeros((), jnp.float32)
  for s in real:
    for w, a, b in zip(weights, real[s].feature_maps, fake[s].feature_maps):
      total = total + w * jnp.mean(jnp.abs(jax.lax.stop_gradient(a) - b))
  return total


# ---------------------------------------------------------------------------- conversion


def convert_discriminator(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Official `discriminator` state dict (`discs.*`, optional `module.` prefix) -> our params."""
  params: dict[str, Any] = {}
  for key, value in state_dict.items():
    parts = key.removeprefix("module.").split(".")
    if parts[0] != "discs" or parts[-1] not in ("weight", "bias"):
      raise ValueError(f"unexpected discriminator key {key!r}")
    value = np.asarray(value, np.float32)
    path = [f"discs_{parts[1]}"]
    rest = parts[2:-1]
    if rest[:1] == ["down_blocks"]:
      path.append(f"down_blocks_{rest[1]}")
      rest = rest[2:]
    if rest not in (["conv"], ["norm"]):
      raise ValueError(f"unexpected discriminator key {key!r}")
    path.append(rest[0])
    if rest == ["conv"]:
      leaf = "kernel" if parts[-1] == "weight" else "bias"
      if leaf == "kernel":
        value = value.transpose(2, 3, 1, 0)
    else:
      leaf = "scale" if parts[-1] == "weight" else "bias"
    node = params
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = value
  return params
