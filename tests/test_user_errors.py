"""The bad-input corpus, in process: each case must raise a UserInputError whose message names the input,
and leave every pre-existing file byte-identical. (tests/test_user_errors_cli.py runs a few of them as
commands, for the one line on stderr and exit code 2.)"""
from __future__ import annotations

import json
import logging
import pathlib

import cv2
import numpy as np
import pytest

from data_pipelines import user_errors
from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm import pipelines
from data_pipelines.user_errors import UserInputError
from user_error_cases import snapshot, write_face_video, write_png


def refused(match: str, call, *args, **kwargs) -> str:
  with pytest.raises(UserInputError, match=match) as err:
    call(*args, **kwargs)
  return str(err.value)


# --------------------------------------------------------------------------------------------------
# The helpers every entry point uses.


def test_run_cli_prints_one_line_and_exits_2(capsys):
  def main():
    raise UserInputError("--thing=x is wrong\n  because: of this")
  with pytest.raises(SystemExit) as exit_:
    user_errors.run_cli(main)
  assert exit_.value.code == 2
  assert capsys.readouterr().err == "error: --thing=x is wrong; because: of this\n"


def test_run_cli_keeps_programming_errors():
  def main():
    raise KeyError("a bug")
  with pytest.raises(KeyError):
    user_errors.run_cli(main)


def test_argument_parser_errors_are_user_errors():
  parser = user_errors.ArgumentParser()
  parser.add_argument("--size", type=int)
  refused("--size: invalid int value", parser.parse_args, ["--size=abc"])


@pytest.mark.parametrize("case", ["non-empty folder", "an input", "format", "file for a folder"])
def test_check_output_refuses(tmp_path, case):
  (tmp_path / "work").mkdir()
  (tmp_path / "work" / "keep.txt").write_text("precious")
  (tmp_path / "video.mp4").write_bytes(b"driving")
  (tmp_path / "frames").write_bytes(b"a file")
  before = snapshot(tmp_path)
  output, match = {"non-empty folder": (tmp_path / "work", "not empty"),
                   "an input": (tmp_path / "video.mp4", "also an input"),
                   "format": (tmp_path / "out.avi", "unsupported output format '.avi'"),
                   "file for a folder": (tmp_path / "frames", "existing file")}[case]
  refused(match, user_errors.check_output, output, "--output", [tmp_path / "video.mp4"],
          (".mp4", ".gif", ""), folder_ok=True)
  assert snapshot(tmp_path) == before


def test_check_output_accepts_new_and_empty_targets(tmp_path):
  (tmp_path / "empty").mkdir()
  for path in (tmp_path / "new" / "out.mp4", tmp_path / "empty", tmp_path / "frames_out"):
    user_errors.check_output(path, "--output", (), (".mp4", ""), folder_ok=True)


def test_check_writable_refuses_a_file_as_folder(tmp_path):
  (tmp_path / "f").write_text("x")
  refused("cannot write into", user_errors.check_writable, tmp_path / "f" / "sub", "--out")


# --------------------------------------------------------------------------------------------------
# Configs: one validation on load.


@pytest.fixture
def tiny_config():
  from configs import mcnet  # pylint: disable=g-import-not-at-top
  return mcnet.get_config("tiny")


@pytest.mark.parametrize("field,value,match", [
    ("model.num_kp", 0, r"model.num_kp=0 must be an integer >= 1"),
    ("data.batch_size", -1, r"data.batch_size=-1 must be an integer >= 1"),
    ("train.num_steps", 0, r"train.num_steps=0 must be an integer >= 1"),
    ("optim.learning_rate", 0.0, r"optim.learning_rate=0.0 must be a number > 0"),
    ("data.image_size", 4, r"data.image_size=4 must be an integer >= 8"),
])
def test_validate_config_refuses(tiny_config, field, value, match):
  from talkingmem.config_checks import validate_config  # pylint: disable=g-import-not-at-top
  section, name = field.split(".")
  tiny_config[section][name] = value
  refused(match, validate_config, tiny_config)


