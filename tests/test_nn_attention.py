"""The flash-style memory cross-attention against the plain one: values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.nn.attention import flash_memory_cross_attention, memory_cross_attention


def inputs(b, h, s, d, seed=0):
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((b, h, h, d)).astype(np.float32)
  k = rng.standard_normal((b, s, s, d)).astype(np.float32)
  v = rng.standard_normal((b, s, s, d)).astype(np.float32)
  return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)


@pytest.mark.parametrize("b,h,s,d,chunk", [(2, 8, 4, 512, 16), (1, 8, 4, 32, 64), (2, 6, 3, 8, 5)])
def test_flash_matches_plain_values_and_gradients(b, h, s, d, chunk):
  """Head dim 512 (MCNet's), one chunk, and a chunk that does not divide (falls back to one chunk)."""
  q, k, v = inputs(b, h, s, d)
  scale = 0.25 if d != 512 else 0.25 / 8  # keep the softmax away from one-hot at d=512
  w = jnp.asarray(np.random.default_rng(1).standard_normal((b, h, h, d)), jnp.float32)
  loss = lambda fn: lambda *a: jnp.sum(w * fn(*a, scale, chunk))  # noqa: E731
  plain = jax.jit(jax.value_and_grad(loss(memory_cross_attention), argnums=(0, 1, 2)))
  flash = jax.jit(jax.value_and_grad(loss(flash_memory_cross_attention), argnums=(0, 1, 2)))
  (lp, gp), (lf, gf) = plain(q, k, v), flash(q, k, v)
  np.testing.assert_allclose(flash_memory_cross_attention(q, k, v, scale, chunk),
                             memory_cross_attention(q, k, v, scale), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(lf, lp, rtol=1e-5)
  for name, a, e in zip("qkv", gf, gp):
    np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(e))), err_msg=name)


def test_flash_keeps_no_score_matrix_for_the_backward():
  """The saved residuals are O(N·D): no (B, N, S²) array among them (the point of the custom VJP)."""
  q, k, v = inputs(1, 32, 8, 16)
  _, vjp = jax.vjp(lambda q, k, v: flash_memory_cross_attention(q, k, v, 0.25, 128), q, k, v)
  shapes = {tuple(x.shape) for x in jax.tree_util.tree_leaves(vjp)}
  assert (1, 1024, 64) not in shapes and (8, 1, 128, 64) not in shapes
  assert (1, 1024) in shapes  # the log-sum-exp per query


def test_flash_bfloat16_close_to_float32():
  q, k, v = inputs(1, 8, 4, 64)
  ref = memory_cross_attention(q, k, v, 0.25)
  out = flash_memory_cross_attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), 0.25, 16)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=0.05 * float(jnp.max(jnp.abs(ref))))
