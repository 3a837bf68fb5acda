"""Face metrics with offline dlib models: AKD, AED and CSIM.

* AKD: mean L2 distance (pixels at the evaluated size) between the 68 dlib
  landmarks of prediction and ground truth.
* AED: mean L2 distance between dlib's 128-d face descriptors.
* CSIM: mean cosine similarity between descriptors (e.g. source vs prediction).

Models come from the `face-recognition-models` package (no download). Small
frames are upsampled (cubic) so the shorter side is at least `min_side` pixels
before detection; landmarks are mapped back to the input size. Frames where
either image has no detected face are counted in `num_missing`, never averaged.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import cv2
import dlib
import numpy as np

__all__ = [
    "FaceInfo", "FaceMetricResult", "akd", "aed", "analyze_faces", "csim",
    "face_metrics",
]


@dataclasses.dataclass(frozen=True)
class FaceInfo:
  """One detected face: 68 (x, y) landmarks in input pixels and a descriptor."""
  landmarks: np.ndarray  # (68, 2) float64.
  descriptor: np.ndarray  # (128,) float64.
  box: tuple[float, float, float, float]  # left, top, right, bottom (input px).


@dataclasses.dataclass(frozen=True)
class FaceMetricResult:
  """A face metric over frames where both faces were found.

  `value` is NaN when `count` is 0; `per_frame` holds NaN for missing frames.
  """
  value: float
  count: int
  num_missing: int
  per_frame: np.ndarray

  @classmethod
  def from_per_frame(cls, per_frame: Sequence[float]) -> "FaceMetricResult":
    per_frame = np.asarray(per_frame, np.float64)
    ok = ~np.isnan(per_frame)
    value = float(per_frame[ok].mean()) if ok.any() else math.nan
    return cls(value, int(ok.sum()), int((~ok).sum()), per_frame)


def _default_paths() -> tuple[str, str]:
  import face_recognition_models  # pylint: disable=g-import-not-at-top
  return (face_recognition_models.pose_predictor_model_location(),
          face_recognition_models.face_recognition_model_location())


@functools.lru_cache(maxsize=None)
def _detector() -> Any:
  return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _shape_predictor(path: str) -> Any:
  return dlib.shape_predictor(path)


@functools.lru_cache(maxsize=None)
def _face_encoder(path: str) -> Any:
  return dlib.face_recognition_model_v1(path)


def _to_uint8_rgb(images: Any) -> np.ndarray:
  """(N,H,W,C) or (H,W,C) uint8 or float in [0,1] -> (N,H,W,3) uint8."""
  x = np.asarray(images)
  if x.ndim == 3:
    x = x[None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"expected NHWC images, 1 or 3 channels; got {x.shape}")
  if x.dtype != np.uint8:
    x = np.round(np.clip(x.astype(np.float64), 0.0, 1.0) * 255.0)
    x = x.astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.ascontiguousarray(x)


def _analyze_one(img: np.ndarray, min_side: int, landmark_path: str,
                 descriptor_path: str) -> FaceInfo | None:
  """Detects the largest face and returns its landmarks and descriptor."""
  h, w = img.shape[:2]
  scale = max(1, math.ceil(min_side / min(h, w)))
  big = img if scale == 1 else cv2.resize(
      img, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
  detector = _detector()
  rects = detector(big, 0) or detector(big, 1)
  if not rects:
    return None
  rect = max(rects, key=lambda r: r.width() * r.height())
  shape = _shape_predictor(landmark_path)(big, rect)
  pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
  descriptor = np.array(
      _face_encoder(descriptor_path).compute_face_descriptor(big, shape),
      np.float64)
  to_input = lambda v: (v + 0.5) / scale - 0.5  # noqa: E731  Pixel centres.
  box = tuple(float(to_input(v)) for v in
              (rect.left(), rect.top(), rect.right(), rect.bottom()))
  return FaceInfo(to_input(pts), descriptor, box)


def analyze_faces(images: Any, min_side: int = 256,
                  landmark_model: str | None = None,
                  descriptor_model: str | None = None
                  ) -> list[FaceInfo | None]:
  """Per-frame `FaceInfo` (None where no face is found).

  Args:
    images: (N,H,W,C) or (H,W,C), uint8 or float in [0,1], RGB.
    min_side: frames are upsampled by an integer factor until their shorter
      side is at least this (64x64 -> x4 for the default 256).
    landmark_model: path of `shape_predictor_68_face_landmarks.dat`.
    descriptor_model: path of `dlib_face_recognition_resnet_model_v1.dat`.
  """
  default_lm, default_desc = _default_paths()
  lm, desc = landmark_model or default_lm, descriptor_model or default_desc
  return [_analyze_one(img, min_side, lm, desc)
          for img in _to_uint8_rgb(images)]


def _pairwise(a: list[FaceInfo | None], b: list[FaceInfo | None],
              fn: Any) -> FaceMetricResult:
  if len(a) != len(b):
    raise ValueError(f"batch sizes differ: {len(a)} vs {len(b)}")
  return FaceMetricResult.from_per_frame(
      [math.nan if x is None or y is None else fn(x, y) for x, y in zip(a, b)])


def _akd(x: FaceInfo, y: FaceInfo) -> float:
  return float(np.linalg.norm(x.landmarks - y.landmarks, axis=-1).mean())


def _aed(x: FaceInfo, y: FaceInfo) -> float:
  return float(np.linalg.norm(x.descriptor - y.descriptor))


def _csim(x: FaceInfo, y: FaceInfo) -> float:
  return float(np.dot(x.descriptor, y.descriptor) /
               (np.linalg.norm(x.descriptor) * np.linalg.norm(y.descriptor)))


def akd(pred: Any, gt: Any, **kwargs: Any) -> FaceMetricResult:
  """Average keypoint distance in pixels (kwargs go to `analyze_faces`)."""
  return _pairwise(analyze_faces(pred, **kwargs), analyze_faces(gt, **kwargs),
                   _akd)


def aed(pred: Any, gt: Any, **kwargs: Any) -> FaceMetricResult:
  """Average L2 distance of face descriptors (identity error)."""
  return _pairwise(analyze_faces(pred, **kwargs), analyze_faces(gt, **kwargs),
                   _aed)


def csim(source: Any, pred: Any, **kwargs: Any) -> FaceMetricResult:
  """Mean cosine similarity of face descriptors (identity preservation)."""
  return _pairwise(analyze_faces(source, **kwargs),
                   analyze_faces(pred, **kwargs), _csim)


def face_metrics(pred: Any, gt: Any, source: Any | None = None,
                 **kwargs: Any) -> dict[str, FaceMetricResult]:
  """AKD, AED of `pred` vs `gt`; CSIM of `source` (default `gt`) vs `pred`.

  Each frame is analysed once. `source` may be a single image (H,W,C), which
  is compared with every predicted frame.
  """
  pred_f = analyze_faces(pred, **kwargs)
  gt_f = analyze_faces(gt, **kwargs)
  if source is None:
    src_f = gt_f
  else:
    src_f = analyze_faces(source, **kwargs)
    if len(src_f) == 1:
      src_f = src_f * len(pred_f)
  return {"akd": _pairwise(pred_f, gt_f, _akd),
          "aed": _pairwise(pred_f, gt_f, _aed),
          "csim": _pairwise(src_f, pred_f, _csim)}
