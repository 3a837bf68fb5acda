"""Implicit memory read, decorrelation regulariser, explicit (non-parametric) memory."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.memface import memory


def _np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_memory_attention_matches_numpy():
  rng = np.random.default_rng(0)
  q, k, v = rng.normal(size=(2, 5, 8)), rng.normal(size=(11, 8)), rng.normal(size=(11, 6))
  read, weights = memory.memory_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))
  ref_w = _np_softmax(q @ k.T / np.sqrt(8))
  np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(read, ref_w @ v, rtol=1e-5, atol=1e-5)


def test_implicit_memory_adds_its_read_to_the_query():
  module = memory.ImplicitMemory(num_slots=12, dim=8)
  q = jax.random.normal(jax.random.key(1), (3, 4, 8))
  variables = jax.jit(module.init)(jax.random.key(0), q)
  keys, values = variables["params"]["keys"], variables["params"]["values"]
  assert keys.shape == values.shape == (12, 8)
  out, weights = jax.jit(module.apply)(variables, q)
  ref_w = _np_softmax(np.asarray(q) @ np.asarray(keys).T / np.sqrt(8))
  np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out, np.asarray(q) + ref_w @ np.asarray(values), rtol=1e-5, atol=1e-5)
  projected = memory.ImplicitMemory(num_slots=12, dim=8, project=True)
  assert {"query_proj", "key_proj"} <= set(
      jax.eval_shape(projected.init, jax.random.key(0), q)["params"])
  with pytest.raises(ValueError, match="query dim"):
    jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((2, 7)))


def test_regulariser_zero_for_orthogonal_positive_for_identical():
  ortho = jnp.asarray(np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))[0][:10])
  assert abs(float(memory.memory_regularizer(ortho, 3.0 * ortho))) < 1e-6
  same = jnp.tile(jnp.arange(1.0, 5.0), (6, 1))
  np.testing.assert_allclose(memory.memory_regularizer(same, same), 2.0, rtol=1e-6)
  assert float(memory.mean_pairwise_cosine(same[:1])) == 0.0


def test_regulariser_equals_explicit_pairwise_mean():
  x = np.random.default_rng(1).normal(size=(9, 5))
  unit = x / np.linalg.norm(x, axis=-1, keepdims=True)
  cos = unit @ unit.T
  ref = (cos.sum() - np.trace(cos)) / (9 * 8)
  np.testing.assert_allclose(memory.mean_pairwise_cosine(jnp.asarray(x)), ref, rtol=1e-5, atol=1e-7)


def test_regulariser_and_labels_from_params():
  params = {"encoder": {"w": jnp.ones((2, 2))},
            "memory": {"keys": jnp.eye(4), "values": jnp.ones((4, 4))}}
  np.testing.assert_allclose(memory.memory_regularizer_from_params(params), 1.0, rtol=1e-6)
  labels = memory.memory_param_labels(params)
  assert labels == {"encoder": {"w": "model"}, "memory": {"keys": "memory", "values": "memory"}}
  assert float(memory.memory_regularizer_from_params({"w": jnp.ones(3)})) == 0.0


def test_explicit_memory_retrieves_the_matching_training_frame():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(40, 4, 3)).astype(np.float32)
  coeffs = rng.normal(size=(40, 5)).astype(np.float32)
  built = memory.build_explicit_memory(features, coeffs, size=40, method="random")
  module = memory.ExplicitMemory(size=40, value_dim=5, temperature=0.01)
  flat = features.reshape(40, -1)
  hidden = jnp.zeros((40, 7))
  init = jax.jit(module.init)(jax.random.key(0), flat, hidden)
  variables = memory.fill_explicit_memory(init, built)
  assert set(variables["params"]) == {"value_proj"}  # Nothing in the memory is trained.
  _, weights = jax.jit(module.apply)(variables, flat, hidden)
  retrieved = np.asarray(built["values"])[np.asarray(weights).argmax(-1)]
  np.testing.assert_array_equal(retrieved, coeffs)
  assert float(np.asarray(weights).max(-1).min()) > 0.9
  with pytest.raises(ValueError, match="shape"):
    memory.fill_explicit_memory(variables, {"keys": np.zeros((3, 12))})


def test_farthest_point_selection_spreads_out():
  points = np.concatenate([np.zeros((20, 2)), np.ones((20, 2)), [[5.0, 5.0]]])
  idx = memory.farthest_point_indices(points, 3)
  assert len(set(idx.tolist())) == 3 and 40 in idx
  built = memory.build_explicit_memory(points[:, :1], points, size=3)
  assert sorted(map(tuple, built["values"])) == [(0, 0), (1, 1), (5, 5)]
  assert memory.build_explicit_memory(points, points, size=50)["keys"].shape == (50, 2)
