"""Foreground occluders (a hand, a microphone) drawn over the rendered face.

They test what a model does with pixels it cannot explain by warping the
source frame. Positions are fractions of the image size.
"""

import dataclasses

import cv2
import numpy as np

KINDS = ("hand", "microphone")


@dataclasses.dataclass(frozen=True)
class Occluder:
  kind: str  # One of KINDS.
  x: float  # Centre, fraction of the image width.
  y: float  # Centre, fraction of the image height.
  scale: float  # Size relative to the image.
  angle: float  # Radians, counter-clockwise in the image.
  colour: np.ndarray  # (3,) sRGB base colour.


def _rot(angle):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, s], [-s, c]])  # Counter-clockwise with y pointing down.


def draw_occluder(canvas: np.ndarray, occ: Occluder) -> np.ndarray:
  """Draws `occ` into canvas (H, W, 3) float32 in place; returns its (H, W) mask."""
  h, w = canvas.shape[:2]
  size = min(h, w) * occ.scale
  centre = np.array([occ.x * w, occ.y * h])
  rot = _rot(occ.angle)
  k = 16

  def to_px(local):  # Local units (fractions of `size`, y down) to fixed-point pixels.
    return np.round((centre + (np.asarray(local) * size) @ rot.T) * k).astype(np.int32)

  mask = np.zeros((h, w), np.uint8)
  shade = np.zeros((h, w), np.float32)
  if occ.kind == "hand":
    palm = cv2.ellipse2Poly((0, 0), (100, 120), 0, 0, 360, 10).astype(np.float64) / 100 * 0.32
    cv2.fillPoly(mask, [to_px(palm)], 255, cv2.LINE_8, 4)
    fingers = [(-0.22, -0.3, -0.28, -0.85), (-0.07, -0.34, -0.08, -0.98),
               (0.08, -0.34, 0.1, -0.94), (0.22, -0.3, 0.27, -0.78), (0.3, 0.05, 0.62, -0.25)]
    for x0, y0, x1, y1 in fingers:
      a, b = to_px([x0, y0]), to_px([x1, y1])
      cv2.line(mask, tuple(int(t) for t in a), tuple(int(t) for t in b), 255,
               max(int(0.13 * size), 1), cv2.LINE_8, 4)
      # Dark crease along each finger's side.
      cv2.line(shade, tuple(int(t) for t in a), tuple(int(t) for t in b), 1.0,
               max(int(0.02 * size), 1), cv2.LINE_8, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - centre[0], yy - centre[1]) / max(size, 1)
    lit = np.clip(1.05 - 0.35 * r, 0.6, 1.1)
    col = occ.colour[None, None] * lit[..., None] * (1 - 0.25 * np.roll(shade, 2, 1)[..., None])
  else:  # microphone: meshed ball on a dark handle.
    handle_end = to_px([0.0, 4.0])
    cv2.line(mask, tuple(int(t) for t in to_px([0, 0])), tuple(int(t) for t in handle_end), 128,
             max(int(0.14 * size), 1), cv2.LINE_8, 4)
    cv2.circle(mask, tuple(int(t) for t in to_px([0, 0])), int(0.3 * size * k), 255, -1,
               cv2.LINE_8, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    local = (np.stack([xx - centre[0], yy - centre[1]], -1) @ rot) / max(size, 1)
    grid = ((local[..., 0] / 0.06) % 1 < 0.3) | ((local[..., 1] / 0.06) % 1 < 0.3)
    r = np.hypot(local[..., 0] + 0.1, local[..., 1] + 0.1) / 0.3
    lit = (1.1 - 0.5 * r.clip(0, 1)) * (1 - 0.35 * grid)
    ball = occ.colour[None, None] * lit[..., None]
    handle = np.broadcast_to(np.array([0.07, 0.07, 0.08], np.float32), canvas.shape)
    col = np.where((mask == 255)[..., None], ball, handle)
  sel = mask > 0
  canvas[sel] = np.clip(col, 0, 1)[sel]
  return sel
