"""Export: StableHLO artefacts reloaded in a fresh process (jax + numpy only) and the TF SavedModel give
the in-process model's outputs, at two batch sizes (the batch dimension is symbolic)."""
import importlib.util
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem import checkpointing, export, exported

from talkingmem.mcnet import animate
from talkingmem.mcnet import dense_motion
from talkingmem.memface.a2e import AudioToExpression
from talkingmem.mcnet.model import MCNet

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(name: str, variant: str):
  spec = importlib.util.spec_from_file_location(f"export_test_{name}", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


# ---------------------------------------------------------------------------------------------------
# MCNet: tiny 32x32 model with random weights.


@pytest.fixture(scope="module")
def mcnet(tmp_path_factory):
  config = _config("mcnet", "tiny")
  variables = jax.tree.map(np.asarray, animate.random_variables(config.model, seed=3))
  out = tmp_path_factory.mktemp("export") / "mcnet"
  source = export.Source(config, variables, "random tiny MCNet", {"relative": True, "adapt_scale": True})
  manifest = export.export(source, out, ["stablehlo"])
  rng = np.random.default_rng(0)
  size = config.model.image_size
  frames = rng.uniform(size=(4, size, size, 3)).astype(np.float32)  # source, then 3 driving frames
  return config, variables, out, manifest, frames


@pytest.fixture(scope="module")
def mcnet_reference(mcnet):
  """The in-process model: jitted keypoints, and animate_frames (what --mode=animate runs)."""
  config, variables, _, _, frames = mcnet
  model = MCNet(config.model)
  kp = jax.jit(lambda v, x: model.apply(v, x, method=MCNet.detect))(variables, jnp.asarray(frames))
  predictions = animate.animate_frames(model, variables, frames[0], frames[1:], batch_size=3, relative=True,
                                       adapt_scale=True, initial_index=0)
  return {"value": np.asarray(kp["value"]), "jacobian": np.asarray(kp["jacobian"])}, predictions


_SERVE = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
loader = sys.modules["exported"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loader)
fns = loader.load_exported(sys.argv[2])
frames = np.load(sys.argv[3])["frames"]
source, driving = frames[:1], frames[1:]
kp_s, kp_d = fns["detect"](image=source), fns["detect"](image=driving)  # batch 1, batch 3
tile = lambda a: np.repeat(a, 3, 0)
pose = lambda p, kp: {f"{p}_{k}": v for k, v in kp.items()}
first = {k: v[:1] for k, v in kp_d.items()}
tiled = lambda kp: {k: tile(v) for k, v in kp.items()}
pred3 = fns["animate_frame"](source=tile(source), **pose("kp_source", tiled(kp_s)),
                             **pose("kp_driving", kp_d), **pose("kp_initial", tiled(first)))
pred1 = fns["animate_frame"](source=source, **pose("kp_source", kp_s), **pose("kp_initial", first),
                             **pose("kp_driving", {k: v[2:] for k, v in kp_d.items()}))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("flax", "talkingmem", "tensorflow", "orbax"))
assert not heavy, heavy
np.savez(sys.argv[4], kp_s_value=kp_s["value"], kp_s_jacobian=kp_s["jacobian"], kp_d_value=kp_d["value"],
         kp_d_jacobian=kp_d["jacobian"], pred3=pred3["prediction"], pred1=pred1["prediction"])
