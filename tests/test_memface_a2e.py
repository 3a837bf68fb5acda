"""Audio-to-expression model and stage-1 losses: shapes, masking, gradients, a few training steps."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from talkingmem.memface import a2e, losses, memory

B, T, W, D, C = 2, 6, 4, 5, 3
TINY = dict(num_coeffs=C, d_model=16, num_heads=2, encoder_layers=1, decoder_layers=1, mlp_dim=32,
            dropout=0.0, conv_features=(8,), memory_slots=10, memory_dim=16)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  audio = rng.normal(size=(B, T, W, D)).astype(np.float32)
  exp = np.tanh(audio.mean((2, 3), keepdims=False)[..., None] * np.arange(1, C + 1)) \
      .astype(np.float32)
  return jnp.asarray(audio), jnp.asarray(exp)


@pytest.fixture(scope="module")
def tiny_variables():
  """One jitted init of the implicit-memory model, shared: XLA compiles of init dominate test time."""
  audio, _ = _batch()
  return jax.jit(a2e.AudioToExpression(**TINY).init)(jax.random.key(0), audio)


def _zeros_like_init(model, *args):
  """Variables of the right structure without compiling an init (enough for shape checks)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _mouth_model(seed=0, k_id=4, vertices=7):
  rng = np.random.default_rng(seed)
  return losses.MouthModel(jnp.asarray(rng.normal(size=(vertices, 3)), jnp.float32),
                           jnp.asarray(rng.normal(size=(k_id, vertices, 3)), jnp.float32),
                           jnp.asarray(rng.normal(size=(C, vertices, 3)), jnp.float32))


@pytest.mark.parametrize("kind", ["implicit", "explicit", "none"])
def test_forward_shapes(kind, tiny_variables):
  model = a2e.AudioToExpression(**TINY, memory=kind)
  audio, _ = _batch()
  variables = tiny_variables if kind == "implicit" else _zeros_like_init(model, audio)
  if kind == "explicit":
    assert variables["memory"]["memory"]["keys"].shape == (10, W * D)
    assert "value_proj" in variables["params"]["memory"]
  if kind == "none":
    assert "memory" not in variables["params"]
  out = jax.jit(model.apply)(variables, audio)
  assert out["coeffs"].shape == (B, T, C) and out["query"].shape == (B, T, 16)
  if kind == "none":
    assert "memory_weights" not in out
  else:
    assert out["memory_weights"].shape == (B, T, 10)
    np.testing.assert_allclose(out["memory_weights"].sum(-1), 1.0, rtol=1e-5)


def test_memory_dim_differs_from_d_model_and_paper_sizes():
  audio, _ = _batch()
  params = jax.eval_shape(a2e.AudioToExpression(**{**TINY, "memory_dim": 8}).init,
                          jax.random.key(0), audio)["params"]
  assert params["memory"]["keys"].shape == (10, 8)
  assert params["memory_in"]["kernel"].shape == (16, 8)
  assert params["memory_out"]["kernel"].shape == (8, 16)
  paper = a2e.AudioToExpression(num_coeffs=C)  # M = 1000 slots of d = 64 by default.
  shapes = jax.eval_shape(paper.init, jax.random.key(0), jnp.zeros((1, 4, 16, 29)))
  assert shapes["params"]["memory"]["keys"].shape == (1000, 64)


def test_mask_isolates_padded_frames(tiny_variables):
  apply = jax.jit(a2e.AudioToExpression(**TINY).apply)
  audio, _ = _batch()
  mask = jnp.arange(T)[None, :].repeat(B, 0) < 4
  garbage = audio.at[:, 4:].set(100.0)
  a = apply(tiny_variables, audio, mask)["coeffs"][:, :4]
  b = apply(tiny_variables, garbage, mask)["coeffs"][:, :4]
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_dropout_only_in_training(tiny_variables):
  model = a2e.AudioToExpression(**{**TINY, "dropout": 0.5})
  audio, _ = _batch()
  apply = jax.jit(model.apply, static_argnames="train")
  eval_a = apply(tiny_variables, audio)["coeffs"]
  np.testing.assert_array_equal(eval_a, apply(tiny_variables, audio)["coeffs"])
  train = apply(tiny_variables, audio, train=True, rngs={"dropout": jax.random.key(1)})["coeffs"]
  assert not np.allclose(train, eval_a)


