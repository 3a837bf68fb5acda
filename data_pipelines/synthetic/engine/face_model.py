"""A small linear blendshape 3D face model (our own, procedurally sculpted).

Vertices live on a sphere-topology head mesh with three holes (two eye
openings, one mouth slit). The mesh is sculpted in a 2D "design" space of
(azimuth u, elevation v) angles: every vertex has a design coordinate, the 3D
position is a radial head shape plus feature bumps, and identity/expression
bases are finite differences of that sculpting function, so they are smooth
and move vertices together with the features they belong to.

Model space: x to the subject's left (image right when frontal), y up, z out of
the face; the head is about 2 units tall and centred at the origin.

The on-disk schema (`.npz`) is shared with user-supplied 3DMMs:
  mean (V,3) float32, id_basis (n_id,V,3), exp_basis (n_exp,V,3),
  exp_names (n_exp,) str, triangles (F,3) int32, mouth_vertex_ids (M,) int32,
  landmark_vertex_ids (68,) int32 (iBUG/dlib 68-point order).
"""

import dataclasses
import functools
import os

import numpy as np
from scipy import spatial
from skimage import measure

# Names shared with visemes.NAMES where they mean the same thing.
EXPRESSION_NAMES = (
    "jaw_open", "lip_round", "lip_stretch", "lip_press", "lip_tuck", "smile_left",
    "smile_right", "blink_left", "blink_right", "brow_raise", "brow_frown",
    "upper_lip_raise", "mouth_shift", "cheek_puff")
IDENTITY_NAMES = (
    "head_width", "head_height", "head_depth", "jaw_width", "chin", "nose_length",
    "nose_width", "nose_protrusion", "eye_spacing", "eye_size", "mouth_width",
    "lip_thickness", "brow_height", "cheek_fullness", "lower_face_length",
    "ear_size", "forehead_slope", "eye_depth")
SCHEMA_KEYS = ("mean", "id_basis", "exp_basis", "exp_names", "triangles",
               "mouth_vertex_ids", "landmark_vertex_ids")


