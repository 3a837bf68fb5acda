"""Checks our MCNet against outputs recorded from the official PyTorch code.

  python -m talkingmem.mcnet.tools.official_parity --fixtures ../shared/fixtures/mcnet_official

Reads DIR/config.json, DIR/kp_detector_state.npz, DIR/generator_state.npz and DIR/io.npz (format in
that directory's README), runs the keypoint detector and the reconstruction and animation paths with
the recorded StyleConv noise, prints one JSON object of max absolute errors and exits 1 if any error
is above its tolerance (1e-5 for keypoints, Jacobians, deformation, occlusion and mask; 1e-4 else).

--dtype=float64 (default) runs our model in float64, so the errors measure only the official float32
rounding (the fixture README lists it: <=7.4e-7 on keypoints, 2.4e-5 on predictions, ~7e-5 on
instance-normalised memory outputs). --dtype=float32 runs our float32 model; there the two float32
rounding patterns add, and `visual_after_128` lands at ~1.1e-4 while final outputs stay within 4e-5.
"""
from __future__ import annotations

import json
import pathlib
import sys
from typing import Callable

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.user_errors import UserInputError, run_absl
from talkingmem.mcnet import official
from talkingmem.mcnet.generator import memory_levels
from talkingmem.mcnet.model import MCNet
from talkingmem.mcnet.normalize import normalize_kp
from talkingmem.nn.antialias import antialias_downsample

TIGHT = 1e-5
LOOSE = 1e-4
_TIGHT_NAMES = ("value", "jacobian", "deformation", "occlusion_map", "mask", "kp_norm")


def nchw(x) -> np.ndarray:
  """Our NHWC (or (B, h, w, K+1, C)) -> the official layout."""
  x = np.asarray(x)
  if x.ndim == 5:
    return x.transpose(0, 3, 4, 1, 2)
  return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def _nhwc(x: np.ndarray, dtype=jnp.float32) -> jnp.ndarray:
  return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1), dtype)


def tolerance(key: str) -> float:
  return TIGHT if any(part in key.split(".")[-1] or part in key for part in _TIGHT_NAMES) else LOOSE


FIXTURE_FILES = ("config.json", "kp_detector_state.npz", "generator_state.npz", "io.npz")


def check_fixtures(fixtures: pathlib.Path) -> dict:
  """The fixture folder's config.json, after checking every file is there (before any model work)."""
  if not fixtures.is_dir():
    raise UserInputError(f"--fixtures={fixtures} is not a folder; give the folder the official code's "
                         "recorder wrote (see tests/fixtures or /work/shared/fixtures/mcnet_official)")
  missing = [name for name in FIXTURE_FILES if not (fixtures / name).is_file()]
  if missing:
    raise UserInputError(f"--fixtures={fixtures} lacks {', '.join(missing)}; it needs {', '.join(FIXTURE_FILES)}")
  try:
    cfg_json = json.loads((fixtures / "config.json").read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise UserInputError(f"{fixtures / 'config.json'} is not valid JSON ({e})") from e
  if not isinstance(cfg_json, dict):
    raise UserInputError(f"{fixtures / 'config.json'} is not a JSON object of the official config")
  return cfg_json


def build(fixtures: pathlib.Path, dtype=jnp.float32):
  cfg_json = check_fixtures(fixtures)
  state_dicts = official.load_state_dicts(fixtures / "kp_detector_state.npz",
                                          fixtures / "generator_state.npz")
  image_size = cfg_json.get("image_size", [None])[0]
  config = official.infer_config(state_dicts, image_size)
  params = cfg_json.get("model_params", {})
  config.kp_detector.temperature = params.get("kp_detector_params", {}).get("temperature", 0.1)
  config.kp_detector.pad = params.get("kp_detector_params", {}).get("pad", 0)
  dm = params.get("generator_params", {}).get("dense_motion_params", {})
  config.dense_motion.kp_variance = dm.get("kp_variance", 0.01)
  model = MCNet(config)
  dummy = jnp.zeros((1, config.image_size, config.image_size, config.num_channels))
  template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy, dummy))
  variables = official.from_official(state_dicts, config, template)
  variables = jax.tree.map(lambda a: jnp.asarray(a, dtype), variables)
  return cfg_json, config, model, variables


