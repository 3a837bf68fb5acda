"""normalize_kp for animation: relative motion, relative Jacobians, movement scale by hull area."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from talkingmem.mcnet.dense_motion import inverse


def convex_hull_area(points: jax.Array) -> jax.Array:
  """Area of the convex hull of (..., N, 2) points; jit-able, O(N^3), exact for N of a few dozen.

  An ordered pair (i, j) is a counter-clockwise hull edge when every other point lies strictly left
  of i->j or on the closed segment [i, j]; the area is the shoelace sum over those edges.
  """
  p = points[..., :, None, :]  # i
  q = points[..., None, :, :]  # j
  r = points[..., None, None, :, :]  # k
  e = (q - p)[..., None, :]
  d = r - p[..., None, :]
  cross = e[..., 0] * d[..., 1] - e[..., 1] * d[..., 0]  # (..., i, j, k)
  on_segment = jnp.sum((r - p[..., None, :]) * (r - q[..., None, :]), axis=-1) <= 0
  ok = (cross > 0) | ((cross == 0) & on_segment)
  n = points.shape[-2]
  idx = jnp.arange(n)
  # Duplicated points would count an edge twice: keep only the first copy of each point.
  same = jnp.all(points[..., :, None, :] == points[..., None, :, :], axis=-1)
  duplicate = jnp.any(same & (idx[None, :] < idx[:, None]), axis=-1)  # (..., i)
  distinct = ~duplicate[..., :, None] & ~duplicate[..., None, :] & (idx[:, None] != idx[None, :])
  is_edge = jnp.all(ok | duplicate[..., None, None, :], axis=-1) & distinct
  shoelace = p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]
  return 0.5 * jnp.abs(jnp.sum(jnp.where(is_edge, shoelace, 0.0), axis=(-2, -1)))


def normalize_kp(kp_source: dict, kp_driving: dict, kp_driving_initial: dict,
                 adapt_movement_scale: bool = False, use_relative_movement: bool = False,
                 use_relative_jacobian: bool = False, scale_per_sample: bool = False) -> dict:
  """Driving keypoints re-expressed relative to the source, as the official `normalize_kp`.

  The official code computes the movement scale from batch element 0 only and uses it for the whole
  batch; `scale_per_sample=True` computes one scale per element instead.
  """
  scale = jnp.ones(kp_source["value"].shape[:1], kp_source["value"].dtype)
  if adapt_movement_scale:
    area_s = convex_hull_area(kp_source["value"])
    area_d = convex_hull_area(kp_driving_initial["value"])
    # Degenerate (collinear or collapsed) driving keypoints have no area: keep the motion unscaled.
    scale = jnp.where(area_d > 0, jnp.sqrt(area_s) / jnp.sqrt(jnp.where(area_d > 0, area_d, 1.0)), 1.0)
    if not scale_per_sample:
      scale = jnp.broadcast_to(scale[0], scale.shape)
  out = dict(kp_driving)
  if use_relative_movement:
    diff = (kp_driving["value"] - kp_driving_initial["value"]) * scale[:, None, None]
    out["value"] = diff + kp_source["value"]
    if use_relative_jacobian and "jacobian" in kp_driving:
      jac_diff = kp_driving["jacobian"] @ inverse(kp_driving_initial["jacobian"])
      out["jacobian"] = jac_diff @ kp_source["jacobian"]
  out["scale"] = scale
  return out
