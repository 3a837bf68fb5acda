"""MCNet training losses (official recipe = FOMM's losses + kp_distance + feat_consistent); the
image-pyramid, perceptual and pixel-pyramid losses shared with MemFace are in talkingmem/losses.py.

All functions are pure and jit-able. Images are NHWC in [0, 1]; keypoints (x, y) in [-1, 1].
Weights follow the official vox-256 run: perceptual 10 per VGG layer, equivariance 10 + 10,
kp_distance 10, feat_consistent 10, GAN off (see talkingmem.nn.discriminator for the GAN terms).
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from talkingmem.mcnet.dense_motion import inverse
from talkingmem.mcnet.memory import memory_consistency
from talkingmem.nn.warp import grid_sample, make_coordinate_grid


# --------------------------------------------------------------------------------- equivariance


class TransformParams(NamedTuple):
  """A random affine + thin-plate-spline warp of [-1, 1]^2 (FOMM's `Transform`), batched."""
  theta: jax.Array  # (B, 2, 3): I + N(0, sigma_affine).
  control_points: jax.Array  # (P*P, 2): the (x, y) grid of TPS control points.
  control_params: jax.Array  # (B, P*P): N(0, sigma_tps) coefficients.


def random_tps_params(rng: jax.Array, batch: int, sigma_affine: float = 0.05,
                      sigma_tps: float = 0.005, points_tps: int = 5) -> TransformParams:
  """Samples the equivariance transform; points_tps=0 gives a purely affine one."""
  k_affine, k_tps = jax.random.split(rng)
  theta = jnp.eye(2, 3)[None] + sigma_affine * jax.random.normal(k_affine, (batch, 2, 3))
  control_points = make_coordinate_grid(points_tps, points_tps).reshape(-1, 2)
  control_params = sigma_tps * jax.random.normal(k_tps, (batch, points_tps * points_tps))
  return TransformParams(theta, control_points, control_params)


def _torch_abs(x: jax.Array) -> jax.Array:
  # |x| with torch's derivative sign(x) (0 at 0; jnp.abs uses 1), so jacobians match FOMM's autograd.
  return x * jnp.sign(x)


def _warp_point(theta: jax.Array, control_points: jax.Array, control_params: jax.Array,
                point: jax.Array) -> jax.Array:
  """T(z) = theta[:, :2] z + theta[:, 2] + sum_k c_k r_k^2 log(r_k + 1e-6), the TPS term added to
  both coordinates, with r_k = |z - p_k|_1 (FOMM uses the L1 distance, not the Euclidean one)."""
  affine = theta[:, :2] @ point + theta[:, 2]
  r = jnp.sum(_torch_abs(point[None, :] - control_points), axis=-1)
  return affine + jnp.sum(control_params * r ** 2 * jnp.log(r + 1e-6))


def warp_coordinates(params: TransformParams, coords: jax.Array) -> jax.Array:
  """Applies the transform to points (B, N, 2) -> (B, N, 2)."""
  per_batch = jax.vmap(_warp_point, in_axes=(None, None, None, 0))
  return jax.vmap(per_batch, in_axes=(0, None, 0, 0))(
      params.theta, params.control_points, params.control_params, coords)


def jacobian_of_transform(params: TransformParams, coords: jax.Array) -> jax.Array:
  """dT/dz at each point, (B, N, 2) -> (B, N, 2, 2) with [..., i, j] = dT_i / dz_j."""
  jac = jax.jacfwd(_warp_point, argnums=3)
  per_batch = jax.vmap(jac, in_axes=(None, None, None, 0))
  return jax.vmap(per_batch, in_axes=(0, None, 0, 0))(
      params.theta, params.control_points, params.control_params, coords)


def transform_frame(params: TransformParams, frame: jax.Array, align_corners: bool = True
                    ) -> jax.Array:
  """frame(T(z)) on the frame's own pixel grid, reflection-padded: (B, H, W, C) -> same.

  FOMM calls F.grid_sample(..., padding_mode='reflection') without align_corners, which on the
  modern torch the official code runs on means False: pixel centres then sit at +-(1 - 1/n), not at
  the +-1 that keypoints (make_coordinate_grid) use, so even sigma=0 zooms out by n/(n-1) and the
  loss compares keypoints under T with a frame warped by T plus that zoom. We default to True (the
  torch <= 1.2 behaviour FOMM was written for): the warp is then exactly T in keypoint coordinates
  and the identity at sigma=0. Pass False to reproduce the official run bit-for-bit.
  """
  b, h, w, _ = frame.shape
  grid = jnp.broadcast_to(make_coordinate_grid(h, w, frame.dtype).reshape(1, h * w, 2), (b, h * w, 2))
  grid = warp_coordinates(params, grid).reshape(b, h, w, 2)
  return grid_sample(frame, grid, align_corners=align_corners, padding_mode="reflection")


class EquivarianceLosses(NamedTuple):
  value: jax.Array  # mean |kp_d - T(kp_t)|
  jacobian: jax.Array  # mean |I - J_d^-1 (dT(kp_t) J_t)|
  transformed_frame: jax.Array
  kp_transformed: Mapping[str, jax.Array]  # detections on the transformed frame


def equivariance_losses(kp_detect: Callable[[jax.Array], Mapping[str, jax.Array]],
                        driving: jax.Array, kp_driving: Mapping[str, jax.Array], params: TransformParams,
                        align_corners: bool = True) -> EquivarianceLosses:
  """FOMM's equivariance constraints, unweighted (the official weights are 10 and 10).

  The driving frame is warped by the transform `params` (draw it with random_tps_params; a recorded
  one replays an official step); keypoints detected on it, mapped back through T, must land on the
  driving keypoints, and their Jacobians must compose to the identity. Gradients flow into both
  detections (kp_driving is not detached, as in FOMM).
  """
  transformed = transform_frame(params, driving, align_corners)
  kp_t = kp_detect(transformed)
  value = jnp.mean(jnp.abs(kp_driving["value"] - warp_coordinates(params, kp_t["value"])))
  if "jacobian" in kp_driving and "jacobian" in kp_t:
    jac_t = jacobian_of_transform(params, kp_t["value"]) @ kp_t["jacobian"]
    composed = inverse(kp_driving["jacobian"]) @ jac_t
    jacobian = jnp.mean(jnp.abs(jnp.eye(2, dtype=composed.dtype) - composed))
  else:
    jacobian = jnp.zeros((), value.dtype)
  return EquivarianceLosses(value, jacobian, transformed, kp_t)


# -------------------------------------------------------------------------------- keypoints


@jax.custom_jvp
def _pair_norm(d: jax.Array) -> jax.Array:
  """Euclidean norm over the last axis whose derivative at 0 is the subgradient (1, 1)/sqrt(2).

  Any radially symmetric penalty has zero gradient at exactly coincident keypoints; this valid
  subgradient (used on unordered pairs i < j) pushes such a pair apart instead of leaving it stuck.
  """
  return jnp.sqrt(jnp.sum(d * d, axis=-1))


@_pair_norm.defjvp
def _pair_norm_jvp(primals, tangents):
  (d,), (t,) = primals, tangents
  n = _pair_norm(d)
  safe = jnp.where(n > 0, n, 1.0)
  direction = jnp.where((n > 0)[..., None], d / safe[..., None], jnp.sqrt(0.5).astype(d.dtype))
  return n, jnp.sum(direction * t, axis=-1)


def keypoint_distance_loss(kp_value: jax.Array, threshold: float = 0.2,
                           exact_official: bool = False) -> jax.Array:
  """Penalises keypoint pairs closer than `threshold`; kp_value (B, K, 2). Apply per frame.

  Default: mean over ordered pairs i != j of relu(threshold - |k_i - k_j|), differentiable.
  exact_official: MCNet/DaGAN's mean over all (i, j), diagonal included, of
  1 - sign(sqrt(|k_i - k_j|^2 + 1e-8) + threshold * delta_ij - threshold): 2 per close ordered pair,
  and a gradient that is identically zero, so in the official run the term is only logged.
  """
  k = kp_value.shape[1]
  diff = kp_value[:, :, None, :] - kp_value[:, None, :, :]  # (B, K, K, 2)
  if exact_official:
    dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1) + 1e-8)
    return jnp.mean(1.0 - jnp.sign(dist + threshold * jnp.eye(k, dtype=dist.dtype) - threshold))
  if k < 2:
    return jnp.zeros((), kp_value.dtype)
  i, j = jnp.triu_indices(k, 1)
  penalty = jax.nn.relu(threshold - _pair_norm(diff[:, i, j]))  # (B, K(K-1)/2)
  return jnp.mean(penalty)  # The mean over unordered pairs equals the one over ordered pairs.


# ----------------------------------------------------------------------------------- memory


def memory_consistency_loss(memory_internals: Sequence[Mapping[str, jax.Array]]) -> jax.Array:
  """feat_consistent: sum over memory calls of mean|value - stopgrad(resize(feat))|.

  memory_internals: the generator's `out["memory"]` list (dicts with "feat" and "value").
  """
  total = jnp.zeros((), jnp.float32)
  for internals in memory_internals:
    total = total + memory_consistency(internals["feat"], internals["value"])
  return total
