"""Per-identity appearance: colours and a painted UV skin texture.

The texture is painted in a spherical (azimuth, elevation) unwrap of the mean
mesh, with features placed from the 68 landmarks' UVs, so it works for any face
model in the shared schema. Skin carries spots and blotches at several scales
on purpose: motion estimators need texture inside the face to lock onto.
"""

import dataclasses

import cv2
import numpy as np

from data_pipelines.synthetic.engine import face_model as face_model_lib

_SKIN_TONES = np.array([  # sRGB, light to dark.
    [0.96, 0.82, 0.72], [0.91, 0.72, 0.60], [0.80, 0.60, 0.46],
    [0.66, 0.46, 0.33], [0.48, 0.32, 0.22], [0.32, 0.21, 0.15]])
_HAIR_COLOURS = np.array([
    [0.06, 0.05, 0.05], [0.16, 0.10, 0.06], [0.32, 0.20, 0.11], [0.52, 0.36, 0.20],
    [0.78, 0.64, 0.40], [0.55, 0.24, 0.10], [0.62, 0.62, 0.62], [0.88, 0.87, 0.84]])
_HAIR_P = np.array([0.25, 0.22, 0.16, 0.1, 0.09, 0.06, 0.08, 0.04])
_IRIS_COLOURS = np.array([
    [0.25, 0.14, 0.07], [0.38, 0.24, 0.12], [0.42, 0.38, 0.18], [0.22, 0.40, 0.28],
    [0.25, 0.42, 0.62], [0.45, 0.52, 0.58]])


@dataclasses.dataclass(frozen=True)
class Appearance:
  """What an identity looks like, apart from its 3D shape coefficients."""
  skin: np.ndarray  # (3,) sRGB in [0, 1]
  lip: np.ndarray
  hair: np.ndarray
  brow: np.ndarray
  iris: np.ndarray
  hairline: float  # Radians; > 0 recedes.
  bald: bool
  hair_volume: float  # Model units of outward bulk on hair regions.
  beard: float  # 0 (none) to 1 (full).
  spots: float  # 0 (clear) to 1 (heavily freckled).
  texture_seed: int


def sample_appearance(rng: np.random.Generator) -> Appearance:
  t = rng.uniform(0, len(_SKIN_TONES) - 1)
  i = int(t)
  skin = _SKIN_TONES[i] * (1 - (t - i)) + _SKIN_TONES[min(i + 1, len(_SKIN_TONES) - 1)] * (t - i)
  skin = np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1)
  lip = np.clip(skin * np.array([0.9, 0.62, 0.62]) * rng.uniform(0.8, 1.0) + [0.06, 0, 0.02], 0, 1)
  hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_P)] * rng.uniform(0.85, 1.15)
  hair = np.clip(hair, 0, 1)
  brow = np.clip(np.minimum(hair, skin * 0.5) * 0.8 + 0.03, 0, 1)
  iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.8, 1.2)
  return Appearance(
      skin=skin, lip=lip, hair=hair, brow=brow, iris=np.clip(iris, 0, 1),
      hairline=float(rng.uniform(-0.05, 0.15)), bald=bool(rng.random() < 0.08),
      hair_volume=float(rng.uniform(0.02, 0.14)),
      beard=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.2 else 0.0,
      spots=float(rng.uniform(0.1, 1.0)), texture_seed=int(rng.integers(2 ** 31)))


@dataclasses.dataclass(frozen=True)
class MouthInterior:
  """A speaker's mouth inside: what a 3DMM render lacks and only shows as the mouth opens.

  MemFace's explicit memory is meant to supply such person-specific detail from retrieved
  training frames; the default renderer draws the same generic teeth and tongue for everyone.
  """
  teeth: np.ndarray  # (3,) sRGB base colour of the teeth.
  tooth_count: int  # Teeth across each (upper / lower) strip.
  tooth_shades: np.ndarray  # (2, MAX_TEETH) per-tooth brightness of the upper / lower strip.
  gap: float  # Width of the dark line between teeth, as a fraction of a tooth.
  missing: int  # Upper tooth drawn as a dark gap (-1: none).
  tongue: np.ndarray  # (3,) sRGB.
  inner_lip: np.ndarray  # (3,) sRGB of the wet inner lip.


