"""Face tracking for one-speaker videos: detect, smooth, crop, landmarks (dlib).

Streaming on purpose: `detect_boxes` and `iter_crops` consume frame
iterators, so a long high-resolution video never has to fit in memory (the
command decodes twice: once to detect, once to crop).

  1. `detect_boxes`: dlib's HOG detector on every frame at a working
     resolution (`detect_side`); with several faces, the one overlapping the
     previous pick most (else the largest).
  2. `plan_track`: detections that jump away from their neighbours' median are
     treated as misses; interior gaps of at most `max_gap` frames are
     interpolated, longer gaps and gaps at either end are cut; box centre and
     size are Gaussian-smoothed over time within each kept segment.
  3. `iter_crops`: a square of side `crop_scale` x box size around the smoothed
     box (shifted by `shift_y` box sizes), resized to `size`; edges outside the
     frame repeat the border. dlib's 68-point predictor runs on the crop (at
     least `landmark_side` px) from the smoothed box.

Boxes are (left, top, right, bottom) in source pixels, pixel centres at
integers; landmarks are (x, y) in crop pixels, same convention.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator
from typing import Any

import cv2
import dlib
import numpy as np
from scipy import ndimage

# Per-frame status codes of a track plan.
DETECTED = 0
INTERPOLATED = 1
NO_FACE = 2  # In a gap too long to interpolate (or at an end of the video).
STATUS_NAMES = ("detected", "interpolated", "no_face")


@dataclasses.dataclass(frozen=True)
class TrackConfig:
  size: int = 256  # Output crop side (pixels).
  crop_scale: float = 1.8  # Crop side / detection box side.
  shift_y: float = -0.1  # Crop centre offset in box sides (negative: up, keeps the forehead).
  detect_side: int = 320  # Frames are resized so the shorter side is this for detection.
  landmark_side: int = 256  # Minimum crop side the landmark predictor runs at.
  max_gap: int = 5  # Longest run of missed frames that is interpolated.
  centre_sigma: float = 1.5  # Temporal smoothing of the box centre (frames).
  size_sigma: float = 4.0  # Temporal smoothing of the box size (frames).
  outlier_window: int = 9  # Frames in the median used to reject jumping detections.


# ---------------------------------------------------------------------------
# dlib models (from the face-recognition-models package: nothing downloaded).


@functools.lru_cache(maxsize=None)
def _detector() -> Any:
  return dlib.get_frontal_face_detector()


def landmark_model_path() -> str:
  import face_recognition_models  # pylint: disable=g-import-not-at-top
  return face_recognition_models.pose_predictor_model_location()


@functools.lru_cache(maxsize=None)
def _predictor(path: str) -> Any:
  return dlib.shape_predictor(path)


# ---------------------------------------------------------------------------
# Detection.


def _iou(a: np.ndarray, b: np.ndarray) -> float:
  w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = w * h
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def detect_faces(frame: np.ndarray, config: TrackConfig = TrackConfig()) -> np.ndarray:
  """(N, 4) boxes of every face dlib finds in `frame` (RGB uint8), left to right; (0, 4) if none."""
  h, w = frame.shape[:2]
  scale = config.detect_side / min(h, w)
  small = frame if abs(scale - 1) < 1e-3 else cv2.resize(
      frame, (max(1, round(w * scale)), max(1, round(h * scale))),
      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
  sx, sy = small.shape[1] / w, small.shape[0] / h
  rects = _detector()(small, 0) or _detector()(small, 1)
  boxes = np.array([[(r.left() + 0.5) / sx - 0.5, (r.top() + 0.5) / sy - 0.5,
                     (r.right() + 0.5) / sx - 0.5, (r.bottom() + 0.5) / sy - 0.5]
                    for r in rects], np.float64).reshape(-1, 4)
  return boxes[np.argsort(boxes[:, 0], kind="stable")]


def largest_face(boxes: np.ndarray) -> int:
  """Index of the largest of (N >= 1, 4) boxes."""
  return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def detect_face(frame: np.ndarray, config: TrackConfig = TrackConfig(),
                previous: np.ndarray | None = None) -> np.ndarray | None:
  """(4,) box of the tracked face in `frame` (RGB uint8): the one overlapping `previous` most, else
  the largest; None if there is none."""
  boxes = detect_faces(frame, config)
  if not len(boxes):
    return None
  if previous is not None and len(boxes) > 1:
    overlaps = [_iou(b, previous) for b in boxes]
    if max(overlaps) > 0:
      return boxes[int(np.argmax(overlaps))]
  return boxes[largest_face(boxes)]


def detect_boxes(frames: Iterable[np.ndarray], config: TrackConfig = TrackConfig(),
                 progress: Any = None) -> np.ndarray:
  """(T, 4) raw detection boxes; NaN rows where no face was found.

  Args:
    frames: RGB uint8 frames (any iterable, consumed once).
    config: detection settings.
    progress: optional tqdm-like object; `update(1)` is called per frame.
  """
  boxes, previous = [], None
  for frame in frames:
    box = detect_face(frame, config, previous)
    if box is not None:
      previous = box
    boxes.append(np.full(4, np.nan) if box is None else box)
    if progress is not None:
      progress.update(1)
  return np.array(boxes, np.float64).reshape(-1, 4)


# ---------------------------------------------------------------------------
# Planning: outliers, gaps, smoothing.


@dataclasses.dataclass(frozen=True)
class TrackPlan:
  """What happens to each frame, and the boxes used for kept frames."""
  raw_boxes: np.ndarray  # (T, 4) detections (NaN: none).
  boxes: np.ndarray  # (T, 4) smoothed boxes (NaN where cut).
  crop_boxes: np.ndarray  # (T, 4) square crop windows in source pixels (NaN where cut).
  status: np.ndarray  # (T,) uint8 DETECTED / INTERPOLATED / NO_FACE.
  outliers: np.ndarray  # (T,) bool: detections rejected as jumps (then treated as misses).

  @property
  def keep(self) -> np.ndarray:
    return self.status != NO_FACE

  def counts(self) -> dict[str, int]:
    counts = {name: int((self.status == code).sum()) for code, name in enumerate(STATUS_NAMES)}
    counts["rejected_outliers"] = int(self.outliers.sum())
    return counts


def _to_csz(boxes: np.ndarray) -> np.ndarray:
  """(T, 4) boxes -> (T, 3) centre x, centre y, side (geometric mean of w, h)."""
  w = boxes[:, 2] - boxes[:, 0]
  h = boxes[:, 3] - boxes[:, 1]
  return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                   np.sqrt(np.abs(w * h))], 1)


def _from_csz(csz: np.ndarray) -> np.ndarray:
  half = csz[:, 2] / 2
  return np.stack([csz[:, 0] - half, csz[:, 1] - half, csz[:, 0] + half, csz[:, 1] + half], 1)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, stop) runs where mask is True."""
  padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
  edges = np.flatnonzero(np.diff(padded))
  return list(zip(edges[0::2], edges[1::2]))


