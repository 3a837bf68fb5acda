"""Memory-saving generator options change no value: jax.checkpoint parts and the flash attention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.mcnet.config import tiny_model_config
from talkingmem.mcnet.model import MCNet


def loss_and_grads(config, variables, source, driving):
  model = MCNet(config)

  def loss(params):
    out, _ = model.apply({**variables, "params": params}, source, driving, train=True, mutable=["batch_stats"])
    return jnp.mean(out["prediction"] ** 2)

  return jax.jit(jax.value_and_grad(loss))(variables["params"])


@pytest.mark.parametrize("change", [
    {"generator.remat": "memory,decoder"},
    {"generator.remat": "memory", "generator.remat_policy": "dots"},
    {"memory.attention_impl": "flash", "memory.attention_chunk": 64},
])
def test_same_loss_and_gradients(change):
  config = tiny_model_config(32)
  rng = np.random.default_rng(0)
  source, driving = (jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32) for _ in range(2))
  variables = jax.jit(MCNet(config).init)(jax.random.PRNGKey(0), source, driving)
  reference = loss_and_grads(config, variables, source, driving)
  changed = config.copy_and_resolve_references()
  for path, value in change.items():
    part, field = path.split(".")
    changed[part][field] = value
  value, grads = loss_and_grads(changed, variables, source, driving)
  np.testing.assert_allclose(value, reference[0], rtol=1e-5)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(grads),
                               jax.tree_util.tree_leaves(reference[1])):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 + 1e-4 * float(np.max(np.abs(want))),
                               err_msg=jax.tree_util.keystr(path))


def test_unknown_remat_part_is_refused():
  config = tiny_model_config(32)
  config.generator.remat = "encoder"
  image = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ValueError, match="parts are a comma list of"):
    MCNet(config).init(jax.random.PRNGKey(0), image, image)
