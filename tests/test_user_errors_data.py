"""The bad-input corpus in process (2/4): data roots, synthetic data, pair lists, `prepare`.

Each case raises a UserInputError naming the input and leaves pre-existing files byte-identical;
tests/test_user_errors_cli.py runs a few per entry point as commands (one line, exit code 2)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm import pipelines
from user_error_cases import refused, snapshot, write_face_video


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