"""


def test_stablehlo_serves_in_fresh_process(mcnet, mcnet_reference, tmp_path):
  _, _, out, manifest, frames = mcnet
  kp, predictions = mcnet_reference
  assert manifest["artefacts"]["detect"]["inputs"]["image"]["shape"] == ["b", 32, 32, 3]
  assert manifest["artefacts"]["animate_frame"]["outputs"]["prediction"]["shape"] == ["b", 32, 32, 3]
  np.savez(tmp_path / "frames.npz", frames=frames)
  script = tmp_path / "serve.py"
  script.write_text(_SERVE)
  args = [exported.__file__, str(out), str(tmp_path / "frames.npz"), str(tmp_path / "served.npz")]
  proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = np.load(tmp_path / "served.npz")
  for key in ("value", "jacobian"):
    np.testing.assert_allclose(served[f"kp_s_{key}"], kp[key][:1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(served[f"kp_d_{key}"], kp[key][1:], atol=1e-5, rtol=0)
  np.testing.assert_allclose(served["pred3"], predictions, atol=1e-4, rtol=0)
  np.testing.assert_allclose(served["pred1"], predictions[2:], atol=1e-4, rtol=0)


def test_exported_program_has_no_lapack_calls(mcnet):
  """The 2x2 Jacobian inverses are exported in closed form: no jaxlib-only custom calls."""
  _, _, out, _, _ = mcnet
  program = jax.export.deserialize(bytearray((out / "animate_frame.stablehlo").read_bytes())).mlir_module()
  assert "lapack" not in program and "custom_call @shape_assertion" in program
  m = np.random.default_rng(0).normal(size=(3, 5, 2, 2)).astype(np.float32)
  np.testing.assert_allclose(dense_motion.inverse(jnp.asarray(m)), np.linalg.inv(m), rtol=1e-4, atol=1e-5)


def test_savedmodel_matches(mcnet, mcnet_reference, tmp_path):
  tf = pytest.importorskip("tensorflow")
  config, variables, _, _, frames = mcnet
  kp, predictions = mcnet_reference
  out = tmp_path
  source = export.Source(config, variables, "random tiny MCNet", {"relative": True, "adapt_scale": True})
  manifest = export.export(source, out, ["savedmodel"])
  assert "stablehlo" not in manifest["artefacts"]["detect"]
  detect = tf.saved_model.load(str(out / manifest["artefacts"]["detect"]["savedmodel"]))
  animate_frame = tf.saved_model.load(str(out / manifest["artefacts"]["animate_frame"]["savedmodel"]))
  serve_detect, serve_animate = (m.signatures["serving_default"] for m in (detect, animate_frame))
  for batch in (slice(0, 1), slice(1, 4)):
    got = serve_detect(image=tf.constant(frames[batch]))
    for key in ("value", "jacobian"):
      np.testing.assert_allclose(got[key].numpy(), kp[key][batch], atol=1e-5, rtol=0)
  for frame_index in ([2], [0, 1, 2]):
    n = len(frame_index)
    args = {"source": np.repeat(frames[:1], n, 0)}
    for key in ("value", "jacobian"):
      args[f"kp_source_{key}"] = np.repeat(kp[key][:1], n, 0)
      args[f"kp_initial_{key}"] = np.repeat(kp[key][1:2], n, 0)
      args[f"kp_driving_{key}"] = kp[key][1:][frame_index]
    got = serve_animate(**{k: tf.constant(v) for k, v in args.items()})["prediction"].numpy()
    np.testing.assert_allclose(got, predictions[frame_index], atol=1e-4, rtol=0)
  assert len(animate_frame.param_variables) > 10  # weights are variables, not constants


def test_detector_only_checkpoint_exports_detect(mcnet, tmp_path):
  config, variables, _, _, _ = mcnet
  detector = {col: {"kp_detector": tree["kp_detector"]} for col, tree in variables.items()}
  manifest = export.export(export.Source(config, detector, "detector only"), tmp_path, ["stablehlo"])
  assert list(manifest["artefacts"]) == ["detect"]


# ---------------------------------------------------------------------------------------------------
# MemFace audio-to-expression, through the command line.


def _a2e_workdir(path: pathlib.Path, seed: int = 0):
  config = _config("memface_a2e", "tiny")
  m = config.model.to_dict()
  m["conv_features"] = tuple(m["conv_features"])
  model = AudioToExpression(num_coeffs=5, **m)
  audio = jnp.zeros((1, config.data.window, config.data.feature_window, 12))
  variables = jax.jit(model.init)(jax.random.PRNGKey(seed), audio)
  path.mkdir()
  checkpointing.save_config(path, config)
  manager = checkpointing.make_manager(path, async_save=False)
  state = {"step": np.int32(7), "params": variables["params"], "model_state": {}}
  checkpointing.save(manager, 7, state, None, force=True)
  manager.wait_until_finished()
  manager.close()
  return model, variables, audio.shape


def test_a2e_export_command(tmp_path):
  model, variables, (_, frames, window, dim) = _a2e_workdir(tmp_path / "w")
  command = ["-m", "talkingmem.main", "--mode=export", f"--workdir={tmp_path / 'w'}",
             f"--export_dir={tmp_path / 'x'}", "--export_formats=stablehlo"]
  proc = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout)["artefacts"]["a2e"]["inputs"]["audio"]["shape"] == ["b", frames, window, dim]
  a2e = exported.load_exported(tmp_path / "x")["a2e"]
  rng = np.random.default_rng(1)
  apply = jax.jit(model.apply)
  for batch in (1, 2):
    audio = rng.standard_normal((batch, frames, window, dim)).astype(np.float32)
    mask = np.arange(frames)[None].repeat(batch, 0) < frames - np.arange(batch)[:, None] * 3
    want = apply(variables, audio, mask)["coeffs"]
    np.testing.assert_allclose(a2e(audio=audio, mask=mask)["coeffs"], want, atol=1e-5, rtol=0)
  # Parameters are arguments: other weights of the same shapes give that model's outputs.
  other = jax.jit(model.init)(jax.random.PRNGKey(5), audio)
  a2e.params = other
  np.testing.assert_allclose(a2e(audio=audio, mask=mask)["coeffs"], apply(other, audio, mask)["coeffs"],
                             atol=1e-5, rtol=0)
  with pytest.raises(exported.ExportedInputError, match="expected"):
    a2e(audio=audio[:, :3], mask=mask)
  with pytest.raises(exported.ExportedInputError, match="missing"):
    a2e(audio=audio)


def test_unknown_task_and_format_are_refused(mcnet, tmp_path):
  config, variables, _, _, _ = mcnet
  with pytest.raises(ValueError, match="unknown export formats"):
    export.export(export.Source(config, variables, "x"), tmp_path, ["onnx"])
  other = _config("mcnet", "tiny")
  other.task = "nothing"
  with pytest.raises(ValueError, match="no export for task 'nothing'"):
    export.export(export.Source(other, variables, "x"), tmp_path, ["stablehlo"])


@pytest.mark.parametrize("kind", ["explicit", "none"])
def test_memface_renderer_frame_export(kind, tmp_path):
  """The speak step served from StableHLO equals the renderer applied with the first speaker's memory."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from configs import memface_renderer as renderer_configs  # pylint: disable=g-import-not-at-top
  from talkingmem.memface import renderer  # pylint: disable=g-import-not-at-top
  config = renderer_configs.get_config("tiny")
  c = config.model
  c.memory = kind
  size, n, p, key_dim = int(c.image_size), int(c.memory_size), int(c.patch_size), 12
  rng = np.random.default_rng(0)
  memories = {"keys": rng.normal(size=(2, n, key_dim)), "values": rng.uniform(size=(2, n, p, p, 3)),
              "frame_ids": np.tile(np.arange(n), (2, 1)), "valid": np.ones((2, n), bool),
              "key_mean": np.zeros((2, key_dim)), "key_scale": np.ones((2,))}
  memories = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in memories.items()}
  one = {k: jnp.asarray(v[0]) for k, v in memories.items()}
  model = renderer.NeuralRenderer(c)
  frames = rng.uniform(size=(3, size, size, 3)).astype(np.float32)
  query = rng.normal(size=(3, key_dim)).astype(np.float32)
  params = model.init(jax.random.PRNGKey(0), frames[:1], frames[:1], query[:1],
                      one if kind == "explicit" else None)["params"]
  variables = {"params": {"renderer": params}}
  if kind == "explicit":
    variables["explicit_memory"] = memories
  manifest = export.export(export.Source(ml_collections.ConfigDict(config.to_dict()), variables, "tiny"),
                           tmp_path, ["stablehlo"])
  assert list(manifest["artefacts"]) == ["render_frame"]
  served = exported.load_exported(tmp_path)["render_frame"]
  inputs = {"rendered": frames, "masked": frames[::-1]} | ({"query": query} if kind == "explicit" else {})
  want = model.apply({"params": params}, frames, frames[::-1], query, one if kind == "explicit" else None)
  np.testing.assert_allclose(served(**inputs)["prediction"], want, atol=1e-5)
  np.testing.assert_allclose(served(**{k: v[:1] for k, v in inputs.items()})["prediction"], want[:1],
                             atol=1e-5)