def test_vertices_and_vertex_loss():
  mouth = _mouth_model()
  idc, exp = jnp.ones((4,)), jnp.arange(C, dtype=jnp.float32)
  ref = np.asarray(mouth.mean) + np.tensordot(np.ones(4), np.asarray(mouth.id_basis), 1) \
      + np.tensordot(np.arange(C), np.asarray(mouth.exp_basis), 1)
  np.testing.assert_allclose(losses.face_vertices(mouth, idc, exp), ref, rtol=1e-5, atol=1e-5)
  _, target = _batch()
  assert float(losses.mouth_vertex_loss(target, target, idc, mouth)) == 0.0
  shifted = target.at[..., 0].add(1.0)  # Error = basis column 0, for every frame.
  expected = np.mean(np.sum(np.asarray(mouth.exp_basis[0]) ** 2, -1))
  np.testing.assert_allclose(losses.mouth_vertex_loss(shifted, target, idc, mouth), expected,
                             rtol=1e-5)
  full_exp = np.arange(9 * 20 * 3, dtype=np.float32).reshape(9, 20, 3)
  full = losses.MouthModel.from_full(np.zeros((20, 3)), np.zeros((4, 20, 3)), full_exp,
                                     mouth_index=[1, 5], exp_index=[0, 2, 4])
  assert full.mean.shape == (2, 3) and full.id_basis.shape == (4, 2, 3)
  np.testing.assert_array_equal(full.exp_basis, full_exp[[0, 2, 4]][:, [1, 5]])


def test_masked_coefficient_loss():
  pred, target = jnp.zeros((B, T, C)), jnp.ones((B, T, C))
  mask = jnp.zeros((B, T), bool).at[:, :2].set(True)
  assert float(losses.coefficient_loss(pred.at[:, 2:].set(1.0), target, mask)) == 1.0
  assert float(losses.coefficient_loss(pred.at[:, 2:].set(1.0), target)) == pytest.approx(1 / 3)


def test_gradients_reach_memory_and_training_reduces_loss(tiny_variables):
  model = a2e.AudioToExpression(**TINY)
  mouth = _mouth_model()
  audio, target = _batch()
  id_coeffs = jnp.zeros((B, 1, 4))
  params = tiny_variables["params"]
  opt = optax.adam(3e-3)
  state = opt.init(params)

  def loss_fn(p):
    pred = model.apply({"params": p}, audio)["coeffs"]
    return losses.a2e_loss(pred, target, p, id_coeffs, mouth, w_vertex=0.1)

  @jax.jit
  def step(p, s):
    (loss, terms), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, s = opt.update(g, s, p)
    return optax.apply_updates(p, updates), s, loss, terms, g["memory"]

  history = []
  for i in range(30):
    params, state, loss, terms, memory_grads = step(params, state)
    history.append(float(loss))
    if i == 0:
      assert set(terms) == {"exp", "vertex", "reg"}
      assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(memory_grads))
  assert np.isfinite(history).all() and history[-1] < 0.5 * history[0]


def test_memory_labels_drive_alternating_updates(tiny_variables):
  params = tiny_variables["params"]
  labels = memory.memory_param_labels(params)
  assert labels["memory"] == {"keys": "memory", "values": "memory"}
  assert set(jax.tree.leaves(labels["encoder"])) == {"model"}
  frozen_memory = optax.multi_transform({"model": optax.sgd(1.0), "memory": optax.set_to_zero()},
                                        labels)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = frozen_memory.update(grads, frozen_memory.init(params), params)
  assert float(jnp.abs(updates["memory"]["keys"]).sum()) == 0.0
  assert float(jnp.abs(updates["head"]["kernel"]).sum()) > 0.0
