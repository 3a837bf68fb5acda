"""MCNet builds and runs at any size, keypoint count and memory size; jit and grad work end to end."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.mcnet.config import tiny_model_config
from talkingmem.mcnet.model import MCNet


def _init(config, batch=2):
  model = MCNet(config)
  size = config.image_size
  rng = np.random.default_rng(0)
  source = jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32)
  driving = jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), source, driving)
  return model, variables, source, driving


# With the session model (64x64, 10 keypoints, memory 16x8x8) these cover sizes 64/128, num_kp 5/10/15
# and three memory sizes.
@pytest.mark.parametrize("size,num_kp,memory_channels,memory_size", [(64, 5, 8, 4), (128, 15, 16, 16)])
def test_forward_shapes(size, num_kp, memory_channels, memory_size):
  config = tiny_model_config(size)
  config.num_kp = num_kp
  config.memory.update(memory_channels=memory_channels, memory_size=memory_size)
  model, variables, source, driving = _init(config)
  out = jax.jit(model.apply)(variables, source, driving)
  assert out["prediction"].shape == source.shape
  assert out["kp_source"]["value"].shape == (2, num_kp, 2)
  assert out["kp_source"]["jacobian"].shape == (2, num_kp, 2, 2)
  assert len(out["memory"]) == config.generator.num_down_blocks
  for internals in out["memory"]:
    assert internals["value"].shape == (2, memory_size, memory_size, memory_channels)
  assert np.all(np.isfinite(np.asarray(out["prediction"])))
  assert 0.0 <= float(out["prediction"].min()) and float(out["prediction"].max()) <= 1.0
  assert variables["params"]["generator"]["memory_unit"]["memory"].shape == (
      1, memory_size, memory_size, memory_channels)


def test_baseline_has_no_memory():
  config = tiny_model_config(64)
  config.use_memory = False
  config.kp_detector.num_blocks = config.dense_motion.num_blocks = 3
  model = MCNet(config)
  x = jnp.zeros((1, 64, 64, 3))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, x))
  assert "memory_unit" not in shapes["params"]["generator"]
  out = jax.eval_shape(lambda v: model.apply(v, x, x), shapes)
  assert out["prediction"].shape == x.shape and out["memory"] == []


def test_single_layer_memory_compensates_the_deepest_level_only():
  config = tiny_model_config(64)
  config.memory.layers = "first"
  model = MCNet(config)
  x = jnp.zeros((1, 64, 64, 3))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, x))
  unit = shapes["params"]["generator"]["memory_unit"]
  deepest = config.generator.num_down_blocks
  assert {k for k in unit if k.startswith("out_conv_")} == {f"out_conv_{deepest}"}
  out = jax.eval_shape(lambda v: model.apply(v, x, x), shapes)
  assert len(out["memory"]) == 1 and out["prediction"].shape == x.shape


@pytest.mark.parametrize("drop", ["iscm_keypoints", "iscm_features"])
def test_iscm_without_an_input_ignores_it(drop):
  """The scale code's MLP sees only the kept input: its width shrinks, and changing the dropped input
  (the source keypoints, resp. the warped features) leaves the style unchanged; the kept one does not."""
  from talkingmem.mcnet.memory import MemoryUnit
  unit = MemoryUnit(((2, 16),), memory_channels=8, memory_size=4, style_dim=8, style_hidden=8,
                    **{drop: False})
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, 8, 8, 16)), jnp.float32)
  kp = jnp.asarray(rng.uniform(-1, 1, size=(1, 5, 2)), jnp.float32)
  variables = unit.init(jax.random.PRNGKey(0), x, kp, 2)
  assert variables["params"]["style_fc1"]["kernel"].shape[0] == (8 if drop == "iscm_keypoints" else 10)
  style = lambda x, kp: np.asarray(unit.apply(variables, x, kp, 2)[1]["style"])
  same_when_kp_moves = np.allclose(style(x, kp), style(x, kp + 0.3))
  same_when_features_change = np.allclose(style(x, kp), style(x * 2.0 + 1.0, kp))
  assert same_when_kp_moves == (drop == "iscm_keypoints")
  assert same_when_features_change == (drop == "iscm_features")


def test_iscm_needs_an_input():
  config = tiny_model_config(64)
  config.memory.update(iscm_keypoints=False, iscm_features=False)
  with pytest.raises(ValueError, match="at least one input"):
    _init(config, batch=1)


def test_identity_keypoints_give_identity_motion(tiny_mcnet):
  """Same keypoints for source and driving: every sparse motion is the identity grid."""
  t = tiny_mcnet
  kp = t.apply(t.variables, t.source, method=MCNet.detect)
  out = t.apply(t.variables, t.source, kp, kp, method=MCNet.generate)
  from talkingmem.nn.warp import make_coordinate_grid
  grid = make_coordinate_grid(*out["deformation"].shape[1:3])
  np.testing.assert_allclose(out["deformation"], jnp.broadcast_to(grid, out["deformation"].shape), atol=1e-5)


def test_noise_is_explicit(tiny_mcnet):
  t = tiny_mcnet
  variables = jax.tree_util.tree_map(lambda x: x, t.variables)
  variables["params"]["generator"]["memory_unit"]["styleconv"]["noise_strength"] = jnp.ones((1,))
  kp_s = t.apply(variables, t.source, method=MCNet.detect)
  kp_d = t.apply(variables, t.driving, method=MCNet.detect)
  gen = jax.jit(lambda v, noise: t.model.apply(v, t.source, kp_s, kp_d, False, noise,
                                               method=MCNet.generate)["prediction"])
  a, b = gen(variables, None), gen(variables, None)
  c = gen(variables, jax.random.PRNGKey(1))
  np.testing.assert_array_equal(a, b)  # deterministic without noise
  assert float(jnp.max(jnp.abs(a - c))) > 0  # noise is used when given


def test_grad_through_whole_model_and_batchnorm_train_mode(tiny_mcnet):
  model, variables, source, driving = (tiny_mcnet.model, tiny_mcnet.variables, tiny_mcnet.source,
                                       tiny_mcnet.driving)

  def loss(params):
    out, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, source,
                               driving, train=True, mutable=["batch_stats"])
    return jnp.mean(jnp.abs(out["prediction"] - driving)), updates

  (value, updates), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
  assert np.isfinite(float(value))
  norms = {k: float(optax_global_norm(v)) for k, v in grads.items()}
  assert norms["kp_detector"] > 0 and norms["generator"] > 0
  assert float(optax_global_norm(grads["generator"]["memory_unit"])) > 0
  # Running statistics moved in train mode.
  before = variables["batch_stats"]["generator"]["first"]["norm"]["mean"]
  after = updates["batch_stats"]["generator"]["first"]["norm"]["mean"]
  assert float(jnp.max(jnp.abs(before - after))) > 0


def optax_global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))
