"""Lip-sync metrics that need no learned weights: LMD, mouth-vertex RMSE, and errors against a known
ground-truth mouth shape (synthetic data).

* LMD (mouth landmark distance, as ER-NeRF's LMDMeter): the 20 mouth points (68-point indices 48-67)
  of prediction and ground truth, each set centred on its own mean, mean Euclidean distance per point,
  averaged over frames. In pixels at the evaluated size; `reference_size` rescales to another size
  (e.g. 256) so numbers from different resolutions compare. `lmd_from_frames` takes the landmarks
  with dlib (talkingmem/metrics/face.py); frames without a face on either side are counted, not averaged.
* Vertex RMSE: sqrt of the mean over frames and vertices of the squared Euclidean distance between
  predicted and ground-truth mouth vertices (model units; what stage 1 reports).
* Mouth shape error: from the 68 landmark vertices of the 3D face (the face model's
  `landmark_vertex_ids`), the inner-lip opening |v62 - v66| and the mouth width |v48 - v54| of
  prediction and ground truth: mean absolute errors, and the Pearson correlation of the opening tracks
  (1 = the mouth opens and closes in time with the truth, whatever the amplitude).
"""
from __future__ import annotations

from typing import Any

import numpy as np

MOUTH = slice(48, 68)
INNER_UPPER, INNER_LOWER = 62, 66
LEFT_CORNER, RIGHT_CORNER = 48, 54


def _mouth_centred(landmarks: np.ndarray) -> np.ndarray:
  mouth = np.asarray(landmarks, np.float64)[..., MOUTH, :]
  return mouth - mouth.mean(-2, keepdims=True)


def lmd_per_frame(pred_landmarks: np.ndarray, gt_landmarks: np.ndarray) -> np.ndarray:
  """(T,) mean distance of the mean-centred mouth points; inputs (T, 68, 2) (NaN frames stay NaN)."""
  pred, gt = np.asarray(pred_landmarks), np.asarray(gt_landmarks)
  if pred.shape != gt.shape or pred.shape[-2:] != (68, 2):
    raise ValueError(f"expected two (T, 68, 2) landmark arrays, got {pred.shape} and {gt.shape}")
  return np.linalg.norm(_mouth_centred(pred) - _mouth_centred(gt), axis=-1).mean(-1)


def lmd(pred_landmarks: np.ndarray, gt_landmarks: np.ndarray, image_size: int | None = None,
        reference_size: int | None = None) -> float:
  """LMD averaged over frames with landmarks on both sides; rescaled by reference_size / image_size."""
  per_frame = lmd_per_frame(pred_landmarks, gt_landmarks)
  ok = ~np.isnan(per_frame)
  value = float(per_frame[ok].mean()) if ok.any() else float("nan")
  if reference_size is not None:
    if image_size is None:
      raise ValueError("reference_size needs image_size")
    value *= reference_size / image_size
  return value


def lmd_from_frames(pred_frames: Any, gt_frames: Any, reference_size: int | None = None,
                    min_side: int = 256) -> dict[str, Any]:
  """LMD with dlib landmarks of (T, H, W, 3) frames: {'lmd', 'frames', 'missing'}."""
  from talkingmem.metrics import face  # pylint: disable=g-import-not-at-top  (dlib)
  pred_info = face.analyze_faces(pred_frames, min_side=min_side)
  gt_info = face.analyze_faces(gt_frames, min_side=min_side)
  if len(pred_info) != len(gt_info):
    raise ValueError(f"frame counts differ: {len(pred_info)} vs {len(gt_info)}")
  nan = np.full((68, 2), np.nan)
  pick = lambda infos, other: np.stack([nan if a is None or b is None else a.landmarks  # noqa: E731
                                        for a, b in zip(infos, other)])
  pred, gt = pick(pred_info, gt_info), pick(gt_info, pred_info)
  per_frame = lmd_per_frame(pred, gt)
  size = np.asarray(pred_frames).shape[1]
  missing = int(np.isnan(per_frame).sum())
  return {"lmd": lmd(pred, gt, size, reference_size) if missing < len(per_frame) else None,
          "frames": len(per_frame) - missing, "missing": missing,
          "units": f"pixels at {reference_size or size} px"}


def vertex_rmse(pred_vertices: np.ndarray, gt_vertices: np.ndarray) -> float:
  """sqrt(mean over frames and vertices of |pred - gt|^2); inputs (..., M, 3)."""
  pred, gt = np.asarray(pred_vertices, np.float64), np.asarray(gt_vertices, np.float64)
  if pred.shape != gt.shape:
    raise ValueError(f"vertex shapes differ: {pred.shape} vs {gt.shape}")
  return float(np.sqrt(np.mean(np.sum((pred - gt) ** 2, -1))))


def mouth_opening(landmark_vertices: np.ndarray) -> np.ndarray:
  """(T,) inner-lip opening |v62 - v66| of (T, 68, D) landmark vertices (or 2D landmarks)."""
  v = np.asarray(landmark_vertices, np.float64)
  return np.linalg.norm(v[..., INNER_UPPER, :] - v[..., INNER_LOWER, :], axis=-1)


def mouth_width(landmark_vertices: np.ndarray) -> np.ndarray:
  v = np.asarray(landmark_vertices, np.float64)
  return np.linalg.norm(v[..., LEFT_CORNER, :] - v[..., RIGHT_CORNER, :], axis=-1)


def mouth_shape_error(pred_landmark_vertices: np.ndarray, gt_landmark_vertices: np.ndarray
                      ) -> dict[str, float]:
  """Lip-sync error against a known mouth shape: opening / width MAE and opening correlation."""
  pred_open, gt_open = mouth_opening(pred_landmark_vertices), mouth_opening(gt_landmark_vertices)
  if pred_open.shape != gt_open.shape:
    raise ValueError(f"frame counts differ: {pred_open.shape} vs {gt_open.shape}")
  pc, gc = pred_open - pred_open.mean(), gt_open - gt_open.mean()
  denom = np.sqrt(np.sum(pc ** 2) * np.sum(gc ** 2))
  return {"opening_mae": float(np.mean(np.abs(pred_open - gt_open))),
          "width_mae": float(np.mean(np.abs(mouth_width(pred_landmark_vertices) -
                                            mouth_width(gt_landmark_vertices)))),
          "opening_correlation": float(np.sum(pc * gc) / denom) if denom > 0 else float("nan"),
          "gt_opening_mean": float(gt_open.mean())}
