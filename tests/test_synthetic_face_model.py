"""Tests for the procedural blendshape face model and its .npz schema."""

import numpy as np
import pytest

from data_pipelines.synthetic.engine import face_model as fm


@pytest.fixture(scope="module")
def model() -> fm.FaceModel:
  return fm.build_face_model()


def _exp(model, **named):
  c = np.zeros(model.n_exp, np.float32)
  for name, value in named.items():
    c[model.exp_index(name)] = value
  return c


def test_schema_shapes(model):
  v = model.num_vertices
  assert 300 <= v <= 2000
  assert model.mean.shape == (v, 3) and model.mean.dtype == np.float32
  assert model.id_basis.shape[1:] == (v, 3) and model.n_id >= 10
  assert model.exp_basis.shape == (len(model.exp_names), v, 3)
  for name in ("jaw_open", "lip_round", "lip_stretch", "blink_left", "blink_right", "brow_raise"):
    assert name in model.exp_names
  assert model.triangles.dtype == np.int32 and model.triangles.max() < v
  assert len(np.unique(model.landmark_vertex_ids)) == 68
  lm = model.landmark_vertex_ids
  assert set(lm[60:68]) <= set(model.mouth_vertex_ids)


def test_mesh_has_exactly_eye_and_mouth_holes(model):
  tris = model.triangles
  edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), 1)
  unique, counts = np.unique(edges, axis=0, return_counts=True)
  assert counts.max() == 2  # Manifold.
  # The open boundary is exactly the two eye openings (12 edges each) and the
  # mouth slit (16), and the eye / inner-lip landmarks lie on it.
  boundary = unique[counts == 1]
  assert len(boundary) == 40
  on_boundary = set(boundary.ravel())
  lm = model.landmark_vertex_ids
  assert set(lm[36:48]) <= on_boundary and set(lm[60:68]) <= on_boundary
  assert not set(lm[:36]) & on_boundary


def test_mean_face_is_frontal_and_symmetric(model):
  lm = model.landmarks(model.mean)
  assert lm[30, 2] > lm[[36, 45, 48, 54], 2].max()  # Nose tip is in front.
  assert lm[8, 1] < lm[57, 1] < lm[51, 1] < lm[33, 1] < lm[27, 1]  # Top-down order.
  np.testing.assert_allclose(lm[36, 0], -lm[45, 0], atol=1e-5)
  assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]  # Image-left eye first (dlib).


def test_save_load_roundtrip(model, tmp_path):
  path = tmp_path / "model.npz"
  model.save(path)
  loaded = fm.FaceModel.load(path)
  for key in fm.SCHEMA_KEYS:
    a, b = getattr(model, key), getattr(loaded, key)
    if key == "exp_names":
      assert tuple(a) == tuple(b)
    else:
      np.testing.assert_array_equal(a, b)
  with np.load(path) as data:
    assert sorted(data.files) == sorted(fm.SCHEMA_KEYS)


def test_load_refuses_missing_key(model, tmp_path):
  path = tmp_path / "broken.npz"
  np.savez(path, mean=model.mean, id_basis=model.id_basis, exp_basis=model.exp_basis,
           exp_names=np.array(model.exp_names), mouth_vertex_ids=model.mouth_vertex_ids,
           landmark_vertex_ids=model.landmark_vertex_ids)
  with pytest.raises(ValueError, match="triangles"):
    fm.FaceModel.load(path)


def test_load_refuses_inconsistent_shapes(model, tmp_path):
  path = tmp_path / "bad.npz"
  np.savez(path, mean=model.mean, id_basis=model.id_basis[:, :10], exp_basis=model.exp_basis,
           exp_names=np.array(model.exp_names), triangles=model.triangles,
           mouth_vertex_ids=model.mouth_vertex_ids, landmark_vertex_ids=model.landmark_vertex_ids)
  with pytest.raises(ValueError, match="id_basis"):
    fm.FaceModel.load(path)


def test_vertices_is_batched(model):
  rng = np.random.default_rng(0)
  ids = rng.normal(size=(3, model.n_id)).astype(np.float32)
  exps = rng.uniform(size=(3, model.n_exp)).astype(np.float32)
  batch = model.vertices(ids, exps)
  assert batch.shape == (3, model.num_vertices, 3)
  for b in range(3):
    np.testing.assert_allclose(batch[b], model.vertices(ids[b], exps[b]), atol=1e-6)
  np.testing.assert_array_equal(model.vertices(), model.mean)


def test_jaw_open_moves_lower_lip_and_chin_down(model):
  closed = model.landmarks(model.mean)
  opened = model.landmarks(model.vertices(None, _exp(model, jaw_open=1.0)))
  dy = opened[:, 1] - closed[:, 1]
  assert dy[8] < -0.08 and dy[57] < -0.05 and dy[66] < -0.05  # Chin, lower lip.
  assert abs(dy[51]) < 0.01 and abs(dy[62]) < 0.01 and abs(dy[30]) < 0.01  # Upper lip, nose.
  assert opened[62, 1] - opened[66, 1] > 0.05  # The mouth is open.


def test_blinks_close_the_named_eye(model):
  def opening(lm, ids):  # Mean upper-minus-lower lid height (< 0: lids overlap).
    return ((lm[ids[1], 1] - lm[ids[5], 1]) + (lm[ids[2], 1] - lm[ids[4], 1])) / 2

  right_img = [36, 37, 38, 39, 40, 41]  # Subject's right eye (x < 0).
  left_img = [42, 43, 44, 45, 46, 47]   # Subject's left eye (x > 0).
  neutral = model.landmarks(model.mean)
  blink_l = model.landmarks(model.vertices(None, _exp(model, blink_left=1.0)))
  blink_r = model.landmarks(model.vertices(None, _exp(model, blink_right=1.0)))
  assert neutral[42:48, 0].mean() > 0
  assert opening(blink_l, left_img) < 0.15 * opening(neutral, left_img)
  assert opening(blink_l, right_img) == pytest.approx(opening(neutral, right_img), abs=1e-4)
  assert opening(blink_r, right_img) < 0.15 * opening(neutral, right_img)
  # The upper lid comes down (the lower lid stays roughly in place).
  assert blink_l[43, 1] < neutral[43, 1] - 0.03
  assert abs(blink_l[47, 1] - neutral[47, 1]) < 0.02


def test_lip_and_brow_expressions(model):
  neutral = model.landmarks(model.mean)
  width = lambda lm: lm[54, 0] - lm[48, 0]
  smile = model.landmarks(model.vertices(None, _exp(model, lip_stretch=1.0)))
  pucker = model.landmarks(model.vertices(None, _exp(model, lip_round=1.0)))
  brows = model.landmarks(model.vertices(None, _exp(model, brow_raise=1.0)))
  assert width(smile) > width(neutral) * 1.1
  assert smile[48, 1] > neutral[48, 1]  # Corners go up.
  assert width(pucker) < width(neutral) * 0.85
  assert pucker[51, 2] > neutral[51, 2]  # Lips push forward.
  assert (brows[17:27, 1] - neutral[17:27, 1]).min() > 0.02
  assert np.abs(brows[48:68] - neutral[48:68]).max() < 1e-3


def test_identity_basis_changes_shape_smoothly(model):
  v0 = model.mean
  for k in range(model.n_id):
    c = np.zeros(model.n_id, np.float32)
    c[k] = 1.0
    d = np.linalg.norm(model.vertices(c) - v0, axis=1)
    assert 0.005 < d.max() < 0.2, fm.IDENTITY_NAMES[k]