MAX_TEETH = 12


def sample_mouth_interior(rng: np.random.Generator) -> MouthInterior:
  teeth = np.array([0.95, 0.92, 0.82]) * rng.uniform(0.7, 1.05) + rng.uniform(-0.08, 0.08, 3)
  count = int(rng.integers(6, MAX_TEETH + 1))
  return MouthInterior(
      teeth=np.clip(teeth, 0, 1), tooth_count=count,
      tooth_shades=rng.uniform(0.65, 1.1, (2, MAX_TEETH)), gap=float(rng.uniform(0.05, 0.25)),
      missing=int(rng.integers(count)) if rng.random() < 0.5 else -1,
      tongue=np.clip(np.array([0.75, 0.3, 0.32]) * rng.uniform(0.6, 1.2, 3), 0, 1),
      inner_lip=np.clip(np.array([0.6, 0.22, 0.25]) * rng.uniform(0.6, 1.3, 3), 0, 1))


def teeth_albedo(mouth: MouthInterior, along: np.ndarray, strip: np.ndarray) -> np.ndarray:
  """(P, 3) teeth colour at positions `along` in [0, 1] of strip 0 (upper) or 1 (lower)."""
  pos = np.clip(along, 0, 1 - 1e-6) * mouth.tooth_count
  tooth = pos.astype(int)
  lower = np.round(strip).astype(int).clip(0, 1)
  colour = mouth.teeth[None] * mouth.tooth_shades[lower, tooth][:, None]
  dark = (np.abs(pos - np.round(pos)) < mouth.gap / 2) | ((tooth == mouth.missing) & (lower == 0))
  return np.where(dark[:, None], [0.12, 0.05, 0.05], colour)


# ---------------------------------------------------------------------------
# UV unwrap.

def uv_centre(model: face_model_lib.FaceModel) -> np.ndarray:
  """Centre of the spherical unwrap: the mean mesh's bounding-box centre."""
  return (model.mean.min(0) + model.mean.max(0)) / 2


def vertex_uv(model: face_model_lib.FaceModel) -> np.ndarray:
  """(V, 2) unwrap angles (azimuth in [-pi, pi], elevation) of the mean mesh."""
  d = model.mean - uv_centre(model)
  d = d / np.linalg.norm(d, axis=1, keepdims=True)
  return np.stack([np.arctan2(d[:, 0], d[:, 2]), np.arcsin(np.clip(d[:, 1], -1, 1))], 1)


def corner_uv(model: face_model_lib.FaceModel) -> np.ndarray:
  """(F, 3, 2) per-corner angles, unwrapped so no triangle spans the seam."""
  uv = vertex_uv(model)[model.triangles]
  u = uv[..., 0]
  wraps = (u.max(1) - u.min(1)) > np.pi
  u[wraps] = np.where(u[wraps] < 0, u[wraps] + 2 * np.pi, u[wraps])
  return uv


def angles_to_texels(uv: np.ndarray, width: int) -> np.ndarray:
  """Maps (u, v) angles to texel coordinates of a (width/2, width) texture."""
  height = width // 2
  x = (uv[..., 0] + np.pi) / (2 * np.pi) * width - 0.5
  y = (np.pi / 2 - uv[..., 1]) / np.pi * height - 0.5
  return np.stack([x, y], -1)


def _texel_angles(width):
  height = width // 2
  x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
  return x / width * 2 * np.pi - np.pi, np.pi / 2 - y / height * np.pi


# ---------------------------------------------------------------------------
# Painting.