def test_validate_config_accepts_every_variant():
  from configs import mcnet  # pylint: disable=g-import-not-at-top
  from talkingmem.config_checks import validate_config  # pylint: disable=g-import-not-at-top
  for variant in ("paper", "baseline", "demo", "tiny"):
    validate_config(mcnet.get_config(variant))


def test_paper_num_steps_is_overridable():
  """--config.train.num_steps=10 needs a typed field: config_flags refuses to override a bare None."""
  from configs import mcnet  # pylint: disable=g-import-not-at-top
  from ml_collections.config_flags import config_path  # pylint: disable=g-import-not-at-top
  config = mcnet.get_config("paper")
  assert config.train.num_steps is None
  assert config_path.get_type("train.num_steps", config) is int


def test_unknown_variant_and_task():
  from configs import mcnet  # pylint: disable=g-import-not-at-top
  from talkingmem.task import get_task  # pylint: disable=g-import-not-at-top
  refused("unknown variant 'bogus'", mcnet.get_config, "bogus")
  config = mcnet.get_config("tiny")
  config.task = "nope"
  refused("unknown --config.task='nope'", get_task, config)


# --------------------------------------------------------------------------------------------------
# Resuming a workdir.


def _trained_workdir(path: pathlib.Path, config) -> pathlib.Path:
  (path / "checkpoints" / "4").mkdir(parents=True)
  (path / "checkpoints" / "4" / "state").write_bytes(b"weights")
  (path / "config.json").write_text(config.to_json_best_effort(indent=1, sort_keys=True))
  return path


def test_resume_with_another_config_is_refused(tmp_path, tiny_config):
  from configs import mcnet  # pylint: disable=g-import-not-at-top
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top
  workdir = _trained_workdir(tmp_path / "w", mcnet.get_config("demo"))
  before = snapshot(tmp_path)
  message = refused("another config", checkpointing.check_resume, workdir, tiny_config)
  assert "15 fields differ: data.eval_chunk_size: 16 -> 8, data.image_size: 64 -> 32" in message
  assert "use a new --workdir" in message
  assert snapshot(tmp_path) == before


def test_resume_allows_the_safe_overrides(tmp_path, tiny_config):
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top
  workdir = _trained_workdir(tmp_path / "w", tiny_config)
  tiny_config.train.num_steps = 40
  tiny_config.data.read_threads = 4
  tiny_config.train.new_setting = 1  # added to the code after the run: its default applies
  assert checkpointing.check_resume(workdir, tiny_config) == ["data.read_threads", "train.new_setting",
                                                              "train.num_steps"]


def test_a_workdir_without_checkpoints_is_fresh(tmp_path, tiny_config):
  """A run that failed before its first checkpoint does not poison the next one."""
  from configs import mcnet  # pylint: disable=g-import-not-at-top
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "w"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "config.json").write_text(mcnet.get_config("demo").to_json_best_effort())
  assert checkpointing.check_resume(workdir, tiny_config) == []


def test_workdir_that_is_a_file_or_someone_elses_folder(tmp_path, tiny_config):
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top
  (tmp_path / "w").write_text("x")
  refused("is a file, not a folder", checkpointing.check_resume, tmp_path / "w", tiny_config)
  (tmp_path / "photos").mkdir()
  (tmp_path / "photos" / "me.png").write_bytes(b"png")
  refused("holds other files and no config.json", checkpointing.check_resume, tmp_path / "photos",
          tiny_config)


# --------------------------------------------------------------------------------------------------
# Data roots: synthetic data only where the project puts it; no usable videos is refused.


def test_synthetic_data_never_goes_into_a_users_folder(tmp_path):
  from talkingmem.synthetic_data import ensure_synthetic  # pylint: disable=g-import-not-at-top
  root = tmp_path / "my_videos"
  root.mkdir()
  (root / "notes.txt").write_text("mine")
  before = snapshot(tmp_path)
  calls = []
  ensure_synthetic(root, {"size": 32}, lambda out: calls.append(out) or {}, "test set")
  assert not calls and snapshot(tmp_path) == before
  refused("holds no usable videos", fomm_layout.FommVideoIndex, root)


