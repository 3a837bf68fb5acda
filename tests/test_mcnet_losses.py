"""MCNet losses (talkingmem/mcnet/losses.py): equivariance transform, kp distance, memory consistency."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.mcnet import losses
from talkingmem.mcnet.memory import memory_consistency
from talkingmem.nn.warp import make_coordinate_grid, resize_bilinear_align_corners


def _images(seed: int, shape=(2, 32, 32, 3)) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).random(shape, np.float32))


# ------------------------------------------------------------------------------ equivariance


@functools.partial(jax.jit, static_argnums=(4,))
def _identity_checks(rng, coords, frame, sigma, points_tps):
  params = losses.random_tps_params(rng, 2, sigma, sigma, points_tps)
  return (losses.warp_coordinates(params, coords), losses.transform_frame(params, frame),
          losses.transform_frame(params, frame, align_corners=False),
          losses.jacobian_of_transform(params, coords))


def test_transform_is_identity_at_zero_sigma():
  coords = jax.random.uniform(jax.random.PRNGKey(1), (2, 7, 2), minval=-1, maxval=1)
  frame = _images(5, (2, 16, 12, 3))
  warped, transformed, official, jac = _identity_checks(jax.random.PRNGKey(0), coords, frame, 0.0, 5)
  np.testing.assert_allclose(warped, coords, atol=1e-6)
  np.testing.assert_allclose(transformed, frame, atol=1e-5)
  np.testing.assert_allclose(jac, np.broadcast_to(np.eye(2), (2, 7, 2, 2)), atol=1e-6)
  # The official (modern torch, align_corners=False) warp is not the identity: see the docstring.
  assert float(jnp.abs(official - frame).max()) > 1e-3


def test_affine_and_tps_terms_by_hand():
  theta = jnp.array([[[1.1, 0.2, 0.05], [-0.1, 0.9, -0.02]]])
  control_points = make_coordinate_grid(5, 5).reshape(-1, 2)
  params = losses.TransformParams(theta, control_points, jnp.zeros((1, 25)))
  warp = jax.jit(losses.warp_coordinates)
  got = warp(params, jnp.array([[[0.5, -0.25], [0.0, 0.0]]]))
  np.testing.assert_allclose(got, [[[0.55, -0.295], [0.05, -0.02]]], atol=1e-6)
  # One TPS coefficient at the centre control point (index 12 = (0, 0)); r is the L1 distance.
  assert tuple(np.asarray(control_points[12])) == (0.0, 0.0)
  c = jnp.zeros((1, 25)).at[0, 12].set(0.3)
  params = losses.TransformParams(jnp.eye(2, 3)[None], control_points, c)
  r = 0.3 + 0.2
  tps = 0.3 * r ** 2 * np.log(r + 1e-6)
  got = warp(params, jnp.array([[[0.3, -0.2], [0.0, 0.0]]]))
  np.testing.assert_allclose(got, [[[0.3 + tps, -0.2 + tps], [0.0, 0.0]]], atol=1e-6)


def test_random_params_statistics():
  params = jax.jit(losses.random_tps_params, static_argnums=(1, 4))(
      jax.random.PRNGKey(3), 4000, 0.05, 0.005, 5)
  assert params.theta.shape == (4000, 2, 3) and params.control_params.shape == (4000, 25)
  np.testing.assert_allclose(np.std(params.theta - jnp.eye(2, 3)), 0.05, rtol=0.05)
  np.testing.assert_allclose(np.std(params.control_params), 0.005, rtol=0.05)


def test_jacobian_matches_finite_differences():
  params = losses.random_tps_params(jax.random.PRNGKey(4), 2, 0.1, 0.05, 5)
  # Away from the lines x, y in {-1, -0.5, 0, 0.5, 1} where the L1 radial basis has kinks.
  coords = jnp.array([[[0.13, -0.37], [0.71, 0.29], [-0.62, 0.88]],
                      [[-0.21, 0.41], [0.33, -0.84], [0.92, 0.07]]])
  jac = jax.jit(losses.jacobian_of_transform)(params, coords)
  eps = 1e-3
  steps = jnp.eye(2)[:, None, None, :] * eps  # (2, 1, 1, 2): one step per input coordinate.
  warp = jax.jit(jax.vmap(losses.warp_coordinates, in_axes=(None, 0)))
  fd = (warp(params, coords + steps) - warp(params, coords - steps)) / (2 * eps)  # (j, B, N, i)
  fd = jnp.moveaxis(fd, 0, -1)  # [..., i, j] = dT_i / dz_j
  np.testing.assert_allclose(jac, fd, atol=2e-3)
  assert float(jnp.abs(jac - jnp.eye(2)).max()) > 0.05  # The check is not vacuous.


def _blob(center, size=64, sigma=0.12):
  grid = make_coordinate_grid(size, size)
  d2 = jnp.sum(jnp.square(grid - jnp.asarray(center)), axis=-1)
  return jnp.exp(-0.5 * d2 / sigma ** 2)[None, :, :, None] * jnp.ones((1, 1, 1, 3))


def _centroid_detector(images):
  """An equivariant toy detector: the intensity centroid, with identity Jacobians."""
  w = images.mean(axis=-1)
  grid = make_coordinate_grid(*images.shape[1:3])
  value = jnp.einsum("bhw,hwc->bc", w, grid) / w.sum(axis=(1, 2))[:, None]
  b = images.shape[0]
  return {"value": value[:, None, :], "jacobian": jnp.broadcast_to(jnp.eye(2), (b, 1, 2, 2))}


def test_equivariance_losses():
  driving = jnp.concatenate([_blob((0.2, -0.1)), _blob((-0.15, 0.25))])
  kp_driving = _centroid_detector(driving)
  run = jax.jit(lambda p: losses.equivariance_losses(_centroid_detector, driving, kp_driving, p))
  zero = run(losses.random_tps_params(jax.random.PRNGKey(0), 2, 0.0, 0.0, 5))
  assert float(zero.value) < 1e-6 and float(zero.jacobian) < 1e-6
  np.testing.assert_allclose(zero.transformed_frame, driving, atol=1e-5)

  rng = jax.random.PRNGKey(7)
  params = losses.random_tps_params(rng, 2, 0.05, 0.0, 5)
  out = run(params)
  kp_t = _centroid_detector(out.transformed_frame)["value"]
  moved = float(jnp.abs(kp_t - kp_driving["value"]).mean())
  assert moved > 0.01  # The frame really moved...
  assert float(out.value) < 0.05 * moved  # ...and T maps its keypoints back onto the driving ones.
  # With identity detector Jacobians the loss is mean|I - dT| = mean|I - theta[:, :2]| for affine T.
  np.testing.assert_allclose(float(out.jacobian),
                             float(jnp.abs(jnp.eye(2) - params.theta[:, :, :2]).mean()), rtol=1e-5)


# -------------------------------------------------------------------------------- keypoints


def test_keypoint_distance_zero_when_spread():
  kp = make_coordinate_grid(3, 3).reshape(1, 9, 2)  # Neighbours 1.0 apart.
  loss = jax.jit(losses.keypoint_distance_loss, static_argnames=("exact_official",))
  assert float(loss(kp)) == 0.0
  assert float(loss(kp, exact_official=True)) == 0.0


@pytest.mark.parametrize("offset", [0.0, 1e-3])
def test_keypoint_distance_pushes_close_pairs_apart(offset):
  kp = make_coordinate_grid(3, 3).reshape(1, 9, 2)
  kp = kp.at[0, 1].set(kp[0, 0] + offset)  # Keypoints 0 and 1 (nearly) coincide.
  loss, grad = jax.jit(jax.value_and_grad(losses.keypoint_distance_loss))(kp)
  pairs = 9 * 8 / 2
  np.testing.assert_allclose(float(loss), (0.2 - np.sqrt(2) * offset) / pairs, rtol=1e-4)
  assert float(jnp.abs(grad).sum()) > 0
  assert float(jnp.abs(grad[0, 2:]).sum()) == 0.0  # Only the close pair is affected.
  stepped = kp - 0.1 * grad / jnp.abs(grad).max()
  assert float(jnp.linalg.norm(stepped[0, 0] - stepped[0, 1])) > offset + 0.05


def test_keypoint_distance_exact_official_formula():
  rng = np.random.default_rng(0)
  kp = rng.uniform(-0.4, 0.4, (3, 6, 2)).astype(np.float32)
  diff = kp[:, :, None] - kp[:, None]
  dist = np.sqrt((diff * diff).sum(-1) + 1e-8)
  want = (1 - np.sign(dist + 0.2 * np.eye(6) - 0.2)).mean()
  assert want > 0  # Some pairs are closer than 0.2.
  official = functools.partial(losses.keypoint_distance_loss, exact_official=True)
  got, grad = jax.jit(jax.value_and_grad(official))(jnp.asarray(kp))
  np.testing.assert_allclose(float(got), want, rtol=1e-6)
  assert float(jnp.abs(grad).sum()) == 0.0  # The official term has no gradient.


# ----------------------------------------------------------------------------------- memory


def test_memory_consistency_loss():
  rng = np.random.default_rng(1)
  internals = [{"feat": jnp.asarray(rng.random((2, s, s, 8), np.float32)),
                "value": jnp.asarray(rng.random((2, 4, 4, 8), np.float32))} for s in (4, 8, 16)]
  want = sum(float(memory_consistency(i["feat"], i["value"])) for i in internals)
  value_and_grad = jax.jit(jax.value_and_grad(losses.memory_consistency_loss))
  value, grads = value_and_grad(internals)
  np.testing.assert_allclose(float(value), want, rtol=1e-6)
  exact = [dict(i, value=resize_bilinear_align_corners(i["feat"], 4, 4)) for i in internals]
  assert float(value_and_grad(exact)[0]) < 1e-6
  assert all(float(jnp.abs(g["feat"]).sum()) == 0 and float(jnp.abs(g["value"]).sum()) > 0
             for g in grads)
