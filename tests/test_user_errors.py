"""The bad-input corpus in process (1/4): the one error type and its CLI helpers, config
validation, resume safety.

Each case raises a UserInputError naming the input and leaves pre-existing files byte-identical;
tests/test_user_errors_cli.py runs a few per entry point as commands (one line, exit code 2)."""
from __future__ import annotations

import pathlib

import pytest

from data_pipelines import user_errors
from data_pipelines.user_errors import UserInputError
from user_error_cases import refused, snapshot


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
  assert "16 fields differ: data.eval_chunk_size: 16 -> 8, data.image_size: 64 -> 32" in message
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
