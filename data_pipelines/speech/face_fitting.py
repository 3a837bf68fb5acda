"""Fits a linear 3D face model to 2D landmark tracks with a perspective camera (JAX).

Independent of video I/O: input is (T, 68, 2) landmarks in pixels, output is
per-video identity coefficients, per-frame expression coefficients and pose,
and one focal length, so it can be tested on synthetic landmarks directly.

Camera (pinhole, pixel centres at integer coordinates):
  c = R(yaw, pitch, roll) @ X + (tx, ty, 0)   X: model-space point
  depth = tz - c_z                             camera at (0, 0, tz), looking down -z
  u = cx + focal * c_x / depth,  v = cy - focal * c_y / depth
with (cx, cy) = ((W - 1) / 2, (H - 1) / 2) and R = Rz(roll) Ry(yaw) Rx(pitch),
the synthetic renderer's convention (yaw > 0 faces image right, pitch > 0 chin
down, roll > 0 counter-clockwise), so angles compare directly with its ground
truth. A pose row is [yaw, pitch, roll, tx, ty, tz] (radians, model units).

Optimisation (all jit-compiled, batched over frames):
  1. focal search: on <= `focal_frames` evenly spaced frames, a short fit for
     each of `num_focal` focal lengths spaced geometrically over
     `focal_range` (x image size), vmapped; the best is refined by a parabola
     in log focal;
  2. rigid fit of every frame's pose (identity from the search, no expression);
  3. joint Adam fit of identity, expressions and poses with Gaussian priors on
     the coefficients and first-difference smoothness between consecutive
     frames (never across a cut, see `contiguous`), optionally followed by an
     L-BFGS polish (`polish_steps`).
Residuals are divided by each frame's landmark spread (RMS distance from the
centroid), so the weights do not depend on the image resolution: a weight of
1e-4 costs as much as a residual of 1% of the spread (~0.5 px on a 256 px
face crop).

Identifiability: 2D landmarks fix pose and the in-image shape well, but head
size trades against depth and focal length (a smaller head, closer), which
only the identity prior settles; model-space vertices therefore carry a
small global scale error. Expression-driven motion is much better determined.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines.synthetic.engine import face_model as face_model_lib

NUM_LANDMARKS = 68
_LEFT_EYE = slice(36, 42)  # Image-left eye in the iBUG 68-point order.
_RIGHT_EYE = slice(42, 48)


def default_landmark_weights() -> np.ndarray:
  """(68,) weights: the jaw contour is down-weighted.

  On real faces dlib's contour points slide along the silhouette as the head
  turns, so they do not stay on fixed model vertices like the inner points.
  """
  w = np.ones(NUM_LANDMARKS, np.float32)
  w[0:17] = 0.5
  return w


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Fit settings; frozen so it can be a static argument of jitted functions.

  Priors and smoothness weights are relative to the squared landmark residual
  in units of the face's landmark spread (RMS distance from their centroid).
  """
  focal_range: tuple[float, float] = (0.5, 6.0)  # Focal / max(H, W): ~90 to ~10 deg.
  num_focal: int = 9
  focal_frames: int = 32
  focal_steps: int = 300
  rigid_steps: int = 150
  steps: int = 1500
  polish_steps: int = 0  # L-BFGS; Adam alone was as accurate, and compiles faster.
  learning_rate: float = 0.02
  id_prior: float = 1e-6
  exp_prior: float = 1e-4
  exp_smooth: float = 1e-4
  pose_smooth: float = 1e-4
  landmark_weights: tuple[float, ...] | None = None  # Default: see above.

  def weights(self) -> np.ndarray:
    if self.landmark_weights is None:
      return default_landmark_weights()
    w = np.asarray(self.landmark_weights, np.float32)
    if w.shape != (NUM_LANDMARKS,):
      raise ValueError(f"landmark_weights must have 68 entries, got {w.shape}")
    return w


@dataclasses.dataclass(frozen=True)
class FitResult:
  """Fitted coefficients and camera; arrays are NumPy."""
  id: np.ndarray  # (n_id,)
  exp: np.ndarray  # (T, n_exp)
  pose: np.ndarray  # (T, 6) [yaw, pitch, roll, tx, ty, tz]
  focal: float  # Pixels.
  principal: tuple[float, float]  # (cx, cy) pixels.
  landmarks: np.ndarray  # (T, 68, 2) projected model landmarks.
  residual_px: np.ndarray  # (T,) mean landmark distance to the targets.
  focal_candidates: np.ndarray  # (num_focal,) pixels.
  focal_losses: np.ndarray  # (num_focal,) search objective per candidate.

  @property
  def mean_residual_px(self) -> float:
    return float(self.residual_px.mean()) if self.residual_px.size else float("nan")


