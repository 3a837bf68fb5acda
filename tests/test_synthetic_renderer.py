"""Tests for the synthetic face renderer and its z-buffer rasteriser."""

import numpy as np
import pytest
from skimage import measure

from data_pipelines.synthetic.engine import appearance
from data_pipelines.synthetic.engine import face_model as fm
from data_pipelines.synthetic.engine import occluders
from data_pipelines.synthetic.engine import rasterizer
from data_pipelines.synthetic.engine import renderer as renderer_lib
from data_pipelines.synthetic.engine import scene as scene_lib

SIZE = 64
FRONTAL = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


@pytest.fixture(scope="module")
def model():
  return fm.build_face_model()


@pytest.fixture(scope="module")
def renderer(model):
  rng = np.random.default_rng(3)
  identity = renderer_lib.Identity(np.zeros(model.n_id, np.float32),
                                   appearance.sample_appearance(rng))
  return renderer_lib.FaceRenderer(model, identity, scene_lib.sample_scene(rng), SIZE)


def _exp(model, **named):
  c = np.zeros(model.n_exp, np.float32)
  for name, value in named.items():
    c[model.exp_index(name)] = value
  return c


def test_rasterizer_covers_and_depth_tests():
  xy = np.array([[1.0, 1.0], [1.0, 8.0], [8.0, 1.0], [0.0, 0.0], [0.0, 9.0], [9.0, 0.0]])
  tris = np.array([[0, 1, 2], [3, 4, 5]])  # Counter-clockwise on screen (y down).
  near_small = rasterizer.rasterize(xy, np.array([1, 1, 1, 2, 2, 2.0]), tris, 10, 10)
  covered = np.zeros(100, int)
  covered[near_small.pixel] = near_small.triangle + 1
  covered = covered.reshape(10, 10)
  assert covered[2, 2] == 1 and covered[0, 0] == 2 and covered[9, 9] == 0
  np.testing.assert_allclose(near_small.bary.sum(1), 1.0, atol=1e-6)
  far_small = rasterizer.rasterize(xy, np.array([3, 3, 3, 2, 2, 2.0]), tris, 10, 10)
  assert set(far_small.triangle) == {1}
  # Back faces are culled unless flagged double-sided.
  flipped = tris[:, ::-1]
  assert rasterizer.rasterize(xy, np.ones(6), flipped, 10, 10).pixel.size == 0
  both = np.array([True, True])
  assert rasterizer.rasterize(xy, np.ones(6), flipped, 10, 10, both).pixel.size > 0


def test_frame_and_landmarks(renderer, model):
  out = renderer.render(FRONTAL, np.zeros(model.n_exp))
  assert out.image.shape == (SIZE, SIZE, 3) and out.image.dtype == np.uint8
  assert out.image.std() > 10
  lm = out.landmarks
  assert lm.shape == (68, 2) and np.all((lm > 0) & (lm < SIZE - 1))
  # Mouth, nose and eyes lie inside the face outline (jaw + brows).
  outline = np.concatenate([lm[0:17], lm[26:16:-1]])
  assert measure.points_in_poly(lm[27:68], outline).all()
  assert abs(lm[30, 0] - (SIZE - 1) / 2) < 1.0  # Frontal nose on the centre line.
  assert out.mouth_vertices.shape == (len(model.mouth_vertex_ids), 3)
  assert out.occlusion == 0.0


def test_pose_moves_landmarks(renderer, model):
  exp = np.zeros(model.n_exp)
  base = renderer.render(FRONTAL, exp).landmarks
  yaw = renderer.render([0.5, 0, 0, 0, 0, 1], exp).landmarks
  pitch = renderer.render([0, 0.3, 0, 0, 0, 1], exp).landmarks
  shift = renderer.render([0, 0, 0, 0.1, 0, 1], exp).landmarks
  assert yaw[30, 0] - base[30, 0] > 0.05 * SIZE  # Nose to image right.
  assert pitch[30, 1] - base[30, 1] > 0.03 * SIZE  # Chin down: nose moves down.
  # Perspective: nearer points move a little more, the mean moves by tx.
  np.testing.assert_allclose((shift - base).mean(0), [0.1 * SIZE, 0], atol=0.1 * 0.1 * SIZE)


