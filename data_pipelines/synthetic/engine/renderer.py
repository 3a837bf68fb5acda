"""Renders synthetic talking-face frames from face-model coefficients and pose.

Pipeline per frame: blendshape vertices -> eyeballs/teeth/mouth cavity behind
the holes -> 3D pose and perspective projection -> numpy z-buffer at
`supersample`x resolution -> per-pixel shading (UV-textured skin, Lambert +
specular) -> composite over background and body -> occluders -> area
downsampling (anti-aliasing).

Pose convention (one row of the metadata `pose` array):
  [yaw, pitch, roll, tx, ty, scale]; angles in radians. Positive yaw turns the
  face towards image right, positive pitch tilts the chin down, positive roll
  turns the head counter-clockwise in the image. tx, ty move the head by that
  fraction of the image width/height (right/down); scale multiplies its size.
"""

import dataclasses
from typing import Sequence

import cv2
import numpy as np

from data_pipelines.synthetic.engine import appearance as appearance_lib
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.synthetic.engine import inner_geometry as inner
from data_pipelines.synthetic.engine import occluders as occluders_lib
from data_pipelines.synthetic.engine import rasterizer
from data_pipelines.synthetic.engine import scene as scene_lib

CAMERA_DISTANCE = 7.0  # Model units (the head is ~2 tall): mild perspective.
FOCAL = 0.36  # Image sizes per model unit at the camera distance.
HEAD_Y = 0.47  # Where the model origin lands (fraction of image height) at ty=0.
PIVOT = np.array([0.0, -0.55, -0.15])  # Top of the neck: rotations happen here.
FACE_Z = 0.9  # Depth of the face plane: tx, ty are exact image shifts there.


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
  """R = Rz(roll) @ Ry(yaw) @ Rx(pitch), acting on model-space column vectors."""
  cy, sy = np.cos(yaw), np.sin(yaw)
  cp, sp = np.cos(pitch), np.sin(pitch)
  cr, sr = np.cos(roll), np.sin(roll)
  ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
  rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
  rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
  return rz @ ry @ rx


def camera_points(points: np.ndarray, rot: np.ndarray, pose: Sequence[float]) -> np.ndarray:
  """Model-space (N, 3) points -> camera space, for pose [.., tx, ty, scale] with rotation `rot`."""
  _, _, _, tx, ty, scale = pose
  per_image = (CAMERA_DISTANCE - FACE_Z) / (FOCAL * CAMERA_DISTANCE)  # Model units.
  shift = np.array([tx * per_image, (0.5 - HEAD_Y - ty) * per_image, 0.0])
  return scale * ((points - PIVOT) @ rot.T + PIVOT) + shift


