"""Dense motion network (FOMM): per-keypoint local affine motions blended by a predicted mask."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkingmem.nn.antialias import antialias_downsample
from talkingmem.nn.blocks import Hourglass, conv
from talkingmem.nn.warp import grid_sample, kp_to_gaussian, make_coordinate_grid


def inverse(matrices: jax.Array) -> jax.Array:
  """Inverse of (..., 2, 2) Jacobians in closed form, computed in float32 or wider, in the input dtype.

  Closed form rather than jnp.linalg.inv: LU lowers to LAPACK/cuSOLVER custom calls, which have no
  bfloat16 kernel and which exported programs (TF SavedModel, other StableHLO runtimes) cannot run.
  """
  if matrices.shape[-2:] != (2, 2):
    raise ValueError(f"expected (..., 2, 2) matrices, got {matrices.shape}")
  m = matrices.astype(jnp.promote_types(matrices.dtype, jnp.float32))
  a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
  inv = jnp.stack([jnp.stack([d, -b], -1), jnp.stack([-c, a], -1)], -2) / (a * d - b * c)[..., None, None]
  return inv.astype(matrices.dtype)


def sparse_motions(kp_source: dict, kp_driving: dict, height: int, width: int) -> jax.Array:
  """Driving->source coordinates per keypoint, identity first: (B, H, W, K+1, 2).

  motion_k(z) = J_s,k J_d,k^-1 (z - kp_d,k) + kp_s,k (first-order Taylor expansion around kp_d,k).
  """
  value_d, value_s = kp_driving["value"], kp_source["value"]
  b = value_d.shape[0]
  grid = make_coordinate_grid(height, width, value_d.dtype)
  coords = grid[None, :, :, None, :] - value_d[:, None, None, :, :]  # (B, H, W, K, 2)
  if "jacobian" in kp_driving and "jacobian" in kp_source:
    jac = kp_source["jacobian"] @ inverse(kp_driving["jacobian"])  # (B, K, 2, 2)
    coords = jnp.einsum("bkij,bhwkj->bhwki", jac, coords)
  motions = coords + value_s[:, None, None, :, :]
  identity = jnp.broadcast_to(grid[None, :, :, None, :], (b, height, width, 1, 2))
  return jnp.concatenate([identity, motions], axis=3)


class DenseMotionNetwork(nn.Module):
  """Predicts the dense deformation (B, h, w, 2) and occlusion map (B, h, w, 1) at the downsampled size."""
  num_kp: int
  block_expansion: int
  max_features: int
  num_blocks: int
  scale_factor: float = 0.25
  kp_variance: float = 0.01
  estimate_occlusion_map: bool = True

  @nn.compact
  def __call__(self, source: jax.Array, kp_driving: dict, kp_source: dict,
               train: bool = False) -> dict[str, jax.Array]:
    source = antialias_downsample(source, self.scale_factor)
    b, h, w, c = source.shape
    k1 = self.num_kp + 1
    heat = (kp_to_gaussian(kp_driving["value"], h, w, self.kp_variance) -
            kp_to_gaussian(kp_source["value"], h, w, self.kp_variance))
    heat = jnp.concatenate([jnp.zeros((b, h, w, 1), heat.dtype), heat], axis=-1)  # (B, h, w, K+1)
    motions = sparse_motions(kp_source, kp_driving, h, w)  # (B, h, w, K+1, 2)
    # Source warped by every sparse motion; the official code samples with align_corners=False here.
    src = jnp.broadcast_to(source[:, None], (b, k1, h, w, c)).reshape(b * k1, h, w, c)
    grid = jnp.transpose(motions, (0, 3, 1, 2, 4)).reshape(b * k1, h, w, 2)
    deformed = grid_sample(src, grid, align_corners=False).reshape(b, k1, h, w, c)
    deformed = jnp.transpose(deformed, (0, 2, 3, 1, 4))  # (B, h, w, K+1, C)
    # Channel order per slot [heatmap, R, G, B], slots background-first, as the official input.
    x = jnp.concatenate([heat[..., None], deformed], axis=-1).reshape(b, h, w, k1 * (c + 1))
    features = Hourglass(self.block_expansion, k1 * (c + 1), self.max_features, self.num_blocks,
                         name="hourglass")(x, train)
    mask = jax.nn.softmax(conv(k1, 7, 3, name="mask")(features), axis=-1)
    out = {"sparse_deformed": deformed, "mask": mask,
           "deformation": jnp.einsum("bhwk,bhwkc->bhwc", mask, motions)}
    if self.estimate_occlusion_map:
      out["occlusion_map"] = jax.nn.sigmoid(conv(1, 7, 3, name="occlusion")(features))
    return out
