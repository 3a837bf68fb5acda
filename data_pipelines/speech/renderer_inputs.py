"""Inputs of MemFace's neural renderer (stage 2), per frame, in NumPy (no JAX models).

For one video frame and its 3DMM coefficients:
  rendered        the 3D face of (id, exp) projected with the frame's camera and shaded by its
                  normals (R, G = camera-space normal x, y in [0, 1]; B = Lambert term of a light
                  at the camera), black where no face triangle is visible (background, the mouth and
                  eye openings of the mesh);
  mask            the lower-face region (jaw line to under the nose), from the NEUTRAL-expression
                  vertices in the frame's pose, grown: it depends on the head pose only, so a masked
                  training frame does not leak its own mouth shape through the mask outline;
  masked          the frame with the mask region set to 0 (the template input, as NVP / MemFace);
  mouth_vertices  (M, 3) model-space (pose-free) mouth vertices: the explicit memory's query / key;
  mouth_box       (y0, x0, y1, x1) square box of `patch` pixels around the mouth (memory values).

Cameras (`face_projection`):
  focal=None  the synthetic renderer's camera (data_pipelines/synthetic/engine/renderer.py): pose is
              [yaw, pitch, roll, tx, ty, scale]; image-size independent.
  focal=f     prepare_speaker's pinhole (data_pipelines/speech/face_fitting.py): pose is
              [yaw, pitch, roll, tx, ty, tz], focal and principal point in the frame's pixels
              (coeffs.npz crop_focal[i], crop_principal[i]); default principal = image centre.
Pixel centres are at integers in both.
"""
from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np

from data_pipelines.speech import face_fitting
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.synthetic.engine import inner_geometry
from data_pipelines.synthetic.engine import rasterizer
from data_pipelines.synthetic.engine import renderer as synthetic

# iBUG 68 landmark numbers.
JAW = tuple(range(3, 14))  # Jaw line below the cheekbones (dlib's points 3-13).
UNDER_NOSE = (31, 32, 33, 34, 35)
MOUTH_CORNERS = (48, 54)
MASK_DROP = 0.5  # Jaw line also moved down by this fraction of under-nose -> chin (open jaws).
MASK_GROW = 0.1  # The lower-face hull grown by this fraction around its centre ...
MASK_DILATE = 0.03  # ... then dilated by this fraction of the image size.


def as_face_model(face_model: Any) -> face_model_lib.FaceModel:
  if isinstance(face_model, face_model_lib.FaceModel):
    return face_model
  if isinstance(face_model, (str, os.PathLike)):
    return face_model_lib.FaceModel.load(face_model)
  raise TypeError(f"face_model must be a FaceModel or a .npz path, got {type(face_model).__name__}")


def _check_pose(pose: np.ndarray) -> np.ndarray:
  pose = np.asarray(pose, np.float64)
  if pose.shape != (6,):
    raise ValueError(f"pose must be (6,), got {pose.shape}")
  return pose


