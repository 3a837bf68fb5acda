"""Paste-back: the identity crop returns the photo, crop points land where from_crop says, size bounds."""
import cv2
import numpy as np
import skimage.data

from data_pipelines import face_tracking
from talkingmem.mcnet import animate, paste_back

SIZE = 256


def _photo_and_box() -> tuple[np.ndarray, np.ndarray]:
  photo = skimage.data.astronaut().astype(np.float32) / 255
  return photo, animate.source_crop_box(photo, SIZE)


def _alpha(photo: np.ndarray, box: np.ndarray) -> np.ndarray:
  affine = paste_back.crop_to_photo(box, SIZE)
  return cv2.warpAffine(paste_back.feather_mask(SIZE), affine, photo.shape[1::-1], flags=cv2.INTER_LINEAR)


def test_identity_motion_pastes_back_the_photo():
  """driving = source, as a perfect model would animate it: the crop itself comes back."""
  photo, box = _photo_and_box()
  crop = face_tracking.crop_frame(photo, box, SIZE)
  out = next(paste_back.iter_pasted(photo, box, crop[None]))
  assert out.shape == photo.shape
  alpha = _alpha(photo, box)
  seam = (alpha > 0) & (alpha < 1)
  assert 0 < seam.mean() < 0.15  # a thin ramp, not the whole face
  diff = np.abs(out - photo).max(-1)
  np.testing.assert_array_equal(out[alpha == 0], photo[alpha == 0])  # outside the crop: the photo
  # Inside: the photo after a resize round trip (207 px -> 256 -> 207), which blurs a little; a paste
  # one pixel off would differ like the photo from itself shifted by a pixel, four times more here.
  one_pixel_off = np.abs(np.roll(photo, 1, axis=1) - photo).max(-1)[alpha == 1].mean()
  assert diff[alpha == 1].mean() < 0.5 * one_pixel_off, (diff[alpha == 1].mean(), one_pixel_off)


def test_a_crop_point_lands_where_from_crop_maps_it():
  photo, box = _photo_and_box()
  crop = np.zeros((SIZE, SIZE, 3), np.float32)
  crop[100:104, 150:154] = 1.0  # a 4x4 dot, centre (151.5, 101.5) in crop pixels
  out = next(paste_back.iter_pasted(np.zeros_like(photo), box, crop[None]))
  ys, xs = np.nonzero(out[..., 0] > 0.5)
  expected = face_tracking.from_crop(np.array([151.5, 101.5]), box, SIZE)
  np.testing.assert_allclose([xs.mean(), ys.mean()], expected, atol=1.0)


def test_max_size_bounds_the_output_and_sizes_are_even():
  photo, box = _photo_and_box()
  crop = face_tracking.crop_frame(photo, box, SIZE)
  out = next(paste_back.iter_pasted(photo, box, crop[None], max_size=301))
  assert out.shape == (300, 300, 3)  # 301 x 301, cut to even for H.264
  small = cv2.resize(photo, (301, 301), interpolation=cv2.INTER_AREA)[:300, :300]
  assert np.abs(out - small).mean() < 0.01
