"""L1 / PSNR / SSIM in JAX against scikit-image."""
import jax
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.metrics
import skimage.transform

from talkingmem.metrics import image


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
  return np.mean([
      skimage.metrics.structural_similarity(
          x.astype(np.float64), y.astype(np.float64), gaussian_weights=True,
          sigma=1.5, use_sample_covariance=False, data_range=1,
          channel_axis=-1) for x, y in zip(a, b)])


def _sk_psnr(a: np.ndarray, b: np.ndarray) -> float:
  return np.mean([
      skimage.metrics.peak_signal_noise_ratio(
          x.astype(np.float64), y.astype(np.float64), data_range=1)
      for x, y in zip(a, b)])


@pytest.fixture(scope="module")
def astronaut_pairs() -> tuple[np.ndarray, np.ndarray]:
  """A real 128x128 image and three distortions: noise, blur, 3-px shift."""
  img = skimage.transform.resize(skimage.data.astronaut(), (128, 128),
                                 anti_aliasing=True).astype(np.float32)
  rng = np.random.default_rng(0)
  noisy = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
  blurred = scipy.ndimage.gaussian_filter(img, sigma=(1.5, 1.5, 0))
  shifted = np.roll(img, 3, axis=1)
  preds = np.stack([noisy, blurred, shifted]).astype(np.float32)
  return np.stack([img] * 3), preds


def test_ssim_matches_skimage_random():
  rng = np.random.default_rng(1)
  a = rng.random((3, 32, 40, 3), dtype=np.float32)
  b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1).astype(np.float32)
  np.testing.assert_allclose(float(image.ssim(a, b)), _sk_ssim(a, b),
                             atol=1e-4)
  per = np.asarray(image.ssim(a, b, reduce=False))
  assert per.shape == (3,)
  for i in range(3):
    np.testing.assert_allclose(per[i], _sk_ssim(a[i:i + 1], b[i:i + 1]),
                               atol=1e-4)


def test_ssim_matches_skimage_astronaut(astronaut_pairs):
  gt, pred = astronaut_pairs
  per = np.asarray(image.ssim(gt, pred, reduce=False))
  want = [_sk_ssim(gt[i:i + 1], pred[i:i + 1]) for i in range(3)]
  np.testing.assert_allclose(per, want, atol=1e-4)
  assert float(image.ssim(gt[:1], gt[:1])) == pytest.approx(1.0, abs=1e-5)
  assert np.all(per < 0.99)


def test_psnr_and_l1(astronaut_pairs):
  gt, pred = astronaut_pairs
  np.testing.assert_allclose(float(image.psnr(gt, pred)), _sk_psnr(gt, pred),
                             rtol=1e-5)
  np.testing.assert_allclose(float(image.l1(gt, pred)),
                             np.abs(gt - pred).mean(), rtol=1e-5)
  assert np.isinf(float(image.psnr(gt[:1], gt[:1])))
  assert float(image.l1(gt, gt)) == 0.0


def test_jittable_and_differentiable(astronaut_pairs):
  gt, pred = astronaut_pairs
  for fn in (image.l1, image.psnr, image.ssim):
    np.testing.assert_allclose(float(jax.jit(fn)(gt, pred)),
                               float(fn(gt, pred)), rtol=1e-5)
  grad = jax.grad(lambda p: image.ssim(gt, p))(pred)
  assert grad.shape == pred.shape and np.isfinite(np.asarray(grad)).all()


def test_rejects_bad_shapes():
  with pytest.raises(ValueError):
    image.ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError):
    image.psnr(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)))


def test_masked_ssim_is_skimages_ssim_map_averaged_inside_the_mask(astronaut_pairs):
  """skimage's full=True map, channels averaged, border of the window radius cropped, mean over the
  mask; a frame whose mask lies entirely in the border has no value (NaN)."""
  gt, pred = astronaut_pairs
  gt, pred = gt[:2].astype(np.float64), pred[:2].astype(np.float64)
  h, w = gt.shape[1:3]
  yy, xx = np.mgrid[:h, :w]
  masks = np.stack([(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 4) ** 2, np.zeros((h, w), bool)])
  masks[1, :3, :] = True  # Only border pixels: outside the region where the window fits.
  got = np.asarray(image.masked_ssim(pred, gt, masks))
  _, full = skimage.metrics.structural_similarity(pred[0], gt[0], gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=1.0, channel_axis=-1,
                                  full=True)
  per_pixel = full.mean(-1)
  inside = masks[0].copy()
  inside[:5], inside[-5:], inside[:, :5], inside[:, -5:] = False, False, False, False
  np.testing.assert_allclose(got[0], per_pixel[inside].mean(), atol=2e-5)
  assert np.isnan(got[1])
  # The whole-frame mask gives the ordinary SSIM.
  whole = np.asarray(image.masked_ssim(pred, gt, np.ones((2, h, w), bool)))
  np.testing.assert_allclose(whole, np.asarray(image.ssim(pred, gt, reduce=False)), atol=1e-6)