def camera_vertices(vertices: np.ndarray, pose: np.ndarray, size: int, focal: float | None = None,
                    principal: tuple[float, float] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Model-space (V, 3) -> (xy (V, 2) pixels, depth (V,), rotation (3, 3)) at size x size."""
  pose = _check_pose(pose)
  vertices = np.asarray(vertices, np.float64)
  if focal is None:  # The synthetic renderer's camera.
    rot = synthetic.rotation_matrix(*pose[:3])
    xy, depth = synthetic.project_points(synthetic.camera_points(vertices, rot, pose), size)
    return xy, depth, rot
  rot = face_fitting.rotation_matrix(pose[:3], xp=np)
  cam = vertices @ rot.T
  depth = pose[5] - cam[:, 2]
  if np.any(depth <= 0):
    raise ValueError(f"face behind the camera (tz={pose[5]:.3g}): is the pose [.., tx, ty, tz] of "
                     "a pinhole fit? Synthetic poses [.., scale] need focal=None")
  cx, cy = principal if principal is not None else ((size - 1) / 2, (size - 1) / 2)
  xy = np.stack([cx + focal * (cam[:, 0] + pose[3]) / depth,
                 cy - focal * (cam[:, 1] + pose[4]) / depth], 1)
  return xy, depth, rot


def face_projection(face_model: Any, exp: np.ndarray,
                    id: np.ndarray,  # pylint: disable=redefined-builtin
                    pose: np.ndarray, size: int, focal: float | None = None,
                    principal: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Every face-model vertex of (id, exp) projected: xy (V, 2) pixels, depth (V,) > 0."""
  model = as_face_model(face_model)
  vertices = model.vertices(np.asarray(id, np.float32), np.asarray(exp, np.float32))
  xy, depth, _ = camera_vertices(vertices, pose, size, focal, principal)
  return xy, depth


def shaded_face(xy: np.ndarray, depth: np.ndarray, triangles: np.ndarray, size: int,
                normals: np.ndarray | None = None, supersample: int = 2) -> np.ndarray:
  """(size, size, 3) float32 normal-shaded render of projected triangles (module docstring).

  Args:
    xy, depth: projected vertices (face_projection).
    triangles: (F, 3) face-model triangles (front faces counter-clockwise on screen).
    size: output size.
    normals: (V, 3) camera-space vertex normals (z towards the camera); default: from the
      screen-space geometry (x, y, -depth scaled to pixels), which is close for a distant camera.
    supersample: rasterised at this factor and area-averaged (anti-aliasing).
  """
  xy = np.asarray(xy, np.float64)
  depth = np.asarray(depth, np.float64)
  triangles = np.asarray(triangles, np.int64)
  if normals is None:
    scale = np.median(np.abs(np.diff(xy, axis=0))) / max(np.median(np.abs(np.diff(depth))), 1e-9)
    pts = np.stack([xy[:, 0], -xy[:, 1], -depth * scale], 1)
    normals = inner_geometry.vertex_normals(pts, triangles)
  r = size * supersample
  frags = rasterizer.rasterize((xy + 0.5) * supersample - 0.5, depth, triangles, r, r)
  n = (np.asarray(normals, np.float64)[triangles[frags.triangle]] * frags.bary[..., None]).sum(1)
  n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
  canvas = np.zeros((r * r, 3), np.float32)
  canvas[frags.pixel] = np.stack([0.5 + 0.5 * n[:, 0], 0.5 + 0.5 * n[:, 1],
                                  np.clip(n[:, 2], 0.0, 1.0)], 1)
  canvas = canvas.reshape(r, r, 3)
  if supersample > 1:
    canvas = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
  return canvas.astype(np.float32)


def _landmarks(xy: np.ndarray, model: face_model_lib.FaceModel, which) -> np.ndarray:
  return xy[np.asarray(model.landmark_vertex_ids)[list(which)]]


def lower_face_mask(xy: np.ndarray, face_model: Any, size: int, grow: float = MASK_GROW,
                    drop: float = MASK_DROP, dilate: float = MASK_DILATE) -> np.ndarray:
  """(size, size) float32 mask (1 = masked) of the lower face: hull of the jaw-line and under-nose
  landmarks of `xy` plus the jaw line moved down by `drop` x (chin - under nose), grown by `grow`
  around its centre and dilated by `dilate` x size pixels.

  Pass the projection of the NEUTRAL expression in the frame's pose (as `renderer_example` does) so
  that the mask does not depend on the mouth shape; the drop covers an opened jaw.
  """
  model = as_face_model(face_model)
  xy = np.asarray(xy, np.float64)
  jaw = _landmarks(xy, model, JAW)
  down = _landmarks(xy, model, (8,))[0] - _landmarks(xy, model, (33,))[0]
  pts = np.concatenate([jaw, jaw + drop * down, _landmarks(xy, model, UNDER_NOSE)])
  hull = cv2.convexHull(pts.astype(np.float32))[:, 0].astype(np.float64)
  centre = hull.mean(0)
  hull = centre + (hull - centre) * (1 + grow)
  mask = np.zeros((size, size), np.uint8)
  cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 1, cv2.LINE_8, shift=4)
  radius = int(round(dilate * size))
  if radius > 0:
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                      (2 * radius + 1, 2 * radius + 1)))
  return mask.astype(np.float32)


