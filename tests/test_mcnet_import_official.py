"""import_official: an official checkpoint -> a workdir that load_model reads and that reproduces the
outputs recorded from the official PyTorch code."""
import collections
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.user_errors import UserInputError

from talkingmem.mcnet import animate
from talkingmem.mcnet import official
from talkingmem.mcnet.model import MCNet
from talkingmem.mcnet.tools import import_official
from torch_files import FakeTensor, save_zip  # pylint: disable=g-bad-import-order

TIGHT, LOOSE = 1e-5, 1e-4  # as test_mcnet_official.py: keypoints / predictions, float32


def _nhwc(x: np.ndarray) -> jnp.ndarray:
  return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1), jnp.float32)


@pytest.fixture(scope="module")
def state_dicts(official_fixture_dir):
  return official.load_state_dicts(official_fixture_dir / "kp_detector_state.npz",
                                   official_fixture_dir / "generator_state.npz")


@pytest.fixture(scope="module")
def pth_checkpoint(tmp_path_factory, state_dicts):
  """The fixture weights written as the released file is: torch.save({'generator', 'kp_detector', ...})
  with DataParallel's 'module.' prefixes."""
  ckpt = {m: collections.OrderedDict((f"module.{k}", FakeTensor.of(v)) for k, v in sd.items())
          for m, sd in state_dicts.items()}
  ckpt["epoch"] = 99
  path = tmp_path_factory.mktemp("official") / "00000099-checkpoint.pth.tar"
  save_zip(ckpt, path)
  return path


@pytest.fixture(scope="module")
def imported_workdir(tmp_path_factory, pth_checkpoint):
  """The command-line path, in a fresh process."""
  out = tmp_path_factory.mktemp("imported") / "vox"
  proc = subprocess.run([sys.executable, "-m", "talkingmem.mcnet.tools.import_official", "--checkpoint",
                         str(pth_checkpoint), "--out", str(out)], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert summary["modules"] == ["kp_detector", "generator"] and summary["image_size"] == 256
  return out


def test_imported_workdir_reproduces_official_outputs(imported_workdir, official_fixture_dir):
  loaded = animate.load_model(imported_workdir)
  assert loaded.origin == "workdir" and loaded.step == 0 and loaded.config.task == "mcnet"
  io = np.load(official_fixture_dir / "io.npz")
  model, variables = loaded.model, loaded.variables
  images = jnp.concatenate([_nhwc(io["input.source"]), _nhwc(io["input.driving"])])
  kp = jax.jit(lambda v, x: model.apply(v, x, method=MCNet.detect))(variables, images)
  kp = {k: kp[k] for k in ("value", "jacobian")}
  for i, name in enumerate(("source", "driving")):
    for key in ("value", "jacobian"):
      np.testing.assert_allclose(kp[key][2 * i:2 * i + 2], io[f"kp_{name}.{key}"], atol=TIGHT, rtol=0)
  kp_source, kp_driving = ({k: v[s] for k, v in kp.items()} for s in (slice(0, 2), slice(2, 4)))
  noise = [_nhwc(io[f"gen.recon.styleconv_noise.{i}"]) for i in range(3)]  # recorded with the outputs
  generate = jax.jit(lambda v, *args: model.apply(v, *args, method=MCNet.generate)["prediction"],
                     static_argnums=4)
  prediction = generate(variables, images[:2], kp_source, kp_driving, False, noise)
  np.testing.assert_allclose(np.asarray(prediction).transpose(0, 3, 1, 2), io["gen.recon.prediction"],
                             atol=LOOSE, rtol=0)


def test_imported_workdir_equals_direct_checkpoint_load(imported_workdir, pth_checkpoint):
  from_workdir = animate.load_model(imported_workdir)
  direct = animate.load_model(checkpoint=pth_checkpoint)
  assert from_workdir.model_config.to_dict() == direct.model_config.to_dict()
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, from_workdir.variables),
               jax.tree.map(np.asarray, direct.variables))


def test_refuses_to_overwrite_checkpoints(imported_workdir, pth_checkpoint):
  with pytest.raises(UserInputError, match="folder that is not empty"):
    import_official.import_checkpoint(pth_checkpoint, imported_workdir)


def _fomm_like(state_dicts):
  """MCNet's detector with a generator of another layout (FOMM's bottleneck, no memory unit)."""
  gen = {k: v for k, v in state_dicts["generator"].items()
         if not k.startswith(("mbUnit.", "resblock."))}
  gen["bottleneck.r0.conv1.weight"] = np.zeros((64, 64, 3, 3), np.float32)
  return {"kp_detector": state_dicts["kp_detector"], "generator": gen}


def test_fomm_style_generator_is_refused_with_what_to_do(state_dicts):
  with pytest.raises(official.StateDictMismatch) as err:
    import_official.convert(_fomm_like(state_dicts), image_size=256)
  message = str(err.value)
  assert "unexpected (1): generator:bottleneck.r0.conv1.weight" in message
  assert "generator:resblock.0.conv1.weight" in message and "--detector_only" in message


def test_detector_only_import_keeps_the_detector(state_dicts, tmp_path, official_fixture_dir):
  summary = import_official.import_checkpoint(
      official_fixture_dir / "kp_detector_state.npz", tmp_path / "w",
      official_fixture_dir / "generator_state.npz", detector_only=True)
  assert summary["modules"] == ["kp_detector"]
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top
  variables, config, _ = checkpointing.load_variables(tmp_path / "w")
  assert {m for tree in variables.values() for m in tree} == {"kp_detector"}
  expected, _ = import_official.convert(state_dicts)
  want = {col: tree["kp_detector"] for col, tree in expected.items()}
  got = {col: tree["kp_detector"] for col, tree in variables.items()}
  jax.tree.map(np.testing.assert_array_equal, got, want)
  assert config.imported_from.modules == ["kp_detector"]
  with pytest.raises(animate.CheckpointMismatch, match="missing"):  # animate needs the generator
    animate.load_model(tmp_path / "w")
  # A FOMM-style file imports its detector the same way.
  variables, _ = import_official.convert(_fomm_like(state_dicts), image_size=256, detector_only=True)
  jax.tree.map(np.testing.assert_array_equal, variables,
               {col: {"kp_detector": tree} for col, tree in want.items()})
