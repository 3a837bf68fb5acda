"""Keypoint detector (FOMM): hourglass on an anti-aliased downsampled image, heatmap softmax, Jacobians."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkingmem.nn.antialias import antialias_downsample
from talkingmem.nn.blocks import Hourglass, conv
from talkingmem.nn.warp import make_coordinate_grid


def _jacobian_bias_init(num_kp: int):
  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.tile(jnp.array([1.0, 0.0, 0.0, 1.0], dtype), num_kp).reshape(shape)
  return init


class KPDetector(nn.Module):
  """Returns {'value': (B, K, 2) in [-1, 1] as (x, y), 'jacobian': (B, K, 2, 2)} and the heatmaps."""
  num_kp: int
  block_expansion: int
  max_features: int
  num_blocks: int
  temperature: float = 0.1
  scale_factor: float = 0.25
  estimate_jacobian: bool = True
  pad: int = 0

  @nn.compact
  def __call__(self, image: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    x = antialias_downsample(image, self.scale_factor)
    features = Hourglass(self.block_expansion, image.shape[-1], self.max_features, self.num_blocks,
                         name="predictor")(x, train)
    logits = conv(self.num_kp, 7, self.pad, name="kp")(features)  # (B, h, w, K)
    b, h, w, k = logits.shape
    heatmap = jax.nn.softmax(logits.reshape(b, h * w, k) / self.temperature, axis=1).reshape(b, h, w, k)
    grid = make_coordinate_grid(h, w, logits.dtype)
    out = {"value": spatial_expectation(heatmap, jnp.broadcast_to(grid[:, :, None, :], (h, w, k, 2))),
           "heatmap": heatmap, "heatmap_logits": logits}
    if self.estimate_jacobian:
      jac_map = nn.Conv(4 * k, (7, 7), padding=((self.pad, self.pad),) * 2,
                        kernel_init=nn.initializers.zeros, bias_init=_jacobian_bias_init(k),
                        name="jacobian")(features)
      jac = spatial_expectation(heatmap, jac_map.reshape(b, h, w, k, 4))
      out["jacobian"] = jac.reshape(b, k, 2, 2)
    return out


def spatial_expectation(heatmap: jax.Array, values: jax.Array) -> jax.Array:
  """sum_{y,x} heatmap[b,y,x,k] * values[(b,)y,x,k,c] -> (B, K, C).

  Summed over x then y rather than as one contraction over h*w: XLA:CPU accumulates a long
  contraction sequentially, which costs ~1e-5 on the Jacobians against the official float32 outputs.
  """
  return jnp.sum(jnp.sum(heatmap[..., None] * values, axis=2), axis=1)
