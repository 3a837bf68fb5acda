"""Official checkpoint conversion and output parity with the official PyTorch code's fixtures."""
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import ConvexHull

from talkingmem.mcnet import official
from talkingmem.mcnet.config import model_config
from talkingmem.mcnet.model import MCNet
from talkingmem.mcnet.normalize import convex_hull_area, normalize_kp
from talkingmem.mcnet.tools import official_parity


def _template(config):
  model = MCNet(config)
  x = jnp.zeros((1, config.image_size, config.image_size, 3))
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, x))


def test_parity_command_passes_on_shared_fixture(official_fixture_dir):
  proc = subprocess.run([sys.executable, "-m", "talkingmem.mcnet.tools.official_parity", "--fixtures",
                         str(official_fixture_dir)], capture_output=True, text=True, timeout=600)
  report = json.loads(proc.stdout)
  assert proc.returncode == 0, report["failed"]
  assert report["passed"] and report["compared"] >= 70 and not report["not_compared"]


def test_float32_model_outputs_within_tolerance(official_fixture_dir):
  """Our float32 model: keypoints, Jacobians, motion and predictions meet the issue's tolerances."""
  report = official_parity.run(official_fixture_dir, "float32")
  errors = report["max_abs_error"]
  for key in ("kp_source.value", "kp_driving.jacobian", "gen.recon.deformation", "gen.recon.occlusion_map",
              "gen.recon.mask", "anim.kp_norm.value", "anim.kp_norm.jacobian", "gen.anim.deformation"):
    assert errors[key] <= 1e-5, (key, errors[key])
  for key in ("gen.recon.prediction", "gen.anim.prediction", "gen.recon.deformed"):
    assert errors[key] <= 1e-4, (key, errors[key])


def test_infer_config_reads_fixture_sizes(official_fixture_dir):
  sds = official.load_state_dicts(official_fixture_dir / "kp_detector_state.npz",
                                  official_fixture_dir / "generator_state.npz")
  c = official.infer_config(sds)
  assert (c.image_size, c.num_kp, c.generator.block_expansion, c.generator.max_features) == (256, 15, 8, 64)
  assert (c.memory.memory_channels, c.memory.memory_size) == (16, 16)
  assert (c.kp_detector.block_expansion, c.kp_detector.num_blocks, c.kp_detector.scale_factor) == (8, 5, 0.25)


def test_official_vox256_shapes_map_onto_default_config(official_fixture_dir):
  """The released checkpoint's key/shape list maps 1:1 onto configs/mcnet.py's default model."""
  shapes = {}
  for module, fname in (("kp_detector", "statedict_kp.txt"), ("generator", "statedict_gen.txt")):
    shapes[module] = {}
    for line in (official_fixture_dir / "official_vox256_shapes" / fname).read_text().splitlines():
      if "\t" in line:
        key, shape = line.split("\t")
        shapes[module][key] = tuple(json.loads(shape.replace("(", "[").replace(")", "]").replace(",]", "]")))
  config = model_config(256)
  template = _template(config)
  exported = official.to_official(jax.tree.map(lambda s: np.zeros(s.shape, np.float32), template), config)
  for module in ("kp_detector", "generator"):
    assert {k: v.shape for k, v in exported[module].items()} == shapes[module]
  inferred = official.infer_config({m: {k: np.zeros(s) for k, s in sd.items()} | (
      {"down.weight": exported[m]["down.weight"]} if m == "kp_detector" else
      {"dense_motion_network.down.weight": exported[m]["dense_motion_network.down.weight"]})
      for m, sd in shapes.items()})
  assert inferred.to_dict() == config.to_dict()


def test_round_trip_flax_official_flax(tiny_mcnet):
  config, variables = tiny_mcnet.config, tiny_mcnet.variables
  sds = official.to_official(variables, config)
  back = official.from_official(sds, config, _template(config))
  jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, dict(variables)))


def test_missing_and_unexpected_keys_are_refused(tiny_mcnet):
  config = tiny_mcnet.config
  sds = official.to_official(tiny_mcnet.variables, config)
  del sds["generator"]["mbUnit.query_conv.weight"]
  sds["kp_detector"]["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(official.StateDictMismatch) as err:
    official.from_official(sds, config, _template(config))
  assert "generator:mbUnit.query_conv.weight" in str(err.value)
  assert "kp_detector:extra.weight" in str(err.value)


def test_npz_round_trip_with_module_prefix(tmp_path, tiny_mcnet):
  sds = official.to_official(tiny_mcnet.variables, tiny_mcnet.config)
  prefixed = {m: {f"module.{k}": v for k, v in sd.items()} for m, sd in sds.items()}
  official.save_npz(prefixed, tmp_path / "w.npz")
  loaded = official.load_state_dicts(tmp_path / "w.npz")
  assert set(loaded["generator"]) == set(sds["generator"])


def test_convex_hull_area_matches_scipy():
  rng = np.random.default_rng(0)
  for n in (3, 5, 15, 40):
    pts = rng.uniform(-1, 1, size=(4, n, 2))
    got = np.asarray(convex_hull_area(jnp.asarray(pts)))
    np.testing.assert_allclose(got, [ConvexHull(p).volume for p in pts], rtol=1e-5)  # float32
  square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0], [0.5, 0.5], [1, 1]], float)
  np.testing.assert_allclose(convex_hull_area(jnp.asarray(square)), 1.0)


def test_normalize_kp_relative_motion():
  rng = np.random.default_rng(1)
  mk = lambda: {"value": jnp.asarray(rng.uniform(-0.5, 0.5, (2, 10, 2))),  # noqa: E731
                "jacobian": jnp.asarray(np.eye(2) + 0.1 * rng.normal(size=(2, 10, 2, 2)))}
  src, drv, init = mk(), mk(), mk()
  out = normalize_kp(src, init, init, adapt_movement_scale=True, use_relative_movement=True,
                     use_relative_jacobian=True)
  np.testing.assert_allclose(out["value"], src["value"], atol=1e-6)  # no motion -> source keypoints
  np.testing.assert_allclose(out["jacobian"], src["jacobian"], atol=1e-6)
  out = normalize_kp(src, drv, init, adapt_movement_scale=True, use_relative_movement=True,
                     scale_per_sample=True)
  s = np.sqrt([ConvexHull(a).volume / ConvexHull(b).volume for a, b in zip(src["value"], init["value"])])
  np.testing.assert_allclose(out["value"], (drv["value"] - init["value"]) * s[:, None, None] + src["value"],
                             rtol=1e-5, atol=1e-6)  # float32