@dataclasses.dataclass(frozen=True, eq=False)
class FaceModel:
  """Linear 3D face model: `mean + id_coeffs @ id_basis + exp_coeffs @ exp_basis`."""
  mean: np.ndarray  # (V, 3) float32
  id_basis: np.ndarray  # (n_id, V, 3) float32
  exp_basis: np.ndarray  # (n_exp, V, 3) float32
  exp_names: tuple[str, ...]
  triangles: np.ndarray  # (F, 3) int32, outward (counter-clockwise) winding
  mouth_vertex_ids: np.ndarray  # (M,) int32
  landmark_vertex_ids: np.ndarray  # (68,) int32

  @property
  def num_vertices(self) -> int:
    return self.mean.shape[0]

  @property
  def n_id(self) -> int:
    return self.id_basis.shape[0]

  @property
  def n_exp(self) -> int:
    return self.exp_basis.shape[0]

  def exp_index(self, name: str) -> int:
    return self.exp_names.index(name)

  def vertices(self, id_coeffs: np.ndarray | None = None,
               exp_coeffs: np.ndarray | None = None) -> np.ndarray:
    """Vertex positions (..., V, 3); leading axes of the coefficients broadcast."""
    out = self.mean.astype(np.float32)
    for coeffs, basis in ((id_coeffs, self.id_basis), (exp_coeffs, self.exp_basis)):
      if coeffs is None:
        continue
      coeffs = np.asarray(coeffs, np.float32)
      if coeffs.shape[-1] != basis.shape[0]:
        raise ValueError(f"expected {basis.shape[0]} coefficients, got shape {coeffs.shape}")
      # einsum without BLAS: results must not depend on the thread count.
      out = out + np.einsum("...k,kvc->...vc", coeffs, basis, optimize=False)
    return out

  def landmarks(self, vertices: np.ndarray) -> np.ndarray:
    """The 68 landmark positions (..., 68, 3) of a vertex array (..., V, 3)."""
    return vertices[..., self.landmark_vertex_ids, :]

  def save(self, path: str | os.PathLike) -> None:
    np.savez(path, mean=self.mean, id_basis=self.id_basis, exp_basis=self.exp_basis,
             exp_names=np.array(self.exp_names, dtype=str), triangles=self.triangles,
             mouth_vertex_ids=self.mouth_vertex_ids,
             landmark_vertex_ids=self.landmark_vertex_ids)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "FaceModel":
    with np.load(path, allow_pickle=False) as data:
      missing = [k for k in SCHEMA_KEYS if k not in data.files]
      if missing:
        raise ValueError(f"{path}: face model file is missing keys {missing} "
                         f"(schema: {', '.join(SCHEMA_KEYS)})")
      arrays = {k: data[k] for k in SCHEMA_KEYS}
    model = cls(
        mean=arrays["mean"].astype(np.float32),
        id_basis=arrays["id_basis"].astype(np.float32),
        exp_basis=arrays["exp_basis"].astype(np.float32),
        exp_names=tuple(str(n) for n in arrays["exp_names"]),
        triangles=arrays["triangles"].astype(np.int32),
        mouth_vertex_ids=arrays["mouth_vertex_ids"].astype(np.int32),
        landmark_vertex_ids=arrays["landmark_vertex_ids"].astype(np.int32))
    model.validate()
    return model

  def validate(self) -> None:
    """Raises ValueError if the arrays do not fit together."""
    v = self.mean.shape[0]
    checks = [
        (self.mean.ndim == 2 and self.mean.shape[1] == 3, "mean must be (V,3)"),
        (self.id_basis.ndim == 3 and self.id_basis.shape[1:] == (v, 3),
         "id_basis must be (n_id,V,3)"),
        (self.exp_basis.ndim == 3 and self.exp_basis.shape[1:] == (v, 3),
         "exp_basis must be (n_exp,V,3)"),
        (len(self.exp_names) == self.exp_basis.shape[0], "exp_names must have n_exp entries"),
        (self.triangles.ndim == 2 and self.triangles.shape[1] == 3, "triangles must be (F,3)"),
        (self.landmark_vertex_ids.shape == (68,), "landmark_vertex_ids must be (68,)"),
        (self.mouth_vertex_ids.ndim == 1, "mouth_vertex_ids must be (M,)"),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(message)
    for name in ("triangles", "mouth_vertex_ids", "landmark_vertex_ids"):
      ids = getattr(self, name)
      if ids.size and (ids.min() < 0 or ids.max() >= v):
        raise ValueError(f"{name} has vertex ids outside [0, {v})")


# ---------------------------------------------------------------------------
# Design-space layout (angles in radians; u = azimuth, v = elevation).

_EYE_U, _EYE_V, _EYE_HALF_W = 0.335, 0.06, 0.15
_EYE_UP_H, _EYE_LOW_H, _EYE_TILT = 0.058, 0.034, 0.012
_MOUTH_V, _MOUTH_HALF_W, _MOUTH_LENS_H = -0.46, 0.19, 0.018
_LIP_UP_H, _LIP_LOW_H, _LIP_CORNER_W = 0.05, 0.065, 0.21
_EAR_U, _EAR_V = 1.55, 0.0


def _mirror(uv):
  return np.stack([-uv[..., 0], uv[..., 1]], -1)


def _eye_curves(s):
  """Upper/lower lid v of the left-image eye (u < 0); s=0 outer, s=1 inner corner."""
  u = -(_EYE_U + _EYE_HALF_W) + 2 * _EYE_HALF_W * s
  base = _EYE_V + _EYE_TILT * (1 - s)  # Outer corner slightly higher.
  bulge = np.sin(np.pi * s)
  upper = base + _EYE_UP_H * bulge ** 0.8 * (1 - 0.25 * (s - 0.6))
  lower = base - _EYE_LOW_H * bulge ** 0.9
  return u, upper, lower


def _eye_boundary():
  """12-point eye-opening loops (left, right) and landmark positions in the loop."""
  s = np.arange(7) / 6.0
  u, up, low = _eye_curves(s)
  # Loop: outer corner, upper lid to inner corner, back along the lower lid.
  loop = np.concatenate([np.stack([u, up], 1), np.stack([u[5:0:-1], low[5:0:-1]], 1)])
  # Landmark order for the left-image eye: 36 outer, 37/38 upper, 39 inner, 40/41 lower.
  left_lm = [0, 2, 4, 6, 8, 10]
  right_loop = _mirror(loop)
  # 42 inner, 43/44 upper, 45 outer, 46/47 lower (mirror of 39, 38, 37, 36, 41, 40).
  right_lm = [6, 4, 2, 0, 10, 8]
  return loop, right_loop, left_lm, right_lm


def _mouth_lens(t):
  g = np.clip(1 - t ** 2, 0, None) ** 0.7
  return _MOUTH_V + _MOUTH_LENS_H * g, _MOUTH_V - _MOUTH_LENS_H * g


def _mouth_boundary():
  """16-point mouth loop from the left corner along the upper lip."""
  t = np.arange(-4, 5) / 4.0
  up, low = _mouth_lens(t)
  u = t * _MOUTH_HALF_W
  loop = np.concatenate([np.stack([u, up], 1), np.stack([u[7:0:-1], low[7:0:-1]], 1)])
  # 60 left corner, 61-63 upper (t=-.25,0,.25), 64 right corner, 65-67 lower (t=.25,0,-.25).
  return loop, _INNER_LIP_LOOP


def _outer_lip(u):
  x = np.clip(u / _LIP_CORNER_W, -1, 1)
  bow = 0.008 * np.exp(-(u / 0.03) ** 2)  # Cupid's bow dip.
  upper = _MOUTH_V + _LIP_UP_H * (1 - x ** 2) ** 0.5 - bow
  lower = _MOUTH_V - _LIP_LOW_H * (1 - x ** 2) ** 0.6
  return upper, lower


# Jaw contour, brows and nose bridge where dlib's 68-point predictor puts them on
# renders of this model (least squares over 24 identities at yaw 0 and +-20 deg,
# frontal weighted twice; mirror-symmetric), so that fitting dlib landmarks
# recovers the pose: dlib's contour runs inside the head's silhouette and up to
# the temples; its brow points mark the upper edge and inner end of the painted
# brows. The upper contour points (0-4) are then moved 30 % of the way back out
# towards the silhouette in azimuth: dlib's contour slides along the silhouette
# as the head turns, and this balances the yaw bias of fixed vertices (fitting
# dlib's points at yaw 0 and +-20 deg: mean yaw error within 0.3 deg, pitch within
# 2.1 deg; `python tests/test_speech_face_fitting.py --dlib_placement 24 --size 320`).
# Left-image side (u < 0); the right side is the mirror image.
_JAW_UV = np.array([
    [-1.0, 0.168], [-0.958, -0.008], [-0.924, -0.188], [-0.889, -0.374], [-0.797, -0.546],
    [-0.585, -0.668], [-0.382, -0.745], [-0.172, -0.767], [0.0, -0.742]])
_BROW_UV = np.array([[-0.56, 0.212], [-0.46, 0.262], [-0.338, 0.276], [-0.216, 0.254],
                     [-0.11, 0.217]])
_NOSE_BRIDGE_V = np.array([0.076, -0.02, -0.11, -0.182])  # 27 (between the eyes) to 30 (tip).
# Inner-lip landmarks 61, 63, 65, 67 sit a quarter of the way from the centre to the
# corners (dlib's placement), 60/64 at the corners, 62/66 in the middle.
_INNER_LIP_LOOP = [0, 3, 4, 5, 8, 11, 12, 13]


def _landmark_design_points():
  """Design (u, v) of the 68 landmarks that are not on a hole boundary (NaN there)."""
  lm = np.full((68, 2), np.nan)
  lm[0:9] = _JAW_UV
  lm[9:17] = _mirror(_JAW_UV[7::-1])
  lm[17:22] = _BROW_UV
  lm[22:27] = _mirror(_BROW_UV[::-1])
  lm[27:31] = np.stack([np.zeros(4), _NOSE_BRIDGE_V], 1)
  lm[31:36] = np.array([[-0.085, -0.272], [-0.045, -0.288], [0.0, -0.295], [0.045, -0.288],
                        [0.085, -0.272]])
  outer_u = np.array([-_LIP_CORNER_W, -0.13, -0.05, 0.0, 0.05, 0.13, _LIP_CORNER_W])
  up, _ = _outer_lip(outer_u)
  lm[48:55] = np.stack([outer_u, up], 1)
  lower_u = np.array([0.13, 0.05, 0.0, -0.05, -0.13])
  _, low = _outer_lip(lower_u)
  lm[55:60] = np.stack([lower_u, low], 1)
  lm[48, 1] = lm[54, 1] = _MOUTH_V
  return lm


# ---------------------------------------------------------------------------
# Point sampling and triangulation.

def _uv_to_dir(uv):
  u, v = uv[..., 0], uv[..., 1]
  return np.stack([np.cos(v) * np.sin(u), np.sin(v), np.cos(v) * np.cos(u)], -1)


def _dir_to_uv(d):
  d = d / np.linalg.norm(d, axis=-1, keepdims=True)
  return np.stack([np.arctan2(d[..., 0], d[..., 2]), np.arcsin(np.clip(d[..., 1], -1, 1))], -1)


def _gauss(u, v, cu, cv, su, sv):
  return np.exp(-((u - cu) / su) ** 2 - ((v - cv) / sv) ** 2)


def _spacing(uv):
  """Target vertex spacing (radians): fine on features, coarse on the back."""
  u, v = uv[..., 0], uv[..., 1]
  face = np.exp(-np.maximum(np.abs(u) - 0.9, 0) ** 2 / 0.05
                - np.maximum(v - 0.55, 0) ** 2 / 0.05 - np.maximum(-0.95 - v, 0) ** 2 / 0.03)
  feat = np.maximum.reduce([
      _gauss(np.abs(u), v, _EYE_U, _EYE_V, 0.25, 0.14),
      _gauss(u, v, 0.0, _MOUTH_V, 0.3, 0.14),
      _gauss(u, v, 0.0, -0.15, 0.13, 0.2),
      _gauss(np.abs(u), v, _EAR_U, _EAR_V, 0.15, 0.25) * 0.6,
  ])
  return 0.13 - 0.07 * face - 0.025 * feat


def _fibonacci_sphere(n):
  i = np.arange(n) + 0.5
  y = 1 - 2 * i / n
  phi = np.pi * (3 - np.sqrt(5)) * i
  r = np.sqrt(1 - y ** 2)
  return np.stack([r * np.sin(phi), y, r * np.cos(phi)], 1)


def _sample_points(forced_uv, holes):
  """Greedy variable-radius Poisson-disk sample of the sphere around forced points."""
  cand = _fibonacci_sphere(24000)
  cand_uv = _dir_to_uv(cand)
  rho = _spacing(cand_uv)
  ok = np.ones(len(cand), bool)
  for loop in holes:
    ok &= ~measure.points_in_poly(cand_uv, loop)
  # Keep candidates away from forced points (landmarks) and from the hole
  # outlines (densified: thin eye corners are far from their vertices).
  dense = [forced_uv]
  for loop in holes:
    nxt = np.roll(loop, -1, axis=0)
    dense += [loop + (nxt - loop) * f for f in np.linspace(0.2, 0.8, 4)]
  dist, _ = spatial.cKDTree(_uv_to_dir(np.concatenate(dense))).query(cand)
  ok &= dist > 0.7 * rho.clip(max=0.06)
  order = np.argsort(rho, kind="stable")
  order = order[ok[order]]
  tree = spatial.cKDTree(cand)
  taken = np.zeros(len(cand), bool)
  for i in order:
    near = tree.query_ball_point(cand[i], rho[i])
    if not taken[near].any():
      taken[i] = True
  return np.concatenate([forced_uv, cand_uv[taken]])


def _triangulate(uv, holes):
  """Spherical Delaunay (convex hull), minus triangles inside the holes."""
  dirs = _uv_to_dir(uv)
  tris = spatial.ConvexHull(dirs).simplices
  centre_uv = _dir_to_uv(dirs[tris].mean(1))
  inside = np.zeros(len(tris), bool)
  for loop in holes:
    inside |= measure.points_in_poly(centre_uv, loop)
  tris = tris[~inside]
  a, b, c = (dirs[tris[:, k]] for k in range(3))
  flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
  tris[flip] = tris[flip][:, ::-1]
  return tris.astype(np.int32)


# ---------------------------------------------------------------------------
# Sculpting: design (u, v) -> 3D.

_DEFAULT_SHAPE = dict(
    head_width=0.0, head_height=0.0, head_depth=0.0, jaw_width=0.0, chin=0.0,
    nose_length=0.0, nose_width=0.0, nose_protrusion=0.0, eye_spacing=0.0,
    eye_size=0.0, mouth_width=0.0, lip_thickness=0.0, brow_height=0.0,
    cheek_fullness=0.0, lower_face_length=0.0, ear_size=0.0, forehead_slope=0.0,
    eye_depth=0.0)


def _close_mouth(uv):
  """Collapses the mouth lens so the mean mouth is closed (a zero-width slit)."""
  u, v = uv[..., 0], uv[..., 1]
  t = u / _MOUTH_HALF_W
  up, low = _mouth_lens(t)
  h = up - _MOUTH_V
  sigma = 0.05
  shift = np.where(v >= _MOUTH_V, h * np.exp(-((np.maximum(v - up, 0)) / sigma) ** 2),
                   -h * np.exp(-((np.maximum(low - v, 0)) / sigma) ** 2))
  return np.stack([u, v - shift], -1)


def _blink_remap(uv, side):
  """Moves the upper lid of one eye down to meet the (slightly raised) lower lid.

  side: +1 for the eye at u > 0 (the subject's left eye), -1 for u < 0.
  """
  u, v = uv[..., 0], uv[..., 1]
  s = np.clip((side * u - (_EYE_U - _EYE_HALF_W)) / (2 * _EYE_HALF_W), 0, 1)
  s = 1 - s  # _eye_curves runs from the outer corner (s=0) to the inner one.
  _, up, low = _eye_curves(s)
  meet = low + 0.15 * (up - low)
  inside_u = np.abs(side * u - _EYE_U) < _EYE_HALF_W
  # The upper lid overshoots the meeting line a little so that it still covers
  # the eye when identity coefficients make the opening taller than the mean's.
  overshoot = 0.02 * np.sin(np.pi * s) ** 0.8
  gap_up = np.where(inside_u, up - meet + overshoot, 0.0)
  gap_low = np.where(inside_u, meet - low, 0.0)
  above = v >= meet
  sigma_up, sigma_low = 0.06, 0.03
  dv = np.where(above, -gap_up * np.exp(-(np.maximum(v - up, 0) / sigma_up) ** 2),
                gap_low * np.exp(-(np.maximum(low - v, 0) / sigma_low) ** 2))
  # Only points on this eye's side (the other eye and the nose bridge stay).
  dv = dv * (side * u > 0)
  return np.stack([u, v + dv], -1)


def _warp(uv, p):
  """Identity warps of the design space (moving features, not bulging them)."""
  u, v = uv[..., 0].copy(), uv[..., 1].copy()
  au = np.abs(u)
  sign = np.sign(u)
  eye_w = _gauss(au, v, _EYE_U, _EYE_V, 0.22, 0.15)
  u = u + sign * 0.03 * p["eye_spacing"] * eye_w
  du, dv = au - _EYE_U, v - _EYE_V
  u = u + sign * du * 0.12 * p["eye_size"] * eye_w
  v = v + dv * 0.12 * p["eye_size"] * eye_w
  mouth_w = _gauss(u, v, 0.0, _MOUTH_V, 0.32, 0.13)
  u = u * (1 + 0.1 * p["mouth_width"] * mouth_w)
  v = v + (v - _MOUTH_V) * 0.25 * p["lip_thickness"] * _gauss(u, v, 0, _MOUTH_V, 0.25, 0.08)
  brow_w = _gauss(au, v, 0.33, 0.22, 0.3, 0.08)
  v = v + 0.025 * p["brow_height"] * brow_w
  nose_w = _gauss(u, v, 0.0, -0.22, 0.16, 0.12)
  v = v - 0.035 * p["nose_length"] * nose_w
  u = u * (1 + 0.15 * p["nose_width"] * _gauss(u, v, 0.0, -0.26, 0.14, 0.07))
  lower = np.clip((-0.1 - v) / 0.8, 0, 1) * (v > -1.3)
  v = v - 0.06 * p["lower_face_length"] * lower * np.exp(-(u / 1.2) ** 2)
  return np.stack([u, v], -1)


def _smoothstep(x):
  x = np.clip(x, 0, 1)
  return x * x * (3 - 2 * x)


def _radius(dirs, uv, p):
  """Head radius along unit directions: super-ellipsoid plus feature bumps (in uv)."""
  dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
  a = 0.78 * (1 + 0.05 * p["head_width"])
  b = 1.0 * (1 + 0.04 * p["head_height"])
  c = 0.92 * (1 + 0.05 * p["head_depth"])
  # The jaw tapers towards the chin.
  taper = (0.2 - 0.06 * p["jaw_width"]) * _smoothstep((-dy - 0.05) / 0.75)
  a = a * (1 - taper)
  e = 2.6
  horiz = (np.abs(dx) / a) ** e + (np.abs(dz) / c) ** e
  r = (horiz ** (2 / e) + (dy / b) ** 2) ** -0.5

  u, v = uv[..., 0], uv[..., 1]
  au = np.abs(u)
  front = np.clip(np.cos(u), 0, None)
  bump = np.zeros_like(r)
  # Muzzle: the mouth region sits forward of the skull ellipsoid.
  bump += 0.1 * _gauss(u, v, 0.0, -0.55, 0.32, 0.3)
  # Nose: a ridge growing towards the tip, falling off under it.
  nv = np.clip((0.1 - v) / 0.3, 0, 1)
  tip_fall = np.exp(-np.maximum(-0.215 - v, 0) ** 2 / 0.0025)
  nose_amp = (0.035 + 0.19 * nv ** 1.4) * tip_fall * (v < 0.12) * np.clip((0.14 - v) / 0.05, 0, 1)
  nose_w = 0.05 + 0.045 * nv
  bump += (1 + 0.2 * p["nose_protrusion"]) * nose_amp * np.exp(-(u / nose_w) ** 2)
  bump += 0.06 * _gauss(au, v, 0.07, -0.245, 0.045, 0.04)  # Alar wings.
  # Eye sockets, brow ridge, cheekbones, cheeks.
  bump -= (0.055 + 0.015 * p["eye_depth"]) * _gauss(au, v, _EYE_U, _EYE_V + 0.02, 0.14, 0.09)
  bump += 0.035 * _gauss(au, v, 0.3, 0.2, 0.28, 0.06) * (1 + 0.3 * p["forehead_slope"])
  bump += 0.03 * _gauss(au, v, 0.5, -0.1, 0.16, 0.1)
  bump += (0.01 + 0.02 * p["cheek_fullness"]) * _gauss(au, v, 0.4, -0.35, 0.16, 0.14)
  bump -= 0.03 * p["forehead_slope"] * _gauss(u, v, 0.0, 0.5, 0.6, 0.2)
  # Lips, the groove under the lower lip, and the chin.
  lip_w = np.exp(-(u / 0.2) ** 4)
  bump += 0.028 * lip_w * np.exp(-((v - (_MOUTH_V + 0.028)) / 0.03) ** 2)
  bump += 0.032 * lip_w * np.exp(-((v - (_MOUTH_V - 0.035)) / 0.032) ** 2)
  bump -= 0.015 * _gauss(u, v, 0.0, -0.56, 0.15, 0.03)
  bump += (0.07 + 0.03 * p["chin"]) * _gauss(u, v, 0.0, -0.74, 0.2, 0.12)
  # Ears: thin flaps sticking out sideways.
  ear = np.exp(-((au - _EAR_U) / 0.09) ** 2 - ((v - _EAR_V) / 0.2) ** 4)
  bump += (0.15 + 0.03 * p["ear_size"]) * ear
  return r + bump * np.where(au > 1.2, 1.0, front ** 0.3)


def _sculpt(design_uv, p, remap=None):
  """3D positions of design points for shape parameters `p`."""
  uv = _close_mouth(design_uv)
  if remap is not None:
    uv = remap(uv)
  warped = _warp(uv, p)
  dirs = _uv_to_dir(warped)
  return dirs * _radius(dirs, uv, p)[..., None]


def _jaw_weight(design_uv):
  """1 on the jaw (lower lip, chin), 0 on the skull; split along the mouth slit."""
  u, v = design_uv[..., 0], design_uv[..., 1]
  au = np.abs(u)
  # Line from the mouth corner up to the jaw hinge in front of the ear.
  hinge_u, hinge_v = 1.3, -0.05
  frac = np.clip((au - _MOUTH_HALF_W) / (hinge_u - _MOUTH_HALF_W), 0, 1)
  line = _MOUTH_V + frac * (hinge_v - _MOUTH_V)
  width = 0.005 + 0.12 * frac
  w = 1 / (1 + np.exp(-(line - v) / width))
  w *= 1 - _smoothstep((au - 1.15) / 0.3)  # Fade out at the hinge.
  w *= _smoothstep((v + 1.45) / 0.3)  # And towards the neck.
  return w


def _expression_basis(design_uv, mean):
  """(n_exp, V, 3) displacements, one per EXPRESSION_NAMES entry."""
  p0 = _DEFAULT_SHAPE
  u, v = design_uv[..., 0], design_uv[..., 1]
  au = np.abs(u)
  x = mean[:, 0]
  zeros = np.zeros_like(mean)
  side = np.where(v >= _MOUTH_V, 1.0, -1.0)  # Above / below the mouth slit.
  basis = {}

  # jaw_open: rotate the jaw about a hinge axis.
  theta = 0.32
  pivot = np.array([0.0, -0.02, -0.05])
  rel = mean - pivot
  cos, sin = np.cos(theta), np.sin(theta)
  rot = np.stack([rel[:, 0], cos * rel[:, 1] - sin * rel[:, 2],
                  sin * rel[:, 1] + cos * rel[:, 2]], 1)
  basis["jaw_open"] = _jaw_weight(design_uv)[:, None] * (rot - rel)

  lip = _gauss(u, v, 0.0, _MOUTH_V, 0.24, 0.11)
  d = zeros.copy()
  d[:, 0] = -0.4 * x * lip
  d[:, 2] = 0.06 * lip
  d[:, 1] = 0.01 * side * _gauss(u, v, 0.0, _MOUTH_V, 0.15, 0.06)
  basis["lip_round"] = d

  smile = _gauss(u, v, 0.0, _MOUTH_V, 0.3, 0.13)
  corner = np.clip(u / _MOUTH_HALF_W, -1.5, 1.5) ** 2
  d = zeros.copy()
  d[:, 0] = 0.3 * x * smile
  d[:, 1] = 0.045 * corner * smile + 0.02 * _gauss(au, v, 0.3, -0.3, 0.14, 0.12)
  d[:, 2] = -0.02 * corner * smile + 0.015 * _gauss(au, v, 0.3, -0.3, 0.14, 0.12)
  basis["lip_stretch"] = d
  # One-sided smiles (x > 0 is the subject's left).
  basis["smile_left"] = d * (1 / (1 + np.exp(-x / 0.04)))[:, None]
  basis["smile_right"] = d * (1 / (1 + np.exp(x / 0.04)))[:, None]

  # lip_press: the red of the lips rolls in towards the (fixed) slit.
  dist = np.abs(v - _MOUTH_V)
  roll = (np.exp(-(u / 0.21) ** 4) * (1 - np.exp(-(dist / 0.02) ** 2))
          * np.exp(-(dist / 0.07) ** 2))
  d = zeros.copy()
  d[:, 1] = -0.018 * side * roll
  d[:, 2] = -0.015 * roll
  basis["lip_press"] = d

  # lip_tuck: the lower lip rides up and back under the upper teeth.
  below = np.maximum(_MOUTH_V - v, 0)
  lower_lip = np.exp(-(u / 0.2) ** 4) * np.exp(-(below / 0.06) ** 2) * (side < 0)
  d = zeros.copy()
  d[:, 1] = 0.01 * lower_lip
  d[:, 2] = -0.04 * lower_lip
  basis["lip_tuck"] = d

  for name, side_sign in (("blink_left", 1), ("blink_right", -1)):
    remap = functools.partial(_blink_remap, side=side_sign)
    d = _sculpt(design_uv, p0, remap=remap) - mean
    # The closed lid bulges over the eyeball instead of sinking into the socket;
    # a function of the closed position, so the meeting lids stay together.
    cu, cv = remap(_close_mouth(design_uv)).T
    d[:, 2] += 0.025 * np.exp(-((side_sign * cu - _EYE_U) / _EYE_HALF_W) ** 4
                              - ((cv - _EYE_V) / 0.05) ** 2)
    basis[name] = d

  brow = _gauss(au, v, 0.33, 0.24, 0.45, 0.12) * _smoothstep((v - _EYE_V - 0.04) / 0.1)
  d = zeros.copy()
  d[:, 1] = 0.05 * brow
  basis["brow_raise"] = d

  frown = _gauss(au, v, 0.2, 0.18, 0.12, 0.08)
  d = zeros.copy()
  d[:, 1] = -0.03 * frown
  d[:, 0] = -0.03 * np.sign(u) * frown
  d[:, 2] = 0.01 * frown
  basis["brow_frown"] = d

  upper = np.exp(-(u / 0.17) ** 4) * np.exp(-((v - _MOUTH_V - 0.03) / 0.045) ** 2) * (v >= _MOUTH_V)
  d = zeros.copy()
  d[:, 1] = 0.03 * upper
  d[:, 2] = 0.01 * upper
  basis["upper_lip_raise"] = d

  d = zeros.copy()
  d[:, 0] = 0.05 * _gauss(u, v, 0.0, _MOUTH_V, 0.25, 0.14)
  basis["mouth_shift"] = d

  puff = _gauss(au, v, 0.38, -0.42, 0.16, 0.14)
  normal = mean / np.linalg.norm(mean, axis=1, keepdims=True)
  basis["cheek_puff"] = 0.06 * puff[:, None] * normal
  return np.stack([basis[n] for n in EXPRESSION_NAMES]).astype(np.float32)


def _check_hole_loops(triangles, loops):
  """The open boundary must be exactly the hole outlines (in order)."""
  edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]],
                                  triangles[:, [2, 0]]]), 1)
  unique, counts = np.unique(edges, axis=0, return_counts=True)
  boundary = {tuple(e) for e in unique[counts == 1]}
  expected = {tuple(sorted((l[i], l[(i + 1) % len(l)]))) for l in loops for i in range(len(l))}
  if boundary != expected or counts.max() > 2:
    raise RuntimeError("face mesh triangulation does not follow the eye/mouth outlines")