# ---------------------------------------------------------------------------
# Camera.


def rotation_matrix(angles: jax.Array, xp: Any = jnp) -> jax.Array:
  """(..., 3) [yaw, pitch, roll] -> (..., 3, 3) Rz(roll) @ Ry(yaw) @ Rx(pitch).

  `xp` is jax.numpy or numpy (drawing code stays on the host).
  """
  yaw, pitch, roll = angles[..., 0], angles[..., 1], angles[..., 2]
  cy, sy = xp.cos(yaw), xp.sin(yaw)
  cp, sp = xp.cos(pitch), xp.sin(pitch)
  cr, sr = xp.cos(roll), xp.sin(roll)
  # The product written out: one fused expression under vmap/grad.
  row0 = xp.stack([cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp], -1)
  row1 = xp.stack([sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp], -1)
  row2 = xp.stack([-sy, cy * sp, cy * cp], -1)
  return xp.stack([row0, row1, row2], -2)


def project(points: jax.Array, pose: jax.Array, focal: jax.Array | float,
            principal: tuple[float, float]) -> jax.Array:
  """(..., N, 3) model-space points, (..., 6) poses -> (..., N, 2) pixels."""
  rot = rotation_matrix(pose[..., :3])
  cam = jnp.einsum("...ij,...nj->...ni", rot, points)
  x = cam[..., 0] + pose[..., 3:4]
  y = cam[..., 1] + pose[..., 4:5]
  depth = pose[..., 5:6] - cam[..., 2]
  return jnp.stack([principal[0] + focal * x / depth,
                    principal[1] - focal * y / depth], -1)


def project_np(points: np.ndarray, pose: np.ndarray, focal: float,
               principal: tuple[float, float]) -> np.ndarray:
  """NumPy twin of `project` (for drawing; no device round trips)."""
  pose = np.asarray(pose, np.float64)
  rot = rotation_matrix(pose[..., :3], xp=np)
  cam = np.einsum("...ij,...nj->...ni", rot, np.asarray(points, np.float64))
  x = cam[..., 0] + pose[..., 3:4]
  y = cam[..., 1] + pose[..., 4:5]
  depth = pose[..., 5:6] - cam[..., 2]
  return np.stack([principal[0] + focal * x / depth,
                   principal[1] - focal * y / depth], -1)


# ---------------------------------------------------------------------------
# Parameters: the optimiser sees log depth and depth-normalised shifts, which
# keeps every group at a similar scale for Adam.


def _to_pose(params: dict[str, jax.Array]) -> jax.Array:
  tz = jnp.exp(params["log_tz"])
  return jnp.concatenate([params["rot"], params["txy"] * tz[..., None], tz[..., None]], -1)


def _basis(model: face_model_lib.FaceModel) -> dict[str, jax.Array]:
  ids = model.landmark_vertex_ids
  return dict(mean=jnp.asarray(model.mean[ids]), id=jnp.asarray(model.id_basis[:, ids]),
              exp=jnp.asarray(model.exp_basis[:, ids]))


def _landmarks3d(basis, id_coeffs, exp):
  shape = basis["mean"] + jnp.einsum("k,kvc->vc", id_coeffs, basis["id"])
  return shape + jnp.einsum("tk,kvc->tvc", exp, basis["exp"])


def _spread(landmarks: jax.Array) -> jax.Array:
  """(T,) RMS distance of each frame's landmarks from their centroid."""
  centred = landmarks - landmarks.mean(-2, keepdims=True)
  return jnp.sqrt(jnp.mean(jnp.sum(centred ** 2, -1), -1))


def _initial_pose(basis, id_coeffs, target, focal, principal):
  """Closed-form per-frame start: roll from the eye line, depth from the spread."""
  model = basis["mean"] + jnp.einsum("k,kvc->vc", id_coeffs, basis["id"])
  eye = target[:, _RIGHT_EYE].mean(1) - target[:, _LEFT_EYE].mean(1)
  roll = jnp.arctan2(-eye[:, 1], eye[:, 0])
  m_centre = model.mean(0)
  m_spread = jnp.sqrt(jnp.mean(jnp.sum((model[:, :2] - m_centre[:2]) ** 2, -1)))
  depth = focal * m_spread / _spread(target)
  tz = depth + m_centre[2]
  centre = target.mean(1)
  tx = (centre[:, 0] - principal[0]) * depth / focal - m_centre[0]
  ty = -(centre[:, 1] - principal[1]) * depth / focal - m_centre[1]
  zeros = jnp.zeros_like(roll)
  return dict(rot=jnp.stack([zeros, zeros, roll], -1), txy=jnp.stack([tx, ty], -1) / tz[:, None],
              log_tz=jnp.log(tz))


