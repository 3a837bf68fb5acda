"""Per-sample convolution lowerings against a NumPy reference (values and gradients)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.nn import per_sample_conv as psc


def numpy_conv(x: np.ndarray, k: np.ndarray, padding: int) -> np.ndarray:
  """Direct cross-correlation per sample: out[b,y,x,o] = sum_{i,j,c} xp[b,y+i,x+j,c] k[b,i,j,c,o]."""
  b, kh, kw, cin, cout = k.shape
  xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  out = np.zeros((b, ho, wo, cout))
  for i in range(kh):
    for j in range(kw):
      out += np.einsum("byxc,bco->byxo", xp[:, i:i + ho, j:j + wo], k[:, i, j])
  return out


@pytest.mark.parametrize("method", ["grouped", "vmap", "im2col", "auto"])
@pytest.mark.parametrize("ksize,padding", [(3, 1), (1, 0), (3, 0)])
def test_methods_match_numpy(method, ksize, padding):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 7, 6, 4)).astype(np.float32)
  k = rng.normal(size=(3, ksize, ksize, 4, 5)).astype(np.float32)
  out = psc.per_sample_conv(jnp.asarray(x), jnp.asarray(k), padding, method)
  np.testing.assert_allclose(out, numpy_conv(x.astype(np.float64), k.astype(np.float64), padding),
                             atol=2e-5)


def test_gradients_agree_across_methods():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(2, 3, 3, 3, 4)), jnp.float32)
  t = jnp.asarray(rng.normal(size=(2, 6, 6, 4)), jnp.float32)

  def grads(method):
    return jax.grad(lambda a, b: jnp.sum(psc.per_sample_conv(a, b, 1, method) * t), (0, 1))(x, k)

  ref = grads("grouped")
  for method in ("vmap", "im2col"):
    for g, r in zip(grads(method), ref):
      np.testing.assert_allclose(g, r, atol=1e-4)


def test_auto_resolves_by_backend_and_rejects_unknown():
  assert psc.resolve_method("auto") == ("im2col" if jax.default_backend() == "cpu" else "grouped")
  with pytest.raises(ValueError, match="method must be one of"):
    psc.resolve_method("winograd")