@functools.lru_cache(maxsize=1)
def build_face_model() -> FaceModel:
  """Builds the procedural face model (deterministic; cached per process)."""
  left_eye, right_eye, left_lm, right_lm = _eye_boundary()
  mouth, mouth_lm = _mouth_boundary()
  holes = [left_eye, right_eye, mouth]
  lm_uv = _landmark_design_points()
  free = ~np.isnan(lm_uv[:, 0])
  forced = np.concatenate([left_eye, right_eye, mouth, lm_uv[free]])
  n_eye, n_mouth = len(left_eye), len(mouth)
  landmark_ids = np.zeros(68, np.int64)
  landmark_ids[36:42] = np.array(left_lm)
  landmark_ids[42:48] = n_eye + np.array(right_lm)
  landmark_ids[60:68] = 2 * n_eye + np.array(mouth_lm)
  landmark_ids[free] = 2 * n_eye + n_mouth + np.arange(free.sum())

  design_uv = _sample_points(forced, holes)
  triangles = _triangulate(design_uv, holes)
  _check_hole_loops(triangles, [np.arange(len(h)) + o for h, o in
                                zip(holes, (0, n_eye, 2 * n_eye))])
  mean = _sculpt(design_uv, _DEFAULT_SHAPE)
  id_basis = []
  for name in IDENTITY_NAMES:
    p = dict(_DEFAULT_SHAPE, **{name: 1.0})
    id_basis.append(_sculpt(design_uv, p) - mean)
  exp_basis = _expression_basis(design_uv, mean)

  # Mouth vertices: inside the outer lip contour (slightly dilated) plus the slit.
  outer = lm_uv[[48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59]]
  centre = outer.mean(0)
  dilated = centre + (outer - centre) * np.array([1.08, 1.15])
  mouth_ids = np.nonzero(measure.points_in_poly(design_uv, dilated))[0]
  mouth_ids = np.union1d(mouth_ids, 2 * n_eye + np.arange(n_mouth))

  model = FaceModel(
      mean=mean.astype(np.float32), id_basis=np.stack(id_basis).astype(np.float32),
      exp_basis=exp_basis, exp_names=EXPRESSION_NAMES, triangles=triangles,
      mouth_vertex_ids=mouth_ids.astype(np.int32),
      landmark_vertex_ids=landmark_ids.astype(np.int32))
  model.validate()
  return model