def _reject_outliers(csz: np.ndarray, window: int) -> np.ndarray:
  """True where a detection is far from the median of the detections around it."""
  found = np.flatnonzero(~np.isnan(csz[:, 0]))
  out = np.zeros(len(csz), bool)
  if len(found) < 3:
    return out
  vals = csz[found]
  med = np.stack([ndimage.median_filter(vals[:, k], size=window, mode="nearest")
                  for k in range(3)], 1)
  jump = np.hypot(vals[:, 0] - med[:, 0], vals[:, 1] - med[:, 1]) > 0.5 * med[:, 2]
  ratio = vals[:, 2] / np.maximum(med[:, 2], 1e-6)
  out[found] = jump | (ratio < 0.67) | (ratio > 1.5)
  return out


def plan_track(raw_boxes: np.ndarray, config: TrackConfig = TrackConfig()) -> TrackPlan:
  """Decides kept/interpolated/cut frames and smooths the boxes."""
  raw = np.asarray(raw_boxes, np.float64).reshape(-1, 4)
  num = len(raw)
  csz = _to_csz(raw)
  outliers = _reject_outliers(csz, config.outlier_window)
  csz[outliers] = np.nan
  missing = np.isnan(csz[:, 0])
  status = np.where(missing, NO_FACE, DETECTED).astype(np.uint8)
  for start, stop in _runs(missing):
    interior = start > 0 and stop < num
    if interior and stop - start <= config.max_gap:
      status[start:stop] = INTERPOLATED
      t = (np.arange(start, stop) - (start - 1)) / (stop - (start - 1))
      csz[start:stop] = (1 - t)[:, None] * csz[start - 1] + t[:, None] * csz[stop]
  smooth = np.full_like(csz, np.nan)
  for start, stop in _runs(status != NO_FACE):
    seg = csz[start:stop]
    for k in (0, 1):
      smooth[start:stop, k] = ndimage.gaussian_filter1d(seg[:, k], config.centre_sigma,
                                                        mode="nearest")
    # Log size: zooming in and out are smoothed alike.
    smooth[start:stop, 2] = np.exp(ndimage.gaussian_filter1d(np.log(seg[:, 2]), config.size_sigma,
                                                             mode="nearest"))
  crop = smooth.copy()
  crop[:, 1] += config.shift_y * smooth[:, 2]
  crop[:, 2] = np.round(smooth[:, 2] * config.crop_scale)  # Integer side: exact resampling.
  return TrackPlan(raw_boxes=raw, boxes=_from_csz(smooth), crop_boxes=_from_csz(crop),
                   status=status, outliers=outliers)


