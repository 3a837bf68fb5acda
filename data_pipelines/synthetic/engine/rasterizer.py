"""A small vectorised numpy z-buffer triangle rasteriser.

Painter's algorithm breaks on the interpenetrating parts of a head (eyeballs
behind lids, teeth behind lips), so we resolve visibility per pixel instead:
every (triangle, pixel-in-bounding-box) pair is tested at once with edge
functions, and the nearest covering triangle wins. Cost scales with the summed
bounding-box area, which is small for a finely tessellated face.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Fragments:
  """Visible surface samples, one per covered pixel (sparse, row-major order).

  Attributes:
    pixel: (P,) flat pixel index `y * width + x`.
    triangle: (P,) index of the winning triangle.
    bary: (P, 3) perspective-correct barycentric weights of its corners.
    back_facing: (P,) whether the winning triangle faces away from the camera
      (only possible for triangles flagged double-sided).
  """
  pixel: np.ndarray
  triangle: np.ndarray
  bary: np.ndarray
  back_facing: np.ndarray


def rasterize(xy: np.ndarray, depth: np.ndarray, triangles: np.ndarray,
              height: int, width: int,
              double_sided: np.ndarray | None = None) -> Fragments:
  """Rasterises triangles with a z-buffer.

  Args:
    xy: (N, 2) vertex positions in pixels; pixel centres are at integers.
    depth: (N,) positive distance from the camera (smaller = nearer).
    triangles: (F, 3) vertex indices; counter-clockwise on screen (y down
      means clockwise in the usual maths orientation) is front-facing.
    height: image height in pixels.
    width: image width in pixels.
    double_sided: optional (F,) bool; back-facing triangles are dropped
      unless flagged here.

  Returns:
    The visible fragments.
  """
  xy = np.asarray(xy, np.float64)
  a, b, c = (xy[triangles[:, k]] for k in range(3))
  # Twice the signed area; with y pointing down a front face has area < 0.
  area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
  keep = area < -1e-9
  if double_sided is not None:
    keep |= double_sided & (area > 1e-9)
  corners = np.stack([a, b, c], 1)
  x0 = np.clip(np.ceil(corners[..., 0].min(1)), 0, width - 1).astype(np.int64)
  x1 = np.clip(np.floor(corners[..., 0].max(1)), -1, width - 1).astype(np.int64)
  y0 = np.clip(np.ceil(corners[..., 1].min(1)), 0, height - 1).astype(np.int64)
  y1 = np.clip(np.floor(corners[..., 1].max(1)), -1, height - 1).astype(np.int64)
  nx = np.maximum(x1 - x0 + 1, 0)
  ny = np.maximum(y1 - y0 + 1, 0)
  # Bounding boxes entirely off-screen have a min clipped above the max.
  nx[(corners[..., 0].max(1) < 0) | (corners[..., 0].min(1) > width - 1)] = 0
  ny[(corners[..., 1].max(1) < 0) | (corners[..., 1].min(1) > height - 1)] = 0
  counts = np.where(keep, nx * ny, 0)
  tri_ids = np.nonzero(counts)[0]
  counts = counts[tri_ids]
  empty = Fragments(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)),
                    np.zeros(0, bool))
  if tri_ids.size == 0:
    return empty

  # One row per (triangle, bounding-box pixel) pair, in float32 for speed
  # (coordinates are pixel-sized, so the precision is plenty).
  tri = np.repeat(tri_ids, counts)
  start = np.repeat(np.cumsum(counts) - counts, counts)
  local = np.arange(tri.size) - start
  px = x0[tri] + local % nx[tri]
  py = y0[tri] + local // nx[tri]

  # Edge functions, w_k = A_k x + B_k y + C_k: the weight of corner k.
  inv_area = 1.0 / np.where(area == 0, 1.0, area)
  coef = np.empty((len(area), 2, 3), np.float32)
  for k, (p, q) in enumerate(((b, c), (c, a))):
    coef[:, k, 0] = -(q[:, 1] - p[:, 1]) * inv_area
    coef[:, k, 1] = (q[:, 0] - p[:, 0]) * inv_area
    coef[:, k, 2] = ((q[:, 1] - p[:, 1]) * p[:, 0] - (q[:, 0] - p[:, 0]) * p[:, 1]) * inv_area
  cf = coef[tri]
  pxf, pyf = px.astype(np.float32), py.astype(np.float32)
  w0 = cf[:, 0, 0] * pxf + cf[:, 0, 1] * pyf + cf[:, 0, 2]
  w1 = cf[:, 1, 0] * pxf + cf[:, 1, 1] * pyf + cf[:, 1, 2]
  w2 = 1.0 - w0 - w1
  eps = -1e-5
  inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
  if not inside.any():
    return empty
  tri, px, py = tri[inside], px[inside], py[inside]
  w = np.stack([w0[inside], w1[inside], w2[inside]], 1).clip(0.0, 1.0)

  # Perspective: 1/depth is affine in screen space.
  inv_z = 1.0 / np.asarray(depth, np.float32)[triangles[tri]]  # (P, 3)
  wz = w * inv_z
  frag_inv_z = wz.sum(1)
  pixel = py * width + px
  order = np.lexsort((-frag_inv_z, pixel))  # Per pixel, nearest first.
  pixel = pixel[order]
  first = np.ones(pixel.size, bool)
  first[1:] = pixel[1:] != pixel[:-1]
  sel = order[first]
  bary = (wz[sel] / frag_inv_z[sel, None]).astype(np.float64)
  return Fragments(pixel=pixel[first], triangle=tri[sel], bary=bary,
                   back_facing=area[tri[sel]] > 0)
