"""MemFace's explicit memory: greedy selection order, construction, files, the attention read."""
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.speech import explicit_memory as em
from data_pipelines.user_errors import UserInputError
from talkingmem.memface.renderer import read_memory


def _line(values):
  """Mouth 'shapes' whose every coordinate is one number: RMS distance = |difference|."""
  return np.asarray(values, np.float64)[:, None, None] * np.ones((1, 4, 3))


def test_greedy_order_on_a_hand_checked_toy_set():
  # mean 3.5 -> farthest is 10 (#3); then farthest from {10}: 0 (#0); from {10, 0}: 4.5 (#4) at
  # 4.5; then 2 (#2, 2 from 0 vs 2.5 from 4.5) beats 1 (#1, 1 from 0).
  shapes = _line([0.0, 1.0, 2.0, 10.0, 4.5])
  np.testing.assert_array_equal(em.greedy_select(shapes, 5), [3, 0, 4, 2, 1])
  np.testing.assert_array_equal(em.greedy_select(shapes, 2), [3, 0])
  # Duplicates come last and ties go to the lowest index; never a repeat.
  np.testing.assert_array_equal(em.greedy_select(_line([1.0, 1.0, -1.0, -1.0]), 4), [0, 2, 1, 3])
  assert len(em.greedy_select(shapes, 50)) == 5
  with pytest.raises(ValueError, match="positive"):
    em.greedy_select(shapes, 0)


def test_greedy_picks_are_mutually_far_apart():
  rng = np.random.default_rng(0)
  shapes = rng.normal(size=(200, 6, 3))
  picks = em.greedy_select(shapes, 10)
  flat = shapes.reshape(200, -1)
  d = np.sqrt(((flat[:, None] - flat[None]) ** 2).mean(-1))
  chosen_min = d[np.ix_(picks, picks)][~np.eye(10, dtype=bool)].min()
  for _ in range(20):  # Random subsets of 10 are less spread out.
    sub = rng.choice(200, 10, replace=False)
    assert d[np.ix_(sub, sub)][~np.eye(10, dtype=bool)].min() < chosen_min


def _speaker(t=12, size=32, patch=8, seed=0):
  rng = np.random.default_rng(seed)
  frames = rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8)
  boxes = np.stack([rng.integers(-2, size - patch + 2, t), rng.integers(0, size - patch, t)], 1)
  boxes = np.concatenate([boxes, boxes + patch], 1)
  return rng.normal(size=(t, 5, 3)).astype(np.float32), frames, boxes


def test_build_save_load(tmp_path):
  vertices, frames, boxes = _speaker()
  memory = em.build_explicit_memory(vertices, frames, boxes, n=5)
  assert memory["keys"].shape == (5, 15) and memory["values"].shape == (5, 8, 8, 3)
  ids = memory["frame_ids"]
  np.testing.assert_array_equal(ids, em.greedy_select(vertices, 5))
  np.testing.assert_array_equal(memory["keys"], vertices[ids].reshape(5, -1))
  y0, x0, y1, x1 = boxes[ids[1]]
  crop = frames[ids[1]][np.clip(np.arange(y0, y1), 0, 31)][:, x0:x1] / 255.0
  np.testing.assert_allclose(memory["values"][1], crop, atol=1e-6)
  assert memory["valid"].all()
  padded = em.build_explicit_memory(vertices, frames, boxes, n=20, patch_size=4)
  assert padded["valid"].sum() == 12 and padded["values"].shape == (20, 4, 4, 3)

  path = em.save_explicit_memory(tmp_path / "spk.npz", memory, {"speaker": "spk"})
  loaded = em.load_explicit_memory(path, size=5, key_dim=15, patch_size=8)
  assert loaded["meta"] == {"speaker": "spk"}
  for k in em.ARRAYS:
    np.testing.assert_array_equal(loaded[k], memory[k])
  with pytest.raises(ValueError, match=r"5 slots, the model expects 300"):
    em.load_explicit_memory(path, size=300)
  with pytest.raises(ValueError, match="keys have 15 coordinates"):
    em.load_explicit_memory(path, key_dim=90)
  with pytest.raises(ValueError, match="patches are 8 px"):
    em.load_explicit_memory(path, patch_size=16)
  with pytest.raises(UserInputError, match="no explicit memory"):
    em.load_explicit_memory(tmp_path / "missing.npz")
  with pytest.raises(ValueError, match="mouth_boxes must be"):
    em.build_explicit_memory(vertices, frames, boxes[:3])


def test_read_returns_the_exact_patch_for_a_stored_key_at_low_temperature():
  rng = np.random.default_rng(1)
  keys = rng.normal(size=(2, 6, 15)).astype(np.float32)  # Two speakers.
  values = rng.uniform(size=(2, 6, 4, 4, 3)).astype(np.float32)
  query = np.stack([keys[0, 3], keys[1, 5]])
  read, weights = read_memory(jnp.asarray(query), jnp.asarray(keys), jnp.asarray(values), 1e-3,
                              key_scale=jnp.ones(2), speaker=jnp.array([0, 1]))
  np.testing.assert_allclose(read[0], values[0, 3], atol=1e-5)
  np.testing.assert_allclose(read[1], values[1, 5], atol=1e-5)
  assert weights.shape == (2, 2, 6) and float(weights[0, 1].sum()) == 0.0  # Other speaker unread.
  # The same query with its own slot excluded reads the nearest other key instead.
  exclude = np.zeros((2, 2, 6), bool)
  exclude[0, 0, 3] = True
  read, _ = read_memory(jnp.asarray(query), jnp.asarray(keys), jnp.asarray(values), 1e-3,
                        key_scale=jnp.ones(2), speaker=jnp.array([0, 1]), exclude=exclude)
  d = np.sqrt(((keys[0] - keys[0, 3]) ** 2).mean(-1))
  d[3] = np.inf
  np.testing.assert_allclose(read[0], values[0, np.argmin(d)], atol=1e-5)
  # High temperature: the mean of the valid values (padding slots never read).
  valid = np.array([True] * 4 + [False] * 2)
  read, _ = read_memory(jnp.asarray(query[:1]), jnp.asarray(keys[0]), jnp.asarray(values[0]), 1e6,
                        valid=jnp.asarray(valid))
  np.testing.assert_allclose(read[0], values[0, :4].mean(0), atol=1e-5)