def test_synthetic_data_is_generated_whole_into_a_new_root(tmp_path):
  from talkingmem.synthetic_data import INFO_FILE, ensure_synthetic  # pylint: disable=g-import-not-at-top

  def generate(out: pathlib.Path) -> dict:
    assert out != tmp_path / "synth"  # a temporary sibling, renamed when complete
    out.mkdir(parents=True)
    (out / INFO_FILE).write_text(json.dumps({"size": 32}))
    return {"size": 32}

  ensure_synthetic(tmp_path / "synth", {"size": 32}, generate, "test set")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]
  refused("other settings", ensure_synthetic, tmp_path / "synth", {"size": 64}, generate, "test set")


@pytest.mark.parametrize("case", ["missing", "file", "empty", "corrupt only"])
def test_data_root_without_videos(tmp_path, case):
  root = tmp_path / "root"
  if case == "file":
    root.write_text("x")
  elif case != "missing":
    (root / "train").mkdir(parents=True)
  if case == "corrupt only":
    (root / "train" / "a.mp4").write_bytes(np.random.default_rng(0).bytes(500))
  match = {"missing": "does not exist", "file": "is a file", "empty": "holds no usable videos",
           "corrupt only": r"holds no usable videos \(1 unusable"}[case]
  refused(match, fomm_layout.FommVideoIndex, root)


@pytest.fixture
def small_store(tmp_path):
  for split in ("train", "test"):
    write_face_video(tmp_path / "data" / split / f"id0#{split}.mp4")
  return fomm_layout.FommVideoIndex(tmp_path / "data")


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"),
    ("", "holds no pairs"),
    ("id0#test,0,id0#test\n", "line 1: .* is not source_video"),
    ("source_video,source_frame,driving_video,driving_frame\nid0#test,0,id0#test,x\n", "line 2"),
    ("id0#test,0,nobody,0\n", "line 1: no video 'nobody'"),
    ("id0#test,0,id0#test,99\n", "line 1: frame 99 of 'id0#test' is outside its 4 frames"),
])
def test_pairs_csv(tmp_path, small_store, content, match):
  path = tmp_path / "pairs.csv"
  if content is not None:
    path.write_text(content)
  refused(match, pipelines.read_pair_csv, path, small_store, "test")


# --------------------------------------------------------------------------------------------------
# Animation: every argument before the model loads; damaged images refused.


@pytest.fixture
def animate_inputs(tmp_path):
  source = write_png(tmp_path / "face.png")
  driving = write_face_video(tmp_path / "drive.mp4")
  workdir = tmp_path / "workdir"
  (workdir / "checkpoints" / "2").mkdir(parents=True)
  (workdir / "checkpoints" / "2" / "weights").write_bytes(b"precious")
  (workdir / "config.json").write_text("{}")
  return source, driving, workdir


@pytest.mark.parametrize("case,match", [
    ("output is the model's workdir", "also an input"),
    ("output is another run's workdir", "not empty"),
    ("output is the driving video", "also an input"),
    ("output is the source", "also an input"),
    ("output format .avi", "unsupported output format '.avi'"),
    ("output format .xyz", "unsupported output format '.xyz'"),
    ("source is a folder", "--source=.* is a folder"),
    ("source is missing", "--source=.* does not exist"),
    ("driving is missing", "--driving=.* does not exist"),
    ("best frame and find best frame", "not both"),
    ("negative best frame", "--best_frame=-1 must be >= 0"),
    ("zero batch", "--batch_size=0 must be >= 1"),
])
def test_animate_arguments(tmp_path, animate_inputs, case, match):
  from talkingmem.mcnet import animate  # pylint: disable=g-import-not-at-top
  source, driving, workdir = animate_inputs
  output, options = tmp_path / "out.mp4", animate.AnimateOptions()
  if case == "output is the model's workdir":
    output = workdir
  elif case == "output is another run's workdir":
    output = tmp_path / "other_run"
    (output / "checkpoints").mkdir(parents=True)
    (output / "config.json").write_text("{}")
  elif case == "output is the driving video":
    output = driving
  elif case == "output is the source":
    output = source
  elif case.startswith("output format"):
    output = tmp_path / f"out{case.split()[-1]}"
  elif case == "source is a folder":
    source = tmp_path
  elif case == "source is missing":
    source = tmp_path / "nope.png"
  elif case == "driving is missing":
    driving = tmp_path / "nope.mp4"
  elif case == "best frame and find best frame":
    options = animate.AnimateOptions(best_frame=1, find_best_frame=True)
  elif case == "negative best frame":
    options = animate.AnimateOptions(best_frame=-1)
  elif case == "zero batch":
    options = animate.AnimateOptions(batch_size=0)
  before = snapshot(tmp_path)
  refused(match, animate.check_animation_args, source, driving, output, options, (workdir,))
  assert snapshot(tmp_path) == before