def test_open_mouth_is_dark_and_teeth_appear(model):
  rng = np.random.default_rng(0)
  identity = renderer_lib.Identity(np.zeros(model.n_id, np.float32),
                                   appearance.sample_appearance(rng))
  r = renderer_lib.FaceRenderer(model, identity, scene_lib.sample_scene(rng), 128)
  closed = r.render(FRONTAL, np.zeros(model.n_exp))
  opened = r.render(FRONTAL, _exp(model, jaw_open=1.0, upper_lip_raise=1.0))
  lm = opened.landmarks
  inner = np.round(lm[60:68]).astype(int)
  x0, x1 = inner[:, 0].min() + 2, inner[:, 0].max() - 2
  y0, y1 = lm[62, 1].round().astype(int), lm[66, 1].round().astype(int)
  gray_open = opened.image[y0:y1, x0:x1].mean(-1)
  gray_closed = closed.image[y0:y1, x0:x1].mean(-1)
  assert gray_open.min() < 60  # Dark mouth interior.
  assert gray_open.max() > gray_closed.mean()  # Bright teeth.
  assert np.abs(gray_open - gray_closed).mean() > 20


def test_blink_changes_the_eye_only(renderer, model):
  open_ = renderer.render(FRONTAL, np.zeros(model.n_exp))
  shut = renderer.render(FRONTAL, _exp(model, blink_left=1.0))
  diff = np.abs(open_.image.astype(int) - shut.image.astype(int)).sum(-1)
  ys, xs = np.nonzero(diff > 30)
  assert len(xs) > 3
  left_eye = open_.landmarks[42:48]  # Subject's left eye: image right.
  assert xs.min() >= left_eye[:, 0].min() - 3 and xs.max() <= left_eye[:, 0].max() + 3
  assert ys.min() >= left_eye[:, 1].min() - 5 and ys.max() <= left_eye[:, 1].max() + 5


def test_occluder_hides_part_of_the_face(renderer, model):
  hand = occluders.Occluder("hand", 0.5, 0.6, 0.4, 0.2, np.array([0.8, 0.6, 0.5]))
  plain = renderer.render(FRONTAL, np.zeros(model.n_exp))
  covered = renderer.render(FRONTAL, np.zeros(model.n_exp), occluders=[hand])
  assert 0.05 < covered.occlusion < 1.0
  assert np.abs(plain.image.astype(int) - covered.image).mean() > 5
  np.testing.assert_array_equal(plain.landmarks, covered.landmarks)


def test_render_is_deterministic(renderer, model):
  exp = _exp(model, jaw_open=0.4, lip_stretch=0.3)
  a = renderer.render([0.2, -0.1, 0.05, 0.01, 0.02, 1.05], exp, gaze=(0.1, 0.0))
  b = renderer.render([0.2, -0.1, 0.05, 0.01, 0.02, 1.05], exp, gaze=(0.1, 0.0))
  np.testing.assert_array_equal(a.image, b.image)
  np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_large_yaw_reveals_the_side_of_the_head(renderer, model):
  exp = np.zeros(model.n_exp)
  front = renderer.render(FRONTAL, exp)
  side = renderer.render([0.9, 0, 0, 0, 0, 1], exp)
  assert side.landmarks[30, 0] > front.landmarks[30, 0] + 0.1 * SIZE
  # The far eye's outer corner is foreshortened towards the nose.
  eye_width = lambda lm: lm[45, 0] - lm[42, 0]
  assert eye_width(side.landmarks) < 0.7 * eye_width(front.landmarks)
