"""LMD, vertex RMSE and mouth-shape errors against closed forms on hand-made landmarks."""
import numpy as np
import pytest

from talkingmem.metrics import lip_sync


def _landmarks(rng, frames=4):
  return rng.uniform(10, 50, (frames, 68, 2))


def test_lmd_ignores_translation_and_equals_closed_form():
  rng = np.random.default_rng(0)
  gt = _landmarks(rng)
  delta = np.array([3.0, 4.0])  # |delta| = 5, moved on one mouth point only
  pred = gt + rng.uniform(-5, 5, (4, 1, 2))  # a per-frame translation: no effect
  pred[:, 55] += delta
  pred[:, :48] += 7.0  # points outside the mouth: no effect
  # Centred: the moved point differs by delta * 19/20, the other 19 by delta / 20.
  want = (5.0 * 19 / 20 + 19 * 5.0 / 20) / 20
  np.testing.assert_allclose(lip_sync.lmd(pred, gt), want, rtol=1e-12)
  np.testing.assert_allclose(lip_sync.lmd(pred, gt, image_size=64, reference_size=256), 4 * want, rtol=1e-12)


def test_lmd_scaling_and_missing_frames():
  rng = np.random.default_rng(1)
  gt = _landmarks(rng, 3)
  centre = gt[:, 48:68].mean(1, keepdims=True)
  pred = gt.copy()
  pred[:, 48:68] = centre + 1.5 * (gt[:, 48:68] - centre)
  radius = np.linalg.norm(gt[:, 48:68] - centre, axis=-1).mean(1)  # per frame
  pred[1] = np.nan  # no face found in frame 1
  np.testing.assert_allclose(lip_sync.lmd(pred, gt), 0.5 * radius[[0, 2]].mean(), rtol=1e-12)
  with pytest.raises(ValueError, match="68, 2"):
    lip_sync.lmd(pred[:, :20], gt[:, :20])


def test_vertex_rmse():
  gt = np.zeros((2, 5, 3))
  pred = gt.copy()
  pred[0, 0] = [1.0, 2.0, 2.0]  # |d|^2 = 9 on 1 of 10 vertices
  np.testing.assert_allclose(lip_sync.vertex_rmse(pred, gt), np.sqrt(0.9), rtol=1e-12)


def test_mouth_shape_error():
  t = np.arange(10.0)
  def face(opening, width):
    v = np.zeros((len(t), 68, 3))
    v[:, 62, 1], v[:, 66, 1] = opening / 2, -opening / 2
    v[:, 48, 0], v[:, 54, 0] = -width / 2, width / 2
    return v
  gt_open = 1 + np.sin(t)
  out = lip_sync.mouth_shape_error(face(2 * gt_open, np.full(10, 3.0)), face(gt_open, np.full(10, 2.0)))
  np.testing.assert_allclose(out["opening_mae"], gt_open.mean(), rtol=1e-12)
  np.testing.assert_allclose(out["width_mae"], 1.0, rtol=1e-12)
  np.testing.assert_allclose(out["opening_correlation"], 1.0, rtol=1e-12)
  width = np.full(10, 2.0)
  flipped = lip_sync.mouth_shape_error(face(3.0 - gt_open, width), face(gt_open, width))
  np.testing.assert_allclose(flipped["opening_correlation"], -1.0, rtol=1e-12)
