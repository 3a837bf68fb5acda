"""Multi-scale patch discriminator: shapes, official key mapping, LSGAN/feature-matching closed forms."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.nn import discriminator as disc

_SHAPES = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "mcnet_official" /
           "official_vox256_shapes" / "statedict_disc.txt")


def _inputs(size: int, num_kp: int = 10, batch: int = 2):
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.random((batch, size, size, 3), np.float32))
  kp = {"value": jnp.asarray(rng.uniform(-0.8, 0.8, (batch, num_kp, 2)), jnp.float32),
        "jacobian": jnp.broadcast_to(jnp.eye(2), (batch, num_kp, 2, 2))}
  return image, kp


def test_output_shapes_multiscale():
  model = disc.MultiScaleDiscriminator(scales=(1, 0.5), block_expansion=8, max_features=32)
  image, kp = _inputs(128)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), image, kp)  # kp dicts are accepted...
  assert sorted(variables["params"]) == ["discs_0-5", "discs_1"]
  assert variables["params"]["discs_1"]["down_blocks_0"]["conv"]["kernel"].shape == (4, 4, 13, 16)
  assert "norm" not in variables["params"]["discs_1"]["down_blocks_0"]
  apply = jax.jit(model.apply)
  out = apply(variables, image, kp["value"])  # ...as are bare (B, K, 2) values.
  # 128: conv4 -> 125, pool -> 62 -> 59 -> 29 -> 26 -> 13 -> 10 (last block: no pool).
  assert [f.shape for f in out[1].feature_maps] == [(2, 62, 62, 16), (2, 29, 29, 32),
                                                    (2, 13, 13, 32), (2, 10, 10, 32)]
  assert out[1].prediction_map.shape == (2, 10, 10, 1)
  assert out[0.5].prediction_map.shape == (2, 2, 2, 1)
  # The pyramid form of the input gives the same result, and keypoints matter.
  from talkingmem.losses import image_pyramid  # pylint: disable=g-import-not-at-top
  same = apply(variables, image_pyramid(image, (1, 0.5)), kp["value"])
  np.testing.assert_allclose(same[0.5].prediction_map, out[0.5].prediction_map, atol=1e-6)
  moved = apply(variables, image, kp["value"] * 0.5)
  assert float(jnp.abs(moved[1].prediction_map - out[1].prediction_map).max()) > 1e-6


def test_without_keypoints_and_too_small():
  model = disc.MultiScaleDiscriminator(block_expansion=8, max_features=16, use_kp=False)
  image, _ = _inputs(64, batch=1)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), image)
  assert shapes["params"]["discs_1"]["down_blocks_0"]["conv"]["kernel"].shape == (4, 4, 3, 16)
  with pytest.raises(ValueError, match="too small"):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), image[:, :32, :32])


def test_official_state_dict_converts_to_our_tree():
  if not _SHAPES.exists():
    pytest.skip(f"{_SHAPES} missing")
  rng = np.random.default_rng(1)
  state_dict = {}
  for line in _SHAPES.read_text().splitlines():
    if line.startswith("discs."):
      key, shape = line.split("\t")
      state_dict[key] = rng.standard_normal(eval(shape)).astype(np.float32)  # pylint: disable=eval-used
  params = disc.convert_discriminator(state_dict)
  image, kp = _inputs(64, num_kp=15, batch=1)
  model = disc.MultiScaleDiscriminator()  # The official vox-256 settings.
  want = jax.eval_shape(model.init, jax.random.PRNGKey(0), image, kp)["params"]
  assert jax.tree_util.tree_map(np.shape, params) == jax.tree_util.tree_map(np.shape, want)
  np.testing.assert_array_equal(params["discs_1"]["down_blocks_2"]["conv"]["kernel"],
                                state_dict["discs.1.down_blocks.2.conv.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["discs_1"]["down_blocks_1"]["norm"]["scale"],
                                state_dict["discs.1.down_blocks.1.norm.weight"])
  assert disc.scale_key(0.25) == "0-25" and disc.scale_key(1.0) == "1"
  with pytest.raises(ValueError, match="unexpected"):
    disc.convert_discriminator({"discs.1.down_blocks.0.conv.weight_orig": np.zeros(1)})


def _constant_outputs(pred: float, feats: list[float]) -> dict:
  return {s: disc.DiscriminatorOutput([jnp.full((2, 5, 5, 4), f) for f in feats],
                                      jnp.full((2, 3, 3, 1), pred)) for s in (1, 0.5)}


def test_lsgan_and_feature_matching_closed_forms():
  real = _constant_outputs(0.8, [1.0, 2.0, 3.0, 4.0])
  fake = _constant_outputs(0.3, [1.5, 2.0, 2.0, 4.25])
  scales = 2
  np.testing.assert_allclose(float(disc.generator_gan_loss(fake)), scales * (1 - 0.3) ** 2, rtol=1e-6)
  np.testing.assert_allclose(float(disc.generator_gan_loss(fake, weight=0.5)),
                             0.5 * scales * (1 - 0.3) ** 2, rtol=1e-6)
  np.testing.assert_allclose(float(disc.discriminator_gan_loss(real, fake)),
                             scales * ((1 - 0.8) ** 2 + 0.3 ** 2), rtol=1e-6)
  np.testing.assert_allclose(float(disc.feature_matching_loss(real, fake)),
                             scales * 10 * (0.5 + 0.0 + 1.0 + 0.25), rtol=1e-6)
  np.testing.assert_allclose(float(disc.feature_matching_loss(real, fake, (1, 0, 0, 2))),
                             scales * (0.5 + 2 * 0.25), rtol=1e-6)
  grad_real = jax.grad(lambda r: disc.feature_matching_loss(r, fake))(real)
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree_util.tree_leaves(grad_real))