def _noise(rng, shape, sigma):
  n = rng.standard_normal(shape).astype(np.float32)
  if sigma > 0.3:
    n = cv2.GaussianBlur(n, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
  return n / (n.std() + 1e-6)


def _smoothstep(x):
  x = np.clip(x, 0, 1)
  return x * x * (3 - 2 * x)


_SHIFT = 4  # cv2 fixed-point bits: sub-texel feature placement.
_RING = np.linspace(0, 2 * np.pi, 24, endpoint=False)


def _fixed(points_uv, width):
  """(N, 2) angles -> int32 fixed-point texel coordinates for cv2 drawing."""
  return np.round(angles_to_texels(np.asarray(points_uv), width) * (1 << _SHIFT)).astype(np.int32)


def _fill(img, points_uv, width, value):
  cv2.fillPoly(img, [_fixed(points_uv, width)], value, cv2.LINE_AA, shift=_SHIFT)


def _disc(img, centre_px, radius_px, value):
  k = 1 << _SHIFT
  cv2.circle(img, (int(centre_px[0] * k), int(centre_px[1] * k)), max(int(radius_px * k), k // 2),
             value, -1, cv2.LINE_AA, shift=_SHIFT)


# Where features are painted relative to the landmarks (unwrap angles, per landmark).
# The built-in model's jaw contour, brows and nose bridge follow dlib's placement
# (face_model._JAW_UV etc.), which is not the painted features' own outline:
# dlib's contour runs inside the silhouette and its brow points mark the brow's
# upper edge. These offsets (left-image side; mirrored for the right) paint the
# beard line, brows and nostrils where they were before that change. Zero for
# every other landmark.
_JAW_PAINT_OFFSET = np.array([
    [-0.3002, -0.1593], [-0.3246, -0.1527], [-0.2921, -0.1366], [-0.206, -0.1044],
    [-0.1316, -0.069], [-0.1548, -0.0584], [-0.1356, -0.0678], [-0.1004, -0.1051], [0.0, -0.155]])
_BROW_PAINT_OFFSET = np.array([
    [0.0003, -0.0466], [0.0015, -0.0472], [-0.0124, -0.0411], [-0.0267, -0.0277], [-0.0341, -0.0139]])


def _paint_offsets() -> np.ndarray:
  offsets = np.zeros((68, 2))
  offsets[0:9] = _JAW_PAINT_OFFSET
  offsets[9:17] = _JAW_PAINT_OFFSET[7::-1] * [-1, 1]
  offsets[17:22] = _BROW_PAINT_OFFSET
  offsets[22:27] = _BROW_PAINT_OFFSET[::-1] * [-1, 1]
  offsets[27, 1], offsets[30, 1] = -0.0068, -0.0195
  return offsets


def paint_anchors(model: face_model_lib.FaceModel) -> np.ndarray:
  """(68, 2) unwrap angles the painted features are placed from (landmarks + offsets)."""
  return vertex_uv(model)[model.landmark_vertex_ids] + _paint_offsets()


def hair_mask(app: Appearance, model: face_model_lib.FaceModel, uv: np.ndarray) -> np.ndarray:
  """Hair coverage in [0, 1] at unwrap angles uv (..., 2)."""
  lm = paint_anchors(model)
  u_ear = np.abs(vertex_uv(model)[np.argmax(np.abs(model.mean[:, 0])), 0])
  brow_v = lm[17:27, 1].max()
  au = np.abs(uv[..., 0]) / u_ear
  # Hairline as a function of |azimuth| / ear azimuth: forehead, temples,
  # sideburn, over the ear, down the back to the nape.
  knots = np.array([0.0, 0.3, 0.55, 0.72, 0.82, 0.88, 0.94, 1.12, 1.3, 1.6, 2.2])
  rise = np.array([0.46, 0.44, 0.36, 0.22, 0.06, -0.12, 0.12, 0.0, -0.4, -0.62, -0.66])
  line = brow_v + np.interp(au, knots, rise) + app.hairline
  if app.bald:
    line = np.where(au < 0.85, 1.2, line + 0.08)
  return _smoothstep((uv[..., 1] - line) / 0.035 + 0.5)


def skin_texture(app: Appearance, model: face_model_lib.FaceModel, width: int) -> np.ndarray:
  """(width/2, width, 4) float32 texture: sRGB albedo and a gloss channel."""
  rng = np.random.default_rng(app.texture_seed)
  height = width // 2
  px_per_rad = width / (2 * np.pi)
  u, v = _texel_angles(width)
  uv_lm = paint_anchors(model)

  # Base skin with blotches at two scales and fine grain.
  tone = np.ones((height, width), np.float32)
  tone += 0.035 * _noise(rng, (height, width), 0.12 * px_per_rad)
  tone += 0.03 * _noise(rng, (height, width), 0.035 * px_per_rad)
  tone += 0.025 * _noise(rng, (height, width), 0.6)
  albedo = tone[..., None] * app.skin[None, None].astype(np.float32)
  # Cheek blush and darker eye surroundings.
  for side in (-1, 1):
    blush = np.exp(-(((u - side * 0.42) / 0.16) ** 2 + ((v + 0.3) / 0.12) ** 2))
    albedo *= (1 - 0.1 * blush[..., None] * np.array([0.0, 0.6, 0.5]))
    eye = uv_lm[36:42] if side < 0 else uv_lm[42:48]
    ec = eye.mean(0)
    shadow = np.exp(-(((u - ec[0]) / 0.14) ** 2 + ((v - ec[1] - 0.02) / 0.08) ** 2))
    albedo *= (1 - 0.12 * shadow[..., None])

  # Spots: soft blotches (visible at 64 px) and freckles / moles (128 px+).
  spot = np.zeros((height, width), np.float32)
  n_blotch = int(8 + 25 * app.spots)
  n_freckle = int(20 + 260 * app.spots)
  for count, (r_lo, r_hi), (a_lo, a_hi) in ((n_blotch, (0.025, 0.05), (0.03, 0.08)),
                                            (n_freckle, (0.006, 0.014), (0.1, 0.3))):
    cu = rng.uniform(-1.5, 1.5, count)
    cv = rng.uniform(-0.95, 0.6, count)
    radius = rng.uniform(r_lo, r_hi, count) * px_per_rad
    amount = rng.uniform(a_lo, a_hi, count) * rng.choice([-0.4, 1.0], count, p=[0.25, 0.75])
    centres = angles_to_texels(np.stack([cu, cv], 1), width)
    for centre, r, a in zip(centres, radius, amount):
      _disc(spot, centre, r, float(a))
  spot = cv2.GaussianBlur(spot, (0, 0), 0.7)
  albedo *= (1 - spot.clip(-0.3, 0.6))[..., None]

  gloss = np.ones((height, width), np.float32)

  # Ear concha: a darker hollow at the ear tip.
  ear_uv = vertex_uv(model)[np.argmax(model.mean[:, 0])]
  for side in (-1, 1):
    centre = np.array([side * abs(ear_uv[0]), ear_uv[1]])
    _fill(albedo, centre + 0.045 * np.stack([0.6 * np.cos(_RING), 1.2 * np.sin(_RING)], 1),
          width, tuple(float(c) for c in app.skin * 0.8))

  # Beard / stubble below the mouth and along the jaw.
  if app.beard > 0:
    jaw = uv_lm[2:15]
    beard = np.zeros((height, width), np.float32)
    under_lip = uv_lm[[54, 55, 56, 57, 58, 59, 48]] + [0, -0.01]
    _fill(beard, np.concatenate([jaw + [0, -0.05], under_lip]), width, 1.0)
    _fill(beard, np.concatenate([uv_lm[48:55] + [0, 0.012], uv_lm[[35, 33, 31]] + [0, -0.02]]),
          width, 1.0)  # Moustache.
    lips = np.zeros_like(beard)
    _fill(lips, uv_lm[48:60], width, 1.0)
    beard = cv2.GaussianBlur(beard, (0, 0), 0.02 * px_per_rad) * (1 - lips)
    speckle = (_noise(rng, (height, width), 0.5) > 0.2 - app.beard).astype(np.float32)
    a = (beard * speckle * app.beard)[..., None]
    albedo = albedo * (1 - a) + a * app.hair

  # Lips.
  lips = np.zeros((height, width), np.float32)
  _fill(lips, uv_lm[48:60], width, 1.0)
  lips = cv2.GaussianBlur(lips, (0, 0), max(0.004 * px_per_rad, 0.5))
  albedo = albedo * (1 - lips[..., None]) + lips[..., None] * app.lip * tone[..., None]
  gloss += 0.5 * lips

  # Nostrils: dark holes under the nose tip.
  for a_i, b_i in ((31, 32), (35, 34)):
    centre = 0.45 * uv_lm[a_i] + 0.35 * uv_lm[b_i] + 0.2 * uv_lm[30] + [0, 0.006]
    _fill(albedo, centre + np.stack([0.022 * np.cos(_RING), 0.011 * np.sin(_RING)], 1), width,
          tuple(float(x) for x in app.skin * 0.25))

  # Eyebrows: tapered strokes with hair streaks.
  brows = np.zeros((height, width), np.float32)
  for ids in (range(17, 22), range(26, 21, -1)):  # Outer to inner.
    pts = angles_to_texels(uv_lm[list(ids)] + [0, 0.012], width)
    for k in range(4):  # Thicker towards the inner end.
      thick = (0.03 + 0.016 * k / 3) * px_per_rad
      for f in np.linspace(0, 1, 6):
        _disc(brows, pts[k] * (1 - f) + pts[k + 1] * f, thick / 2, 1.0)
  streaks = 0.75 + 0.25 * _noise(rng, (height, width), 0.5).clip(-1, 1)
  brows = cv2.GaussianBlur(brows, (0, 0), max(0.004 * px_per_rad, 0.5)) * streaks
  albedo = albedo * (1 - brows[..., None]) + brows[..., None] * app.brow

  # Lash lines on the upper lids, a faint crease above them.
  for ids in ([36, 37, 38, 39], [42, 43, 44, 45]):
    cv2.polylines(albedo, [_fixed(uv_lm[ids] + [0, 0.035], width)], False,
                  tuple(float(x) for x in app.skin * 0.8), max(int(0.008 * px_per_rad), 1),
                  cv2.LINE_AA, shift=_SHIFT)
    cv2.polylines(albedo, [_fixed(uv_lm[ids], width)], False, (0.05, 0.04, 0.04),
                  max(int(0.016 * px_per_rad), 1), cv2.LINE_AA, shift=_SHIFT)

  # Hair: streaky texture over the scalp.
  mask = hair_mask(app, model, np.stack([u, v], -1)).astype(np.float32)
  edge_noise = _noise(rng, (height, width), 0.01 * px_per_rad)
  mask = np.clip(mask + 0.15 * edge_noise * (mask > 0.02) * (mask < 0.98), 0, 1)
  strands = rng.standard_normal((height, width)).astype(np.float32)
  strands = cv2.GaussianBlur(strands, (0, 0), sigmaX=0.6, sigmaY=0.04 * px_per_rad)
  strands = (strands / (strands.std() + 1e-6)).clip(-2, 2)
  clumps = _noise(rng, (height, width), 0.06 * px_per_rad).clip(-2, 2)
  hair_col = app.hair[None, None] * (1 + 0.25 * strands[..., None] + 0.12 * clumps[..., None])
  albedo = albedo * (1 - mask[..., None]) + mask[..., None] * hair_col
  gloss = gloss * (1 - 0.6 * mask)
  return np.concatenate([np.clip(albedo, 0, 1), gloss[..., None]], -1).astype(np.float32)
