"""AKD / AED / CSIM with dlib models on a real face (skimage's astronaut)."""
import math

import cv2
import numpy as np
import pytest
import skimage.data

from talkingmem.metrics import face


def _face_crop(dx: int, size: int) -> np.ndarray:
  """A 240x240 window around the astronaut's face, moved right by dx px."""
  img = skimage.data.astronaut()[10:250, 100 + dx:340 + dx]
  return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def face64() -> np.ndarray:
  return _face_crop(0, 64)


def test_detects_face_and_maps_landmarks_back(face64):
  f64 = face.analyze_faces(face64)[0]
  f128 = face.analyze_faces(_face_crop(0, 128).astype(np.float32) / 255)[0]
  assert f64 is not None and f128 is not None
  assert f64.landmarks.shape == (68, 2) and f64.descriptor.shape == (128,)
  assert (f64.landmarks > 0).all() and (f64.landmarks < 64).all()
  eyes_y = f64.landmarks[36:48, 1].mean()
  mouth_y = f64.landmarks[48:68, 1].mean()
  assert eyes_y < mouth_y
  # Same face at twice the size: x128 = 2 * x64 + 0.5 (pixel centres).
  assert np.abs(2 * f64.landmarks + 0.5 - f128.landmarks).mean() < 1.0


def test_identity_values(face64):
  res = face.face_metrics(face64[None], face64[None])
  assert res["akd"].value == 0.0 and res["aed"].value == 0.0
  assert res["csim"].value == pytest.approx(1.0, abs=1e-9)
  assert all(r.count == 1 and r.num_missing == 0 for r in res.values())
  # uint8 and float inputs agree.
  assert face.akd(face64, face64.astype(np.float32) / 255).value < 1e-9


@pytest.mark.parametrize("k", [2, 8])
def test_akd_tracks_shift(face64, k):
  shifted = _face_crop(round(k * 240 / 64), 64)  # Content moves left k px.
  res = face.akd(shifted, face64)
  assert res.count == 1
  assert res.value == pytest.approx(k, abs=max(0.75, 0.2 * k))


def test_blank_frames_are_missing_not_zero(face64):
  blank = np.zeros_like(face64)
  pred = np.stack([face64, blank, face64])
  gt = np.stack([face64, face64, blank])
  res = face.face_metrics(pred, gt, source=face64)
  for name in ("akd", "aed"):
    assert res[name].count == 1 and res[name].num_missing == 2
    assert res[name].value == 0.0
    assert np.isnan(res[name].per_frame[1:]).all()
  assert res["csim"].count == 2 and res["csim"].num_missing == 1
  none = face.csim(blank, blank)
  assert none.count == 0 and none.num_missing == 1 and math.isnan(none.value)


def test_identity_metrics_degrade_with_blur(face64):
  preds = np.stack([cv2.GaussianBlur(face64, (0, 0), s) for s in (0.5, 0.9)])
  res = face.face_metrics(preds, np.stack([face64] * 2))
  aed, cs = res["aed"].per_frame, res["csim"].per_frame
  assert res["aed"].count == 2
  assert 0 < aed[0] < aed[1] and 1 > cs[0] > cs[1]