def run(fixtures: pathlib.Path, dtype: str = "float64") -> dict:
  """Compares every recorded output we can produce; dtype 'float64' needs jax_enable_x64."""
  if dtype == "float64" and not jax.config.jax_enable_x64:
    raise RuntimeError("float64 parity needs jax.config.update('jax_enable_x64', True) first")
  jdtype = jnp.float64 if dtype == "float64" else jnp.float32
  cfg_json, config, model, variables = build(fixtures, jdtype)
  io = official.read_npz(fixtures / "io.npz")
  if "input.source" not in io:
    raise UserInputError(f"{fixtures / 'io.npz'} holds no 'input.source': not the recorder's io.npz")
  as_input = lambda x: _nhwc(x, jdtype)  # noqa: E731
  ours: dict[str, Callable[[], np.ndarray] | np.ndarray] = {}

  detect = jax.jit(lambda x: model.apply(variables, x, method=MCNet.detect))
  kps = {}
  for name in ("source", "driving", "driving_initial"):
    if f"input.{name}" in io:
      kps[name] = detect(as_input(io[f"input.{name}"]))
      ours[f"kp_{name}.value"] = kps[name]["value"]
      if "jacobian" in kps[name]:
        ours[f"kp_{name}.jacobian"] = kps[name]["jacobian"]
  ours["kpd_inter.source.heatmap_logits"] = nchw(kps["source"]["heatmap_logits"])
  _, inter = model.apply(variables, as_input(io["input.source"]), method=MCNet.detect,
                         capture_intermediates=lambda mdl, _: mdl.name == "predictor",
                         mutable=["intermediates"])
  feature_map = inter["intermediates"]["kp_detector"]["predictor"]["__call__"][0]
  ours["kpd_inter.source.feature_map"] = nchw(feature_map)
  ours["kpd_inter.source.down"] = nchw(antialias_downsample(as_input(io["input.source"]),
                                                            config.kp_detector.scale_factor))

  generate = jax.jit(lambda src, kp_s, kp_d, noise: model.apply(variables, src, kp_s, kp_d, False, noise,
                                                                method=MCNet.generate))
  levels = memory_levels(config.generator.num_down_blocks)
  widths = [config.image_size // 2 ** lvl for lvl in levels]
  source = as_input(io["input.source"])

  def noise_for(prefix: str):
    keys = [f"{prefix}.styleconv_noise.{i}" for i in range(len(levels))]
    return [as_input(io[k]) for k in keys] if all(k in io for k in keys) else None

  def collect(prefix: str, inter: str, out: dict) -> None:
    ours[f"{prefix}.prediction"] = nchw(out["prediction"])
    ours[f"{prefix}.deformation"] = out["deformation"]
    ours[f"{prefix}.mask"] = nchw(out["mask"])
    ours[f"{prefix}.sparse_deformed"] = nchw(out["sparse_deformed"])
    ours[f"{prefix}.deformed"] = nchw(out["deformed"])
    if "occlusion_map" in out:
      ours[f"{prefix}.occlusion_map"] = nchw(out["occlusion_map"])
    ours[f"{prefix}.Fwarp"] = nchw(out["warped"][0])
    for i, w in enumerate(out["warped"][1:], start=1):
      ours[f"{prefix}.warped_encoder_maps.{i}"] = nchw(w)
    for call, (width, internals) in enumerate(zip(widths, out["memory"])):
      for name in ("feat", "query", "key", "value", "memory", "residual"):
        ours[f"{prefix}.visual_{name}_{width}"] = nchw(internals[name])
      ours[f"{prefix}.visual_after_{width}"] = nchw(internals["output"])
      ours[f"{inter}.mb_style_route_input.call{call}"] = internals["style_input"]
      ours[f"{inter}.mb_style_code.call{call}"] = internals["style"]
      ours[f"{inter}.mb_conv_kv_attention.call{call}"] = internals["kernel_attention"]
    ours[f"{inter}.down_block{config.generator.num_down_blocks - 1}"] = nchw(out["encoder_maps"][-1])
    ours[f"{inter}.resblock1"] = nchw(out["decoder_stages"][0])
    ours[f"{inter}.up_block0"] = nchw(out["decoder_stages"][1])

  recon = generate(source, kps["source"], kps["driving"], noise_for("gen.recon"))
  collect("gen.recon", "gen_inter.recon", recon)
  if "driving_initial" in kps:
    flags_json = cfg_json.get("animate_normalize_kp", {})
    kp_norm = normalize_kp(kps["source"], kps["driving"], kps["driving_initial"], **flags_json)
    ours["anim.kp_norm.value"] = kp_norm["value"]
    if "jacobian" in kp_norm:
      ours["anim.kp_norm.jacobian"] = kp_norm["jacobian"]
    ours["anim.adapt_movement_scale"] = kp_norm["scale"][0]
    anim = generate(source, kps["source"], {k: kp_norm[k] for k in ("value", "jacobian") if k in kp_norm},
                    noise_for("gen.anim"))
    collect("gen.anim", "gen_inter.anim", anim)

  errors, failed, shape_mismatch = {}, [], []
  for key, expected in io.items():
    if key.startswith("input.") or key.endswith(tuple(f"styleconv_noise.{i}" for i in range(8))):
      continue
    if key not in ours:
      continue
    got = np.asarray(ours[key], np.float64)
    if got.shape != expected.shape:
      shape_mismatch.append(f"{key}: ours {got.shape} vs official {expected.shape}")
      continue
    err = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    errors[key] = err
    if not err <= tolerance(key):
      failed.append(key)
  not_compared = sorted(k for k in io if k not in errors and not k.startswith("input.")
                        and "styleconv_noise" not in k and k not in shape_mismatch)
  return {"passed": not failed and not shape_mismatch, "dtype": dtype, "compared": len(errors),
          "failed": failed,
          "shape_mismatch": shape_mismatch, "not_compared": not_compared,
          "tolerance": {"tight": TIGHT, "loose": LOOSE}, "max_abs_error": errors}


FLAGS = flags.FLAGS
flags.DEFINE_string("fixtures", None, "Directory with config.json, *_state.npz and io.npz.")
flags.DEFINE_enum("dtype", "float64", ["float64", "float32"], "Precision our model runs in.")


def main(argv: list[str]) -> None:
  del argv
  if not FLAGS.fixtures:
    raise UserInputError("--fixtures=DIR is required (the official code's recorded outputs)")
  jax.config.update("jax_default_matmul_precision", "highest")
  jax.config.update("jax_enable_x64", FLAGS.dtype == "float64")
  report = run(pathlib.Path(FLAGS.fixtures), FLAGS.dtype)
  print(json.dumps(report, indent=1, sort_keys=True))
  sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
  run_absl(main)
