"""MemFace stage-2 inputs: projections agree with the synthetic renderer and the pinhole fit, masks
cover the mouth whatever its shape, boxes and shading are where the face is."""
import numpy as np
import pytest

from data_pipelines.speech import face_fitting
from data_pipelines.speech import renderer_inputs as ri
from data_pipelines.synthetic.engine import appearance
from data_pipelines.synthetic.engine import face_model as fm
from data_pipelines.synthetic.engine import renderer as renderer_lib
from data_pipelines.synthetic.engine import scene as scene_lib

SIZE = 64
POSES = [[0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.35, -0.12, 0.1, 0.05, -0.04, 0.9],
         [-0.3, 0.15, -0.08, -0.06, 0.05, 1.1]]


@pytest.fixture(scope="module")
def model():
  return fm.build_face_model()


@pytest.fixture(scope="module")
def identity(model):
  rng = np.random.default_rng(5)
  return renderer_lib.Identity(np.clip(rng.standard_normal(model.n_id), -2, 2).astype(np.float32),
                               appearance.sample_appearance(rng))


def _exp(model, **named):
  c = np.zeros(model.n_exp, np.float32)
  for name, value in named.items():
    c[model.exp_index(name)] = value
  return c


@pytest.mark.parametrize("pose", POSES)
def test_projected_landmarks_land_where_the_synthetic_renderer_draws_them(model, identity, pose):
  renderer = renderer_lib.FaceRenderer(model, identity, scene_lib.sample_scene(
      np.random.default_rng(1)), SIZE)
  exp = _exp(model, jaw_open=0.7, smile_left=0.4)
  drawn = renderer.render(pose, exp).landmarks
  xy, depth = ri.face_projection(model, exp, identity.id_coeffs, pose, SIZE)
  ours = xy[model.landmark_vertex_ids]
  # The renderer adds hair volume on the scalp only; landmarks are not displaced.
  np.testing.assert_allclose(ours, drawn, atol=1e-3)
  assert np.all(depth > 0)


def test_pinhole_camera_matches_face_fitting(model):
  rng = np.random.default_rng(0)
  pose = np.array([0.2, -0.1, 0.05, 0.1, -0.2, 9.0])
  exp, ident = rng.normal(0, 0.3, model.n_exp), rng.normal(0, 1, model.n_id)
  xy, _ = ri.face_projection(model, exp, ident, pose, 256, focal=700.0, principal=(120.0, 130.0))
  verts = model.vertices(ident.astype(np.float32), exp.astype(np.float32))
  expected = face_fitting.project_np(verts, pose, 700.0, (120.0, 130.0))
  np.testing.assert_allclose(xy, expected, atol=1e-4)
  with pytest.raises(ValueError, match="behind the camera"):
    ri.face_projection(model, exp, ident, np.array([0, 0, 0, 0, 0, -1.0]), 256, focal=700.0)


def test_mask_covers_every_mouth_shape_and_leaves_the_eyes(model, identity):
  """The mask comes from the neutral face, yet covers the lips and chin of an open jaw."""
  for pose in POSES:
    neutral_xy, _ = ri.face_projection(model, np.zeros(model.n_exp), identity.id_coeffs, pose, SIZE)
    mask = ri.lower_face_mask(neutral_xy, model, SIZE)
    for exp in (_exp(model, jaw_open=1.0), _exp(model, lip_round=1.0),
                _exp(model, smile_left=1.0, smile_right=1.0, lip_stretch=1.0)):
      xy, _ = ri.face_projection(model, exp, identity.id_coeffs, pose, SIZE)
      lips_and_chin = xy[model.landmark_vertex_ids[list(range(48, 68)) + [7, 8, 9]]]
      px = np.clip(np.round(lips_and_chin).astype(int), 0, SIZE - 1)
      assert mask[px[:, 1], px[:, 0]].all(), pose
    eyes = np.round(neutral_xy[model.landmark_vertex_ids[36:48]]).astype(int)
    assert not mask[eyes[:, 1], eyes[:, 0]].any()


def test_renderer_example_and_mouth_box(model, identity):
  renderer = renderer_lib.FaceRenderer(model, identity, scene_lib.sample_scene(
      np.random.default_rng(2)), SIZE)
  pose, exp = POSES[1], _exp(model, jaw_open=0.8)
  frame = renderer.render(pose, exp).image
  out = ri.renderer_example(frame, model, exp, identity.id_coeffs, pose, SIZE, patch=16)
  assert out["rendered"].shape == out["masked"].shape == out["target"].shape == (SIZE, SIZE, 3)
  assert out["mask"].shape == (SIZE, SIZE, 1)
  assert out["mouth_vertices"].shape == (len(model.mouth_vertex_ids), 3)
  np.testing.assert_allclose(out["target"], frame / 255.0, atol=1e-6)
  np.testing.assert_array_equal(out["masked"][out["mask"][..., 0] == 1], 0.0)
  # The shaded face covers the projected face and nothing far from it; the open mouth is a hole.
  xy, _ = ri.face_projection(model, exp, identity.id_coeffs, pose, SIZE)
  lm = np.round(xy[model.landmark_vertex_ids]).astype(int)
  covered = out["rendered"].max(-1) > 0
  inside = [30, 33, 36, 45, 57]  # Nose, eyes, lower lip (the jaw points lie on the outline).
  assert covered[lm[inside, 1], lm[inside, 0]].all()
  assert not covered[:3].any() and not covered[:, :3].any()
  inner_lips = lm[60:68].mean(0).round().astype(int)
  assert out["rendered"][inner_lips[1], inner_lips[0]].max() < 0.3
  # The box is `patch` wide and holds both mouth corners.
  y0, x0, y1, x1 = out["mouth_box"]
  assert y1 - y0 == x1 - x0 == 16
  for corner in lm[[48, 54]]:
    assert x0 <= corner[0] < x1 and y0 <= corner[1] < y1
  patch = ri.crop_patch(frame, (y0 - 40, x0, y1 - 40, x1))  # Off the top: border replicated.
  assert patch.shape == (16, 16, 3)
  np.testing.assert_array_equal(patch[0], frame[0, x0:x1])
