"""The image losses both papers use (talkingmem/losses.py): pyramid, VGG19 perceptual, pixel pyramid."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem import losses as image_losses
from talkingmem.metrics.image import ssim
from talkingmem.nn import vgg


@pytest.fixture(scope="module")
def vgg_params() -> dict:
  """He-scaled random VGG19 params (NumPy: far faster than Flax's eager init)."""
  rng = np.random.default_rng(0)
  return {vgg.param_name(i): {
      "kernel": (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2 / (9 * cin))).astype(np.float32),
      "bias": (rng.standard_normal(cout) * 0.1).astype(np.float32)} for i, cin, cout in vgg.CONVS}


def _images(seed: int, shape=(2, 32, 32, 3)) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).random(shape, np.float32))


def test_image_pyramid_shapes():
  x = _images(0, (2, 64, 48, 3))
  pyr = image_losses.image_pyramid(x)
  assert list(pyr) == [1, 0.5, 0.25, 0.125]
  assert [p.shape[1:3] for p in pyr.values()] == [(64, 48), (32, 24), (16, 12), (8, 6)]
  assert pyr[1] is x


def test_perceptual_loss_zero_and_gradient_to_prediction_only(vgg_params):
  pred, target = _images(1), _images(2)
  scales = (1, 0.5)
  value_and_grads = jax.jit(jax.value_and_grad(image_losses.perceptual_loss, argnums=(0, 1, 2)),
                            static_argnums=(3,))
  zero, _ = value_and_grads(vgg_params, target, target, scales)
  assert float(zero) == pytest.approx(0.0, abs=1e-4)  # Not bit-exact: the branches fuse differently.
  value, (g_params, g_pred, g_target) = value_and_grads(vgg_params, pred, target, scales)
  assert float(value) > 0
  assert float(jnp.abs(g_pred).sum()) > 0
  assert float(jnp.abs(g_target).sum()) == 0.0
  assert all(float(jnp.abs(g).sum()) == 0.0 for g in jax.tree_util.tree_leaves(g_params))


def test_perceptual_loss_size_check(vgg_params):
  with pytest.raises(ValueError, match="needs >= 16 pixels"):
    image_losses.perceptual_loss(vgg_params, _images(1), _images(2), (1, 0.25))


def test_pixel_pyramid_loss():
  a, b = _images(3), _images(4)
  scales = (1, 0.5)
  loss = jax.jit(image_losses.pixel_pyramid_loss, static_argnums=(2,))
  assert float(loss(a, a, scales, 10.0)) == pytest.approx(0.0, abs=1e-6)
  value = float(loss(a, b, scales, 10.0))
  assert value > 0
  np.testing.assert_allclose(float(loss(a, b, scales, 1.0)), value / 10, rtol=1e-5)
  grad = jax.jit(jax.grad(image_losses.pixel_pyramid_loss), static_argnums=(2,))(a, b, scales, 1.0)
  assert float(jnp.abs(grad).sum()) > 0
  # A scale below the 11x11 SSIM window adds its L1 term only.
  small = (1, 0.25)
  pyr_a, pyr_b = image_losses.image_pyramid(a, small), image_losses.image_pyramid(b, small)
  expected = (float(jnp.mean(jnp.abs(pyr_a[1] - pyr_b[1]))) + 1 - float(ssim(pyr_a[1], pyr_b[1]))
              + float(jnp.mean(jnp.abs(pyr_a[0.25] - pyr_b[0.25]))))
  np.testing.assert_allclose(float(image_losses.pixel_pyramid_loss(a, b, small, 1.0)), expected, rtol=1e-5)