def test_animate_without_a_model():
  from talkingmem.mcnet import animate  # pylint: disable=g-import-not-at-top
  refused("no model given", animate.load_model, None, None)


def test_truncated_jpeg_is_refused(tmp_path):
  from talkingmem.mcnet import animate  # pylint: disable=g-import-not-at-top
  ok, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
  path = tmp_path / "face.jpg"
  path.write_bytes(data.tobytes()[:len(data) // 2])
  assert ok
  refused(r"face.jpg is damaged", animate.read_image, path)


def test_non_finite_pixels_are_refused(tmp_path):
  from talkingmem.mcnet import animate  # pylint: disable=g-import-not-at-top
  image = np.full((16, 16, 3), 0.5, np.float32)
  image[3, 4, 1] = np.nan
  path = tmp_path / "face.tiff"
  assert cv2.imwrite(str(path), image)
  refused(r"face.tiff has NaN or infinite pixel", animate.read_image, path)


def test_two_faces_say_which_and_face_index(caplog):
  from talkingmem.mcnet import animate  # pylint: disable=g-import-not-at-top
  boxes = np.array([[0, 0, 10, 10], [20, 0, 50, 30]], np.float64)  # left small, right large
  with caplog.at_level(logging.WARNING):
    chosen = animate.choose_face(boxes, None, "the source image s.png")
  np.testing.assert_array_equal(chosen, boxes[1])
  assert "has 2 faces; animating face 1" in caplog.text and "--face_index" in caplog.text
  np.testing.assert_array_equal(animate.choose_face(boxes, 0, "s"), boxes[0])
  refused(r"--face_index=2, but s has 2 face\(s\)", animate.choose_face, boxes, 2, "s")
  refused("no face found in s", animate.choose_face, np.zeros((0, 4)), None, "s")


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


@pytest.mark.parametrize("args,match", [
    (["--image_size=-4"], "--image_size=-4 must be >= 8"),
    (["--jpeg_quality=0"], "--jpeg_quality=0 must be within 1..100"),
    (["--source=/nonexistent"], "--source=/nonexistent is not a folder"),
    (["--dataset=nope"], "invalid choice: 'nope'"),
    ([], "--source=.* is empty"),
])
def test_prepare_arguments(tmp_path, args, match):
  from data_pipelines.fomm import prepare  # pylint: disable=g-import-not-at-top
  (tmp_path / "src").mkdir()
  base = {"--dataset": "voxceleb", "--source": str(tmp_path / "src"), "--out": str(tmp_path / "out")}
  base.update(dict(a.split("=", 1) for a in args))
  refused(match, prepare.parse_args, [f"{k}={v}" for k, v in base.items()])


def test_prepare_corrupt_only_source_leaves_no_output(tmp_path):
  from data_pipelines.fomm import prepare  # pylint: disable=g-import-not-at-top
  (tmp_path / "src" / "train").mkdir(parents=True)
  (tmp_path / "src" / "train" / "a.mp4").write_bytes(np.random.default_rng(0).bytes(500))
  before = snapshot(tmp_path)
  refused(r"src holds no usable videos \(1 unusable", prepare.main,
          ["--dataset=voxceleb", f"--source={tmp_path / 'src'}", f"--out={tmp_path / 'out'}"])
  assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


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