def mouth_box(xy: np.ndarray, face_model: Any, size: int, patch: int,
              down: float = 0.1) -> tuple[int, int, int, int]:
  """(y0, x0, y1, x1), y1 - y0 = x1 - x0 = patch: a box centred between the mouth corners, moved
  down by `down` * patch (an opening jaw moves the lower lip only). May extend past the image
  (`crop_patch` pads); the corners hardly move with the mouth shape, so patches of one speaker are
  aligned. `size` is only checked (the box is in the same pixels as `xy`)."""
  if patch <= 0 or patch > size:
    raise ValueError(f"patch must be in (0, {size}], got {patch}")
  model = as_face_model(face_model)
  cx, cy = _landmarks(np.asarray(xy, np.float64), model, MOUTH_CORNERS).mean(0)
  cy += down * patch
  x0 = int(np.floor(cx - (patch - 1) / 2 + 0.5))
  y0 = int(np.floor(cy - (patch - 1) / 2 + 0.5))
  return y0, x0, y0 + patch, x0 + patch


def crop_patch(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
  """frame[y0:y1, x0:x1], replicating border pixels where the box leaves the image."""
  y0, x0, y1, x1 = (int(v) for v in box)
  h, w = frame.shape[:2]
  ys = np.clip(np.arange(y0, y1), 0, h - 1)
  xs = np.clip(np.arange(x0, x1), 0, w - 1)
  return frame[ys[:, None], xs[None, :]]


def to_float_image(frame: np.ndarray, size: int) -> np.ndarray:
  """(H, W, 3) uint8 or [0, 1] float -> (size, size, 3) float32 in [0, 1]."""
  frame = np.asarray(frame)
  if frame.ndim != 3 or frame.shape[2] != 3:
    raise ValueError(f"frame must be (H, W, 3) RGB, got {frame.shape}")
  image = frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32)
  if image.shape[:2] != (size, size):
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
  return image


def renderer_example(frame: np.ndarray, face_model: Any, exp: np.ndarray,
                     id: np.ndarray,  # pylint: disable=redefined-builtin
                     pose: np.ndarray, size: int, focal: float | None = None,
                     principal: tuple[float, float] | None = None, patch: int | None = None,
                     supersample: int = 2) -> dict[str, np.ndarray]:
  """One frame's renderer inputs and target (module docstring), float32 in [0, 1].

  `focal` / `principal` are in the FRAME's pixels (prepare_speaker's crop_focal / crop_principal);
  they are rescaled when the frame is resized to `size`. `patch` (default size // 4) is the mouth
  box side at `size`.
  """
  model = as_face_model(face_model)
  frame = np.asarray(frame)
  if focal is not None and frame.shape[0] != size:
    s = size / frame.shape[0]
    focal = focal * s
    if principal is not None:
      principal = tuple((np.asarray(principal, np.float64) + 0.5) * s - 0.5)
  target = to_float_image(frame, size)
  id = np.asarray(id, np.float32)
  exp = np.asarray(exp, np.float32)
  vertices = model.vertices(id, exp).astype(np.float64)
  xy, depth, rot = camera_vertices(vertices, pose, size, focal, principal)
  normals = inner_geometry.vertex_normals(vertices, model.triangles) @ rot.T
  rendered = shaded_face(xy, depth, model.triangles, size, normals, supersample)
  neutral_xy, _, _ = camera_vertices(model.vertices(id), pose, size, focal, principal)
  mask = lower_face_mask(neutral_xy, model, size)
  patch = int(patch or size // 4)
  return dict(rendered=rendered, masked=target * (1.0 - mask[..., None]), mask=mask[..., None],
              mouth_vertices=vertices[model.mouth_vertex_ids].astype(np.float32), target=target,
              mouth_box=np.asarray(mouth_box(neutral_xy, model, size, patch), np.int32))
