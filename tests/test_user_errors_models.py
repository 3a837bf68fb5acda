"""The bad-input corpus in process (4/4): checkpoints, weights, memories, parity fixtures,
export and speak.

Each case raises a UserInputError naming the input and leaves pre-existing files byte-identical;
tests/test_user_errors_cli.py runs a few per entry point as commands (one line, exit code 2)."""
from __future__ import annotations

import numpy as np
import pytest

from user_error_cases import refused


# --------------------------------------------------------------------------------------------------
# Checkpoints, weights and memories.


def test_unreadable_checkpoint_step_names_the_others(tmp_path):
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "config.json").write_text("{}")
  manager = checkpointing.make_manager(workdir, keep=5, async_save=False)
  state = {"params": {"w": np.arange(64, dtype=np.float32)}, "model_state": {}, "step": np.int32(0)}
  for step in (1, 2, 3):
    checkpointing.save(manager, step, state, None, force=True)
  manager.wait_until_finished()
  manager.close()
  for path in (workdir / "checkpoints" / "3").rglob("*"):
    if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  message = refused(r"checkpoint step 3 in .* is unreadable", checkpointing.load_variables, workdir)
  assert "--step= (1, 2)" in message and "\n" not in message
  variables, _, step = checkpointing.load_variables(workdir, 2)
  assert step == 2 and variables["params"]["w"].shape == (64,)
  refused(r"--step=7: no such checkpoint .* its steps are 1, 2, 3", checkpointing.load_variables, workdir, 7)


def test_workdir_without_config_or_checkpoints(tmp_path):
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top
  refused("config.json not found", checkpointing.load_variables, tmp_path)
  (tmp_path / "config.json").write_text("{}")
  refused("no checkpoint in", checkpointing.load_variables, tmp_path)
  (tmp_path / "config.json").write_text("{not json")
  refused("is not valid JSON", checkpointing.load_config, tmp_path)


def test_random_bytes_as_memory_or_weights(tmp_path):
  from data_pipelines.speech import explicit_memory  # pylint: disable=g-import-not-at-top
  from talkingmem.mcnet import official  # pylint: disable=g-import-not-at-top
  junk = tmp_path / "junk.npz"
  junk.write_bytes(np.random.default_rng(0).bytes(300))
  refused("junk.npz is not a readable explicit-memory .npz", explicit_memory.load_explicit_memory, junk)
  good = tmp_path / "w.npz"
  np.savez(good, **{"kp_detector/a": np.ones(3), "generator/b": np.ones(4)})
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(good.read_bytes()[:200])
  refused("truncated.npz is not a readable .npz", official.load_state_dicts, truncated)
  refused("--checkpoint=.* is a folder", official.load_state_dicts, tmp_path)


@pytest.mark.parametrize("case,match", [
    ("missing", "is not a folder"),
    ("empty", "lacks config.json, kp_detector_state.npz, generator_state.npz, io.npz"),
    ("junk config", "config.json is not valid JSON"),
])
def test_official_parity_fixtures(tmp_path, case, match):
  from talkingmem.mcnet.tools import official_parity  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "fixtures"
  if case != "missing":
    folder.mkdir()
  if case == "junk config":
    for name in official_parity.FIXTURE_FILES:
      (folder / name).write_bytes(b"junk")
  refused(match, official_parity.check_fixtures, folder)


# --------------------------------------------------------------------------------------------------
# Export and prepare arguments.


@pytest.mark.parametrize("formats,platforms,match", [
    (["stablehlo"], ["quantum"], r"unknown platform\(s\) \['quantum'\]"),
    (["onnx"], None, "unknown export formats"),
])
def test_export_arguments(tmp_path, formats, platforms, match):
  from talkingmem import export  # pylint: disable=g-import-not-at-top
  refused(match, export.check_export_args, tmp_path / "x", formats, platforms)


def test_export_into_a_non_empty_folder(tmp_path):
  from talkingmem import export  # pylint: disable=g-import-not-at-top
  (tmp_path / "keep.txt").write_text("mine")
  refused("not empty", export.check_export_args, tmp_path, ["stablehlo"], ["cpu"])


@pytest.mark.parametrize("case,match", [
    ("audio", r"--audio=.*nope.wav does not exist"),
    ("memory", r"--memory=.* is a folder"),
    ("output", r"--output must be an .mp4"),
])
def test_speak_inputs_before_models(tmp_path, case, match):
  from talkingmem.memface import speak  # pylint: disable=g-import-not-at-top
  audio = tmp_path / ("nope.wav" if case == "audio" else "a.wav")
  if case != "audio":
    audio.write_bytes(b"RIFF")
  output = tmp_path / ("o.avi" if case == "output" else "o.mp4")
  refused(match, speak.speak, tmp_path / "no_a2e", tmp_path / "no_renderer", audio, tmp_path, output,
          memory_path=tmp_path if case == "memory" else None)