# ---------------------------------------------------------------------------
# Cropping and landmarks.


def crop_frame(frame: np.ndarray, crop_box: np.ndarray, size: int) -> np.ndarray:
  """The square `crop_box` window of `frame`, resized to (size, size).

  Shift first (sub-pixel, at native resolution), then area-resize, so a big
  face shrunk to a small crop is not aliased.
  """
  left, top, right, _ = (float(v) for v in crop_box)
  side = max(1, int(round(right - left)))
  shift = np.float32([[1, 0, -left], [0, 1, -top]])
  native = cv2.warpAffine(frame, shift, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
  if side == size:
    return native
  interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
  return cv2.resize(native, (size, size), interpolation=interp)


def to_crop(points: np.ndarray, crop_box: np.ndarray, size: int) -> np.ndarray:
  """Maps (..., 2) source pixels into crop pixels (pixel centres at integers)."""
  left, top, right, _ = (float(v) for v in crop_box)
  scale = size / round(right - left)
  return (np.asarray(points, np.float64) - [left, top] + 0.5) * scale - 0.5


def from_crop(points: np.ndarray, crop_box: np.ndarray, size: int) -> np.ndarray:
  """Inverse of `to_crop`: (..., 2) crop pixels -> source pixels."""
  left, top, right, _ = (float(v) for v in crop_box)
  scale = size / round(right - left)
  return (np.asarray(points, np.float64) + 0.5) / scale - 0.5 + [left, top]


def crop_camera(crop_box: np.ndarray, size: int, focal: float,
                principal: tuple[float, float]) -> tuple[float, np.ndarray]:
  """Focal and (2,) principal point in crop pixels of a source pinhole camera.

  The crop is a shift and a uniform scale, so a source-camera projection
  followed by `to_crop` equals a pinhole projection with these intrinsics.
  """
  left, top, right, _ = (float(v) for v in crop_box)
  scale = size / round(right - left)
  return focal * scale, to_crop(np.asarray(principal, np.float64), crop_box, size)


def predict_landmarks(crop: np.ndarray, box: np.ndarray, landmark_side: int = 256,
                      model_path: str | None = None) -> np.ndarray:
  """(68, 2) dlib landmarks in `crop` pixels, from a face `box` in crop pixels.

  Small crops are upsampled to `landmark_side` first: the predictor was
  trained on faces of ~100+ pixels.
  """
  size = crop.shape[0]
  scale = max(1.0, landmark_side / size)
  work = crop if scale == 1.0 else cv2.resize(
      crop, (round(size * scale), round(size * scale)), interpolation=cv2.INTER_CUBIC)
  scale = work.shape[0] / size
  b = (np.asarray(box, np.float64) + 0.5) * scale - 0.5
  rect = dlib.rectangle(int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3])))
  shape = _predictor(model_path or landmark_model_path())(work, rect)
  pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
  return (pts + 0.5) / scale - 0.5


def iter_crops(frames: Iterable[np.ndarray], plan: TrackPlan, config: TrackConfig = TrackConfig()
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
  """Yields (source frame index, crop (size, size, 3), landmarks (68, 2)) for kept frames."""
  keep = plan.keep
  model_path = landmark_model_path()
  for t, frame in enumerate(frames):
    if t >= len(keep):
      break
    if not keep[t]:
      continue
    crop = crop_frame(frame, plan.crop_boxes[t], config.size)
    box = to_crop(plan.boxes[t].reshape(2, 2), plan.crop_boxes[t], config.size).reshape(4)
    yield t, crop, predict_landmarks(crop, box, config.landmark_side, model_path)


def mouth_box(landmarks: np.ndarray, margin: float = 0.25) -> np.ndarray:
  """(..., 4) box around the 20 mouth landmarks, grown by `margin` x its size."""
  pts = np.asarray(landmarks)[..., 48:68, :]
  lo, hi = pts.min(-2), pts.max(-2)
  pad = (hi - lo) * margin
  return np.concatenate([lo - pad, hi + pad], -1)
