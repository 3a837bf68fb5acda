"""Geometry behind the face mesh's holes: eyeballs, teeth, mouth cavity.

It is derived from the 68 landmarks, not stored in the face model, so any mesh
in the shared schema (with open eyes and mouth) gets eyes and a mouth interior.
Everything sits behind the skin and shows only through the holes, which the
z-buffer takes care of.
"""

import numpy as np

# Materials (per triangle), shaded differently by the renderer.
SKIN, EYE, TEETH, CAVITY = 0, 1, 2, 3

_MOUTH_RING = np.pi - np.arange(8) * np.pi / 4  # Angles of landmarks 60..67 about the mouth centre.


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
  """Area-weighted unit vertex normals (N, 3)."""
  a, b, c = (vertices[triangles[:, k]] for k in range(3))
  fn = np.cross(b - a, c - a)
  n = np.zeros_like(vertices)
  idx = triangles.ravel()
  for axis in range(3):
    n[:, axis] = np.bincount(idx, np.repeat(fn[:, axis], 3), minlength=len(vertices))
  return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _orient_outward(verts, tris, centre):
  a, b, c = (verts[tris[:, k]] for k in range(3))
  flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), (a + b + c) / 3 - centre) < 0
  tris = tris.copy()
  tris[flip] = tris[flip][:, ::-1]
  return tris


def eyeball_template(n_lat: int = 7, n_lon: int = 14, max_angle: float = 1.9):
  """Unit sphere cap around +z: (dirs (N,3), triangles (F,3)), outward winding."""
  theta = np.linspace(0, max_angle, n_lat + 1)[1:]
  phi = np.arange(n_lon) * 2 * np.pi / n_lon
  th, ph = np.meshgrid(theta, phi, indexing="ij")
  ring = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
  dirs = np.concatenate([[[0.0, 0.0, 1.0]], ring])
  tris = [[0, 1 + j, 1 + (j + 1) % n_lon] for j in range(n_lon)]
  for i in range(n_lat - 1):
    for j in range(n_lon):
      a, b = 1 + i * n_lon + j, 1 + i * n_lon + (j + 1) % n_lon
      tris += [[a, a + n_lon, b], [b, a + n_lon, b + n_lon]]
  tris = np.array(tris, np.int64)
  return dirs, _orient_outward(dirs, tris, np.zeros(3))


def eyeball_placement(eye_landmarks: np.ndarray) -> tuple[np.ndarray, float]:
  """Centre and radius of an eyeball behind a 6-point eye opening."""
  width = np.linalg.norm(eye_landmarks[3] - eye_landmarks[0])
  radius = 0.55 * width
  front = eye_landmarks.mean(0)
  return front - np.array([0.0, 0.0, radius + 0.02]), radius


# Mouth cavity: 3 rings of 8 around the inner-lip contour plus a back point.
def cavity_triangles() -> np.ndarray:
  tris = []
  for r in range(2):
    for k in range(8):
      a, b = r * 8 + k, r * 8 + (k + 1) % 8
      tris += [[a, b, b + 8], [a, b + 8, a + 8]]
  tris += [[16 + k, 16 + (k + 1) % 8, 24] for k in range(8)]
  return np.array(tris, np.int64)


def cavity_colours(mouth=None) -> np.ndarray:
  """(25, 3) per-vertex colours: dark throat, pinkish tongue at the bottom; a speaker's
  `appearance.MouthInterior` (duck-typed: .tongue, .inner_lip) recolours tongue and inner lip."""
  col = np.zeros((25, 3))
  col[0:8] = [0.32, 0.1, 0.1]
  col[8:16] = [0.16, 0.04, 0.04]
  col[16:24] = [0.06, 0.015, 0.015]
  col[[8 + 5, 8 + 6, 8 + 7]] = [0.5, 0.2, 0.2]  # Tongue.
  col[[16 + 5, 16 + 6, 16 + 7]] = [0.4, 0.15, 0.15]
  col[24] = [0.05, 0.01, 0.01]
  if mouth is not None:
    col[0:8] = mouth.inner_lip
    col[[8 + 5, 8 + 6, 8 + 7]] = mouth.tongue
    col[[16 + 5, 16 + 6, 16 + 7]] = 0.8 * np.asarray(mouth.tongue)
  return col


def cavity_vertices(inner_lip: np.ndarray) -> np.ndarray:
  """(25, 3) cavity vertices for the current inner-lip landmarks 60..67."""
  centre = inner_lip.mean(0)
  rel = inner_lip - centre
  # A tube that follows the opening's own shape (so it never reaches past the
  # lips into the chin), with a minimum height so it is never flat.
  circle = np.stack([np.zeros(8), np.sin(_MOUTH_RING), np.zeros(8)], 1)
  ring0 = centre + rel * [1.0, 1.3, 1.0] + [0.0, 0.0, -0.045]
  ring1 = centre + rel * [0.9, 1.2, 1.0] + 0.03 * circle + [0.0, -0.01, -0.1]
  ring2 = centre + rel * [0.6, 0.9, 1.0] + 0.02 * circle + [0.0, -0.015, -0.2]
  back = centre + [0.0, -0.015, -0.22]
  return np.concatenate([ring0, ring1, ring2, back[None]])


# Teeth: two rigid strips (upper, lower) of 2 x 9 vertices along a dental arch.
TEETH_COLS = 9


def teeth_triangles() -> np.ndarray:
  tris = []
  for strip in range(2):
    o = strip * 2 * TEETH_COLS
    for j in range(TEETH_COLS - 1):
      a, b = o + j, o + j + 1
      tris += [[a, b, b + TEETH_COLS], [a, b + TEETH_COLS, a + TEETH_COLS]]
  return np.array(tris, np.int64)


def teeth_along() -> np.ndarray:
  """(36,) position along each strip in [0, 1] (for gaps between teeth)."""
  s = np.linspace(0, 1, TEETH_COLS)
  return np.tile(s, 4)


def teeth_vertices(upper_anchor: np.ndarray, lower_anchor: np.ndarray, half_width: float
                   ) -> np.ndarray:
  """(36, 3) teeth vertices: two rigid arches behind the lips.

  Args:
    upper_anchor: (3,) middle of the upper inner lip of the neutral face (the
      upper teeth are fixed to the skull).
    lower_anchor: (3,) the same point on the lower lip, moved with the jaw.
    half_width: half the mouth width.
  """
  x = np.linspace(-0.75, 0.75, TEETH_COLS)
  # The dental arch curves back faster than the lips.
  arch = np.stack([x * half_width, np.zeros_like(x), -0.035 - 0.06 * x ** 2], 1)
  out = []
  # The lower teeth sit further back: the chin recedes under the lower lip.
  for anchor, top, bottom, back in ((upper_anchor, 0.012, -0.05, 0.0),
                                    (lower_anchor, 0.004, -0.03, 0.025)):
    row = anchor + arch - [0, 0, back]
    out += [row + [0, top, 0], row + [0, bottom, 0]]
  return np.concatenate(out)