_LR_SCALE = dict(id=5.0, exp=2.0, rot=1.0, txy=0.1, log_tz=0.5)


def _objective(params, fixed, basis, target, weights, inv_spread, contiguous, focal, principal,
               config: FitConfig):
  """Scalar loss and (T,) per-frame mean pixel residual."""
  p = {**fixed, **params}
  pose = _to_pose(p)
  pts = project(_landmarks3d(basis, p["id"], p["exp"]), pose, focal, principal)
  diff = pts - target
  dist2 = jnp.sum(diff ** 2, -1)  # (T, 68)
  data = jnp.sum(dist2 * weights, -1) / jnp.sum(weights) * inv_spread ** 2
  loss = jnp.mean(data)
  loss += config.id_prior * jnp.sum(p["id"] ** 2)
  loss += config.exp_prior * jnp.mean(jnp.sum(p["exp"] ** 2, -1))
  if p["exp"].shape[0] > 1:
    link = contiguous.astype(jnp.float32)
    norm = jnp.maximum(jnp.sum(link), 1.0)
    d_exp = jnp.sum(jnp.diff(p["exp"], axis=0) ** 2, -1)
    pose_vec = jnp.concatenate([p["rot"], p["txy"], p["log_tz"][:, None]], -1)
    d_pose = jnp.sum(jnp.diff(pose_vec, axis=0) ** 2, -1)
    loss += (config.exp_smooth * jnp.sum(d_exp * link)
             + config.pose_smooth * jnp.sum(d_pose * link)) / norm
  return loss, jnp.sqrt(dist2).mean(-1)


def _run_adam(params, fixed, steps, lr, args, config):
  """`steps` Adam updates of `params` (cosine-decayed learning rate)."""
  if steps <= 0:
    return params
  schedule = optax.cosine_decay_schedule(lr, steps, alpha=1e-2)
  scales = {k: _LR_SCALE[k] for k in params}
  opt = optax.chain(optax.scale_by_adam(),
                    optax.scale_by_schedule(lambda s: -schedule(s)))
  grad_fn = jax.grad(lambda p: _objective(p, fixed, *args, config)[0])

  def body(_, carry):
    p, state = carry
    updates, state = opt.update(grad_fn(p), state, p)
    updates = {k: v * scales[k] for k, v in updates.items()}
    return optax.apply_updates(p, updates), state

  params, _ = jax.lax.fori_loop(0, steps, body, (params, opt.init(params)))
  return params


def _run_lbfgs(params, fixed, steps, args, config):
  """L-BFGS polish with a zoom line search (converges far past Adam's noise)."""
  if steps <= 0:
    return params
  fun = lambda p: _objective(p, fixed, *args, config)[0]  # noqa: E731
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def body(_, carry):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=fun)
    return optax.apply_updates(p, updates), state

  params, _ = jax.lax.fori_loop(0, steps, body, (params, opt.init(params)))
  return params


def _fit_at_focal(id_init, exp_init, target, focal, basis, weights, contiguous, principal,
                  config: FitConfig, steps: int, polish_steps: int):
  """Rigid then joint fit at one focal length; returns params and the loss."""
  inv_spread = 1.0 / jnp.maximum(_spread(target), 1e-6)
  args = (basis, target, weights, inv_spread, contiguous, focal, principal)
  pose = _initial_pose(basis, id_init, target, focal, principal)
  rigid = _run_adam(pose, dict(id=id_init, exp=exp_init), config.rigid_steps,
                    config.learning_rate, args, config)
  params = dict(rigid, id=id_init, exp=exp_init)
  params = _run_adam(params, {}, steps, config.learning_rate, args, config)
  params = _run_lbfgs(params, {}, polish_steps, args, config)
  loss, residual = _objective(params, {}, *args, config)
  return params, loss, residual


@functools.partial(jax.jit, static_argnames=("principal", "config"))
def _focal_search(target, focals, basis, weights, contiguous, principal, config):
  n_id, n_exp = basis["id"].shape[0], basis["exp"].shape[0]
  id0 = jnp.zeros(n_id)
  exp0 = jnp.zeros((target.shape[0], n_exp))

  def one(focal):
    params, loss, _ = _fit_at_focal(id0, exp0, target, focal, basis, weights, contiguous,
                                    principal, config, config.focal_steps, 0)
    return params["id"], loss

  return jax.vmap(one)(focals)


