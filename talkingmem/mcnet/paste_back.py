"""Paste-back: the animated face crop warped back into the user's photo at the photo's resolution.

The model sees a square face crop (`face_tracking.crop_frame`: shift by the crop box's corner, then
resize side -> size). Pasting inverts that map (`face_tracking.from_crop`'s affine) for the animated
crop and for a feathered mask, then blends: the photo outside the crop stays the photo, the face is
the animation, and the seam between them is a smooth ramp instead of an edge (as LivePortrait does).
"""
from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np


def fit_size(image: np.ndarray, crop_box: np.ndarray, max_size: int | None
             ) -> tuple[np.ndarray, np.ndarray]:
  """The photo shrunk so its longer side is at most `max_size` (None or 0: as is), with its crop box."""
  h, w = image.shape[:2]
  if not max_size or max(h, w) <= max_size:
    return image, np.asarray(crop_box, np.float64)
  factor = max_size / max(h, w)
  size = (max(1, round(w * factor)), max(1, round(h * factor)))
  small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
  return small, np.asarray(crop_box, np.float64) * factor


def crop_to_photo(crop_box: np.ndarray, size: int) -> np.ndarray:
  """The 2x3 affine taking crop pixels to photo pixels (pixel centres at integers), as from_crop."""
  left, top, right, _ = (float(v) for v in crop_box)
  inv = round(right - left) / size
  return np.float32([[inv, 0, 0.5 * inv - 0.5 + left], [0, inv, 0.5 * inv - 0.5 + top]])


def feather_mask(size: int, feather: float = 0.12, margin: float = 0.02) -> np.ndarray:
  """(size, size) float32: 1 in the middle, a smoothstep ramp to 0 over `feather` x size near the
  crop's border (0 within `margin` x size of it, where the crop may hold replicated border pixels)."""
  coords = np.arange(size, dtype=np.float32)
  to_edge = np.minimum(coords, size - 1 - coords)
  ramp = np.clip((to_edge - margin * size) / max(feather * size, 1e-6), 0.0, 1.0)
  ramp = ramp * ramp * (3 - 2 * ramp)
  return np.minimum(ramp[:, None], ramp[None, :])


def paste(photo: np.ndarray, crop_box: np.ndarray, crop: np.ndarray, mask: np.ndarray | None = None
          ) -> np.ndarray:
  """`crop` (size, size, 3) blended into `photo` (H, W, 3) where `crop_box` came from; floats."""
  size = crop.shape[0]
  mask = feather_mask(size) if mask is None else mask
  h, w = photo.shape[:2]
  affine = crop_to_photo(crop_box, size)
  warped = cv2.warpAffine(np.asarray(crop, np.float32), affine, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
  alpha = cv2.warpAffine(mask, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0.0)[..., None]
  return (alpha * warped + (1.0 - alpha) * photo).astype(np.float32)


def iter_pasted(photo: np.ndarray, crop_box: np.ndarray, crops: np.ndarray,
                max_size: int | None = None) -> Iterator[np.ndarray]:
  """Each animated crop (T, size, size, 3) pasted into the photo (bounded by `max_size`), one float
  (H, W, 3) frame at a time: a long video at photo size is converted frame by frame, not held in floats.
  """
  photo, crop_box = fit_size(np.asarray(photo, np.float32), crop_box, max_size)
  mask = feather_mask(crops.shape[1])
  # Even sizes: H.264 in yuv420p needs them, and a one-pixel edge is nothing at photo resolution.
  h, w = photo.shape[0] - photo.shape[0] % 2, photo.shape[1] - photo.shape[1] % 2
  for crop in crops:
    yield paste(photo, crop_box, crop, mask)[:h, :w]


def side_by_side_inputs(photo: np.ndarray, driving: np.ndarray, shape: tuple[int, int]
                        ) -> tuple[np.ndarray, np.ndarray]:
  """The photo (uint8) and the driving crops (T, S, S, 3 uint8) resized to the output's (H, W) panels."""
  h, w = shape
  src = cv2.resize(np.asarray(photo, np.float32), (w, h), interpolation=cv2.INTER_AREA)
  src = (np.clip(src, 0, 1) * 255 + 0.5).astype(np.uint8)
  drv = np.stack([cv2.resize(f, (h, h), interpolation=cv2.INTER_LINEAR) for f in driving])
  return src, drv
