"""MCNet generator: U-Net encoder, per-level warping + occlusion, memory compensation, decoder, blend."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkingmem.mcnet.dense_motion import DenseMotionNetwork
from talkingmem.mcnet.memory import MemoryUnit
from talkingmem.nn.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, conv
from talkingmem.nn.per_sample_conv import DEFAULT_METHOD
from talkingmem.nn.warp import deform_input, resize_bilinear_align_corners


def encoder_channels(block_expansion: int, max_features: int, num_down_blocks: int) -> list[int]:
  """Channels of the encoder map at each level 0..num_down_blocks (level l is at 1/2^l resolution)."""
  return [min(max_features, block_expansion * 2 ** level) for level in range(num_down_blocks + 1)]


def decoder_channels(enc: Sequence[int]) -> list[tuple[int, int]]:
  """(input, output) channels of decoder step i; steps other than the first see [decoder, skip].

  At the official sizes (64, 512, 3 levels) this gives in [512, 512, 256], out [256, 128, 64].
  """
  n = len(enc) - 1
  return [(enc[n] if i == 0 else 2 * enc[n - i], enc[n - 1 - i]) for i in range(n)]


def memory_levels(num_down_blocks: int, layers: str = "all") -> list[int]:
  """Levels the memory unit compensates, deepest first: n, n-1, ..., 1 (never full resolution).

  layers='first': the deepest level only (paper Table 4, "MCNet (single layer)").
  """
  if layers not in ("all", "first"):
    raise ValueError(f"memory.layers must be 'all' or 'first', got {layers!r}")
  levels = list(range(num_down_blocks, 0, -1))
  return levels[:1] if layers == "first" else levels


REMAT_PARTS = ("memory", "decoder")
# jax.checkpoint policies: what the backward may keep from the forward of a rematerialised part.
REMAT_POLICIES = {"nothing": jax.checkpoint_policies.nothing_saveable,
                  "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}


def rematerialised(module_class, parts: str, part: str, policy: str, static_argnums: tuple[int, ...]):
  """module_class under jax.checkpoint when `part` is in the comma list `parts` (activation memory for
  compute: the part's forward runs again in the backward). Parameter names do not change."""
  chosen = [p for p in parts.split(",") if p]
  unknown = [p for p in chosen if p not in REMAT_PARTS]
  if unknown or policy not in REMAT_POLICIES:
    raise ValueError(f"generator.remat={parts!r} / remat_policy={policy!r}: parts are a comma list of "
                     f"{REMAT_PARTS}, policies one of {tuple(REMAT_POLICIES)}")
  if part not in chosen:
    return module_class
  return nn.remat(module_class, static_argnums=static_argnums, policy=REMAT_POLICIES[policy])


class Generator(nn.Module):
  """Returns the prediction (B, H, W, 3) and the intermediate outputs the losses and tools need."""
  num_kp: int
  block_expansion: int
  max_features: int
  num_down_blocks: int
  dense_motion: dict
  estimate_occlusion_map: bool = True
  use_memory: bool = True
  memory: dict | None = None
  conv_method: str = DEFAULT_METHOD
  remat: str = ""  # comma list of REMAT_PARTS run under jax.checkpoint
  remat_policy: str = "nothing"

  @nn.compact
  def __call__(self, source: jax.Array, kp_driving: dict, kp_source: dict, train: bool = False,
               noise: Sequence[jax.Array] | jax.Array | None = None) -> dict:
    """noise: None (deterministic), a PRNG key, or one (B, S, S, 1) array per memory call."""
    enc = encoder_channels(self.block_expansion, self.max_features, self.num_down_blocks)
    memory_options = dict(self.memory or {})
    levels = memory_levels(self.num_down_blocks, memory_options.pop("layers", "all"))
    unit = None
    # Static arguments (indices count the module as 0): the memory level, and BatchNorm's `train`.
    memory_class = rematerialised(MemoryUnit, self.remat, "memory", self.remat_policy, (3,))
    res_block = rematerialised(ResBlock2d, self.remat, "decoder", self.remat_policy, (2,))
    up_block = rematerialised(UpBlock2d, self.remat, "decoder", self.remat_policy, (2,))
    if self.use_memory:
      unit = memory_class(tuple((lvl, enc[lvl]) for lvl in levels), conv_method=self.conv_method,
                        name="memory_unit", **memory_options)
    noises = self._noise_per_call(noise, source.shape[0], len(levels))

    maps = [SameBlock2d(enc[0], 7, 3, name="first")(source, train)]
    for i in range(self.num_down_blocks):
      maps.append(DownBlock2d(enc[i + 1], name=f"down_blocks_{i}")(maps[-1], train))
    motion = DenseMotionNetwork(self.num_kp, estimate_occlusion_map=self.estimate_occlusion_map,
                                name="dense_motion_network", **self.dense_motion)(
                                    source, kp_driving, kp_source, train)
    deformation = motion["deformation"]
    occlusion = motion.get("occlusion_map")

    def warp(x: jax.Array) -> jax.Array:
      x = deform_input(x, deformation)
      if occlusion is not None:
        x = x * resize_bilinear_align_corners(occlusion, *x.shape[1:3])
      return x

    # Intermediates kept for losses, parity checks and pictures; unused ones are dropped under jit.
    out = {"motion": motion, "memory": [], "warped": [], "encoder_maps": maps, "decoder_stages": []}
    kp_values = kp_source["value"]
    x = warp(maps[-1])
    out["warped"].append(x)
    if unit is not None:
      x, internals = unit(x, kp_values, levels[0], noises[0])
      out["memory"].append(dict(internals, output=x))
    for i, (_, features) in enumerate(decoder_channels(enc)):
      ch = x.shape[-1]
      x = res_block(ch, name=f"resblock_{2 * i}")(x, train)
      x = res_block(ch, name=f"resblock_{2 * i + 1}")(x, train)
      out["decoder_stages"].append(x)
      x = up_block(features, name=f"up_blocks_{i}")(x, train)
      out["decoder_stages"].append(x)
      skip = warp(maps[-(i + 2)])
      out["warped"].append(skip)
      if i < self.num_down_blocks - 1:
        if unit is not None and levels[i + 1:]:
          skip, internals = unit(skip, kp_values, levels[i + 1], noises[i + 1])
          out["memory"].append(dict(internals, output=skip))
        x = jnp.concatenate([x, skip], axis=-1)
      elif occlusion is not None:
        x = x * (1 - resize_bilinear_align_corners(occlusion, *x.shape[1:3])) + skip
      else:
        x = x + skip
    x = jax.nn.sigmoid(conv(source.shape[-1], 7, 3, name="final")(x))
    deformed = deform_input(source, deformation)
    if occlusion is not None:
      occ = resize_bilinear_align_corners(occlusion, *x.shape[1:3])
      x = x * (1 - occ) + deformed * occ
    out.update(prediction=x, deformed=deformed, deformation=deformation, mask=motion["mask"],
               sparse_deformed=motion["sparse_deformed"])
    if occlusion is not None:
      out["occlusion_map"] = occlusion
    return out

  def _noise_per_call(self, noise, batch: int, calls: int) -> list:
    if noise is None or not self.use_memory:
      return [None] * calls
    if isinstance(noise, (list, tuple)):
      if len(noise) != calls:
        raise ValueError(f"expected {calls} StyleConv noise arrays (one per memory call), got {len(noise)}")
      return list(noise)
    size = (self.memory or {}).get("memory_size", 32)
    keys = jax.random.split(noise, calls)
    return [jax.random.normal(k, (batch, size, size, 1)) for k in keys]