@functools.partial(jax.jit, static_argnames=("principal", "config"))
def _full_fit(target, focal, id_init, basis, weights, contiguous, principal, config):
  exp0 = jnp.zeros((target.shape[0], basis["exp"].shape[0]))
  params, _, residual = _fit_at_focal(id_init, exp0, target, focal, basis, weights,
                                      contiguous, principal, config, config.steps,
                                      config.polish_steps)
  pose = _to_pose(params)
  pts = project(_landmarks3d(basis, params["id"], params["exp"]), pose, focal, principal)
  return params["id"], params["exp"], pose, pts, residual


def _refine_focal(focals: np.ndarray, losses: np.ndarray) -> float:
  """Vertex of the parabola through the best grid point and its neighbours (log focal)."""
  best = int(np.nanargmin(losses))
  if best == 0 or best == len(focals) - 1:
    return float(focals[best])
  x = np.log(focals[best - 1:best + 2])
  y = losses[best - 1:best + 2]
  a, b, _ = np.polyfit(x, y, 2)
  if a <= 0:
    return float(focals[best])
  return float(np.exp(np.clip(-b / (2 * a), x[0], x[2])))


def fit(landmarks: np.ndarray, model: face_model_lib.FaceModel, image_size: tuple[int, int],
        config: FitConfig = FitConfig(), contiguous: np.ndarray | None = None,
        focal: float | None = None) -> FitResult:
  """Fits identity, per-frame expressions and poses, and the focal length.

  Args:
    landmarks: (T, 68, 2) target pixels (x, y), iBUG order.
    model: the 3DMM; its `landmark_vertex_ids` pick the 68 model points.
    image_size: (height, width) of the images the landmarks live in.
    config: optimisation settings.
    contiguous: (T - 1,) bool, False where frames t and t + 1 are not
      neighbours in time (a cut): no smoothness across it. Default all True.
    focal: fixes the focal length (pixels) and skips the search.

  Returns:
    The fit; `residual_px` is the per-frame mean landmark distance.
  """
  target = np.asarray(landmarks, np.float32)
  if target.ndim != 3 or target.shape[1:] != (NUM_LANDMARKS, 2) or not len(target):
    raise ValueError(f"landmarks must be (T, 68, 2) with T >= 1, got {target.shape}")
  if not np.isfinite(target).all():
    raise ValueError("landmarks contain NaN/inf; drop or interpolate those frames first")
  num = len(target)
  if contiguous is None:
    contiguous = np.ones(max(num - 1, 0), bool)
  contiguous = np.asarray(contiguous, bool)
  if contiguous.shape != (max(num - 1, 0),):
    raise ValueError(f"contiguous must be (T - 1,) = ({num - 1},), got {contiguous.shape}")
  height, width = image_size
  principal = ((width - 1) / 2.0, (height - 1) / 2.0)
  basis = _basis(model)
  weights = jnp.asarray(config.weights())
  n_id = model.n_id

  if focal is None:
    lo, hi = config.focal_range
    focals = np.geomspace(lo, hi, config.num_focal) * max(height, width)
    subset = np.unique(np.linspace(0, num - 1, min(config.focal_frames, num)).round().astype(int))
    # The subset is spread out in time: no smoothness between its frames.
    sub_link = np.zeros(max(len(subset) - 1, 0), bool)
    ids, losses = _focal_search(jnp.asarray(target[subset]), jnp.asarray(focals, jnp.float32),
                                basis, weights, jnp.asarray(sub_link), principal, config)
    losses = np.asarray(losses, np.float64)
    focal = _refine_focal(focals, losses)
    id_init = np.asarray(ids[int(np.nanargmin(losses))])
  else:
    focals, losses = np.array([focal], np.float64), np.array([np.nan])
    id_init = np.zeros(n_id, np.float32)

  id_c, exp, pose, pts, residual = _full_fit(
      jnp.asarray(target), jnp.float32(focal), jnp.asarray(id_init, jnp.float32), basis,
      weights, jnp.asarray(contiguous), principal, config)
  return FitResult(id=np.asarray(id_c), exp=np.asarray(exp), pose=np.asarray(pose),
                   focal=float(focal), principal=principal, landmarks=np.asarray(pts),
                   residual_px=np.asarray(residual), focal_candidates=np.asarray(focals),
                   focal_losses=losses)


def fitted_vertices(model: face_model_lib.FaceModel, result: FitResult,
                    vertex_ids: np.ndarray | None = None) -> np.ndarray:
  """(T, V', 3) model-space (pose-free) vertices of the fit, optionally a subset."""
  if vertex_ids is None:
    return model.vertices(result.id, result.exp)
  ids = np.asarray(vertex_ids)
  shape = model.mean[ids] + np.einsum("k,kvc->vc", result.id, model.id_basis[:, ids])
  return shape + np.einsum("tk,kvc->tvc", result.exp, model.exp_basis[:, ids])