def project_points(cam: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Camera-space (N, 3) points -> (xy (N, 2) pixels, depth (N,)) in a size x size image."""
  depth = CAMERA_DISTANCE - cam[:, 2]
  focal, centre = FOCAL * size * CAMERA_DISTANCE, (size - 1) / 2
  xy = np.stack([centre + focal * cam[:, 0] / depth, centre - focal * cam[:, 1] / depth], 1)
  return xy, depth


@dataclasses.dataclass(frozen=True)
class Identity:
  id_coeffs: np.ndarray  # (n_id,)
  appearance: appearance_lib.Appearance
  mouth: appearance_lib.MouthInterior | None = None  # None: generic teeth and tongue.


@dataclasses.dataclass(frozen=True)
class RenderedFrame:
  image: np.ndarray  # (H, W, 3) uint8 RGB.
  landmarks: np.ndarray  # (68, 2) float32 pixel (x, y); pixel centres at integers.
  mouth_vertices: np.ndarray  # (M, 3) float32, model space (pose-free).
  occlusion: float  # Fraction of the head's pixels hidden by occluders.
  # (H, W) int32: the head-mesh triangle seen at each pixel (sampled at the pixel's centre), -1 where
  # no head surface is seen (background, body, occluders). Pairs of these give disocclusion masks.
  surface: np.ndarray | None = None
  # (F,) bool: triangles seen at any supersampled pixel (many are smaller than an output pixel, so the
  # sampled `surface` map alone would call them hidden).
  visible_triangles: np.ndarray | None = None


def _sample(texture: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """Bilinear texture lookup at (P, 2) texel positions, wrapping horizontally."""
  cols = 4096  # cv2.remap wants maps narrower than 32767.
  rows = -(-len(xy) // cols)
  maps = np.zeros((rows * cols, 2), np.float32)
  maps[:len(xy)] = xy
  maps = maps.reshape(rows, cols, 2)
  out = cv2.remap(texture, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_WRAP)
  return out.reshape(rows * cols, -1)[:len(xy)]


class FaceRenderer:
  """Renders one identity in one scene; per-identity assets are built once."""

  def __init__(self, model: face_model_lib.FaceModel, identity: Identity,
               scene: scene_lib.Scene, size: int, supersample: int = 2):
    self.model = model
    self.identity = identity
    self.scene = scene
    self.size = size
    self.supersample = supersample
    self.render_size = size * supersample
    app = identity.appearance
    self._id = np.asarray(identity.id_coeffs, np.float32)
    lm_ids = model.landmark_vertex_ids
    neutral = model.vertices(self._id).astype(np.float64)

    # Hair bulk: push scalp vertices outwards.
    hair = appearance_lib.hair_mask(app, model, appearance_lib.vertex_uv(model))
    normals = inner.vertex_normals(neutral, model.triangles)
    self._hair_disp = (app.hair_volume * hair)[:, None] * normals

    tex_w = int(np.clip(2 * self.render_size, 256, 1024)) // 2 * 2
    self._texture = appearance_lib.skin_texture(app, model, tex_w)
    skin_attr = appearance_lib.angles_to_texels(appearance_lib.corner_uv(model), tex_w)

    # Eyeballs (fixed to the skull: neutral face, no expression).
    eye_dirs, eye_tris = inner.eyeball_template()
    eyes, eye_normals = [], []
    for sl in (slice(36, 42), slice(42, 48)):
      centre, radius = inner.eyeball_placement(neutral[lm_ids[sl]])
      eyes.append(centre + radius * eye_dirs)
      eye_normals.append(eye_dirs)
    self._eye_verts = np.concatenate(eyes)
    self._eye_normals = np.concatenate(eye_normals)

    # Teeth: upper hangs from the neutral upper lip, lower follows the jaw.
    self._upper_teeth_anchor = neutral[lm_ids[62]]
    self._lower_teeth_anchor = neutral[lm_ids[66]]
    self._mouth_half_width = float(np.linalg.norm(neutral[lm_ids[64]] - neutral[lm_ids[60]]) / 2)
    if "jaw_open" in model.exp_names:
      self._jaw_index = model.exp_index("jaw_open")
      self._jaw_disp = model.exp_basis[self._jaw_index][lm_ids[66]].astype(np.float64)
    else:
      self._jaw_index = None

    # One triangle list for everything: [face | eye L | eye R | teeth | cavity].
    nv = model.num_vertices
    ne = len(eye_dirs)
    teeth_tris = inner.teeth_triangles()
    cavity_tris = inner.cavity_triangles()
    groups = [
        (model.triangles.astype(np.int64), inner.SKIN, False),
        (eye_tris + nv, inner.EYE, False),
        (eye_tris + nv + ne, inner.EYE, False),
        (teeth_tris + nv + 2 * ne, inner.TEETH, True),
        (cavity_tris + nv + 2 * ne + 36, inner.CAVITY, True),
    ]
    self._tris = np.concatenate([g[0] for g in groups])
    self._material = np.concatenate([np.full(len(g[0]), g[1]) for g in groups])
    self._double_sided = np.concatenate([np.full(len(g[0]), g[2]) for g in groups])
    # Per-corner attributes (4 channels): skin texels, eye direction, tooth
    # position, cavity colour.
    attr = np.zeros((len(self._tris), 3, 4))
    f0 = len(model.triangles)
    attr[:f0, :, :2] = skin_attr
    f1 = f0 + 2 * len(eye_tris)
    attr[f0:f1, :, :3] = np.concatenate([eye_dirs[eye_tris]] * 2)
    f2 = f1 + len(teeth_tris)
    attr[f1:f2, :, 0] = inner.teeth_along()[teeth_tris]
    attr[f1:f2, :, 1] = (teeth_tris >= 2 * inner.TEETH_COLS)  # 0: upper strip, 1: lower.
    attr[f2:, :, :3] = inner.cavity_colours(identity.mouth)[cavity_tris]
    self._attr = attr
    self._teeth_normals = np.tile([0.0, 0.0, 1.0], (36, 1))
    self._opening_ids = [lm_ids[36:42], lm_ids[42:48], lm_ids[60:68]]

    r = self.render_size
    self._background = scene_lib.background_image(scene, r, r)

  # -------------------------------------------------------------------------

  def _project(self, cam):
    return project_points(cam, self.render_size)

  def render(self, pose: Sequence[float], exp_coeffs: np.ndarray,
             gaze: Sequence[float] = (0.0, 0.0),
             occluders: Sequence[occluders_lib.Occluder] = ()) -> RenderedFrame:
    """Renders one frame.

    Args:
      pose: [yaw, pitch, roll, tx, ty, scale] (see the module docstring).
      exp_coeffs: (n_exp,) expression coefficients.
      gaze: (yaw, pitch) of the eyes relative to the head, radians.
      occluders: drawn in front of everything, in order.

    Returns:
      The frame, its 68 projected landmarks and the model-space mouth vertices.
    """
    model = self.model
    pose = np.asarray(pose, np.float64)
    exp = np.asarray(exp_coeffs, np.float32)
    face = model.vertices(self._id, exp).astype(np.float64)
    mouth = face[model.mouth_vertex_ids].astype(np.float32)
    face = face + self._hair_disp
    lm3 = face[model.landmark_vertex_ids]

    lower = self._lower_teeth_anchor
    if self._jaw_index is not None:
      lower = lower + float(exp[self._jaw_index]) * self._jaw_disp
    teeth = inner.teeth_vertices(self._upper_teeth_anchor, lower, self._mouth_half_width)
    cavity = inner.cavity_vertices(lm3[60:68])
    verts = np.concatenate([face, self._eye_verts, teeth, cavity])
    normals = np.concatenate([
        inner.vertex_normals(face, model.triangles), self._eye_normals, self._teeth_normals,
        inner.vertex_normals(cavity, inner.cavity_triangles())])

    rot = rotation_matrix(*pose[:3])
    cam = camera_points(verts, rot, pose)
    normals = normals @ rot.T
    xy, depth = self._project(cam)
    r = self.render_size
    double = self._double_sided.copy()
    double[:len(model.triangles)] = self._near_openings(xy)
    frags = rasterizer.rasterize(xy, depth, self._tris, r, r, double)

    canvas = self._background.copy()
    neck_xy, _ = self._project(camera_points(PIVOT[None], rot, pose))
    scene_lib.draw_body(canvas, self.scene, self.identity.appearance.skin * 0.9, neck_xy[0],
                        neck_xy[0, 0], 2 * FOCAL * r * pose[5])
    flat = canvas.reshape(-1, 3)
    flat[frags.pixel] = self._shade(frags, normals, gaze)
    hidden = np.zeros(r * r, bool)
    for occ in occluders:
      hidden |= occluders_lib.draw_occluder(canvas, occ).ravel()
    occlusion = float(hidden[frags.pixel].mean()) if occluders and frags.pixel.size else 0.0

    surface = np.full(r * r, -1, np.int32)
    surface[frags.pixel] = frags.triangle
    surface[hidden] = -1
    visible_triangles = np.zeros(len(self._tris), bool)
    visible_triangles[surface[surface >= 0]] = True
    s, half = self.supersample, self.supersample // 2
    surface = surface.reshape(r, r)[half::s, half::s]

    image = cv2.resize(canvas, (self.size, self.size), interpolation=cv2.INTER_AREA)
    image = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    lm_xy, _ = self._project(cam[model.landmark_vertex_ids])
    lm_xy = (lm_xy + 0.5) / self.supersample - 0.5
    return RenderedFrame(image=image, landmarks=lm_xy.astype(np.float32), mouth_vertices=mouth,
                         occlusion=occlusion, surface=surface, visible_triangles=visible_triangles)

  def _near_openings(self, xy):
    """Face triangles whose screen box meets an eye or mouth opening's box.

    Their back faces get rasterised too: seen through an opening, the inside
    of the (closed) head mesh is the fallback mouth/eye interior, so oblique
    views into the mouth never show the background.
    """
    corners = xy[self.model.triangles]
    lo, hi = corners.min(1), corners.max(1)
    near = np.zeros(len(corners), bool)
    for ids in self._opening_ids:
      box_lo, box_hi = xy[ids].min(0), xy[ids].max(0)
      near |= np.all((lo <= box_hi) & (hi >= box_lo), axis=1)
    return near

  def _shade(self, frags, normals, gaze):
    """sRGB colours (P, 3) of the visible fragments."""
    scene = self.scene
    tri, bary = frags.triangle, frags.bary[..., None]
    corners = self._tris[tri]
    n = (normals[corners] * bary).sum(1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    flip = self._double_sided[tri] & (n[:, 2] < 0)
    n[flip] *= -1
    attr = (self._attr[tri] * bary).sum(1)
    mat = self._material[tri].copy()
    inside = frags.back_facing & (mat == inner.SKIN)
    mat[inside] = inner.CAVITY
    attr[inside, :3] = [0.1, 0.025, 0.025]  # The head's inside: a dark throat.

    albedo = np.zeros((len(tri), 3))
    gloss = np.zeros(len(tri))
    sel = mat == inner.SKIN
    if sel.any():
      tex = _sample(self._texture, attr[sel, :2])
      albedo[sel] = tex[:, :3]
      gloss[sel] = tex[:, 3]
    sel = mat == inner.EYE
    if sel.any():
      albedo[sel], gloss[sel] = self._eye_albedo(attr[sel, :3], gaze), 3.0
    sel = mat == inner.TEETH
    if sel.any():
      if self.identity.mouth is None:
        along = attr[sel, 0] * 8
        gap = np.abs(along - np.round(along)) < 0.07
        albedo[sel] = np.where(gap[:, None], [0.45, 0.38, 0.34], [0.9, 0.88, 0.8]) * 0.85
      else:
        albedo[sel] = appearance_lib.teeth_albedo(self.identity.mouth, attr[sel, 0], attr[sel, 1])
      gloss[sel] = 1.0
    sel = mat == inner.CAVITY
    if sel.any():
      albedo[sel] = attr[sel, :3]

    light = scene.light_dir
    lambert = np.clip(n @ light, 0, None)
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    spec = np.clip(n @ half, 0, None) ** 24 * gloss * scene.specular
    spec = np.where(mat == inner.EYE, np.clip(n @ half, 0, None) ** 120 * 0.8, spec)
    shading = scene.ambient + scene.diffuse * lambert
    shading = np.where(mat == inner.CAVITY, 0.9, shading)
    return np.clip(albedo * shading[:, None] + spec[:, None], 0, 1)

  def _eye_albedo(self, local_dir, gaze):
    d = local_dir / np.maximum(np.linalg.norm(local_dir, axis=1, keepdims=True), 1e-9)
    gy, gp = gaze
    look = np.array([np.sin(gy) * np.cos(gp), -np.sin(gp), np.cos(gy) * np.cos(gp)])
    cos = d @ look
    iris_cos, pupil_cos = np.cos(0.4), np.cos(0.17)
    iris = self.identity.appearance.iris
    radial = np.clip((cos - iris_cos) / (1 - iris_cos), 0, 1)
    iris_col = iris[None] * (0.55 + 0.6 * radial[:, None])
    sclera = np.array([0.93, 0.9, 0.86])[None] * (0.7 + 0.3 * np.clip(d[:, 2:3], 0, 1))
    col = np.where((cos > iris_cos)[:, None], iris_col, sclera)
    return np.where((cos > pupil_cos)[:, None], 0.03, col)
