"""The bad-input corpus end to end, for a handful of cases per entry point: each command exits with code
2 and one `error:` line on stderr (no traceback), before any work, and leaves every file untouched.
(The other cases run in process, in tests/test_user_errors.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from user_error_cases import REPO, run_refused, snapshot, write_face_video, write_png

MAIN = ["-m", "talkingmem.main"]


@pytest.fixture
def inputs(tmp_path):
  """A source image, a driving video, a workdir-like folder with precious files, a junk .npz."""
  write_png(tmp_path / "face.png")
  write_face_video(tmp_path / "drive.mp4")
  (tmp_path / "run" / "checkpoints" / "2").mkdir(parents=True)
  (tmp_path / "run" / "checkpoints" / "2" / "weights").write_bytes(b"precious")
  (tmp_path / "run" / "config.json").write_text("{}")
  (tmp_path / "junk.npz").write_bytes(np.random.default_rng(0).bytes(400))
  (tmp_path / "empty_fixtures").mkdir()
  return tmp_path


CASES = {
    "config key typo": (MAIN + ["--mode=info", "--config=configs/mcnet.py:tiny",
                                "--config.model.num_kpp=3"], 'Did you mean "num_kp"'),
    "missing config file": (MAIN + ["--mode=info", "--config=configs/nope.py"], "cannot load it"),
    "unknown variant": (MAIN + ["--mode=info", "--config=configs/mcnet.py:bogus"], "unknown variant 'bogus'"),
    "num_kp=0": (MAIN + ["--config=configs/mcnet.py:tiny", "--config.model.num_kp=0", "--workdir={t}/new"],
                 "model.num_kp=0 must be an integer >= 1"),
    "animate into a workdir": (MAIN + ["--mode=animate", "--checkpoint={t}/junk.npz", "--source={t}/face.png",
                                       "--driving={t}/drive.mp4", "--output={t}/run"],
                               "is a folder that is not empty"),
    "animate over the driving video": (MAIN + ["--mode=animate", "--workdir={t}/run", "--source={t}/face.png",
                                               "--driving={t}/drive.mp4", "--output={t}/drive.mp4"],
                                       "also an input"),
    "eval max_videos=-2": (MAIN + ["--mode=eval", "--workdir={t}/run", "--max_videos=-2"],
                           "--max_videos=-2 must be >= 1"),
    "export platform": (MAIN + ["--mode=export", "--workdir={t}/run", "--export_dir={t}/x",
                                "--export_platforms=quantum"], r"unknown platform(s) ['quantum']"),
    "prepare image_size": (["-m", "data_pipelines.fomm.prepare", "--dataset=voxceleb", "--source={t}",
                            "--out={t}/tfds", "--image_size=-4"], "--image_size=-4 must be >= 8"),
    "parity empty fixtures": (["-m", "talkingmem.mcnet.tools.official_parity",
                               "--fixtures={t}/empty_fixtures"], "lacks config.json"),
    "import truncated npz": (["-m", "talkingmem.mcnet.tools.import_official", "--checkpoint={t}/junk.npz",
                              "--out={t}/imported"], "junk.npz is not a readable .npz"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line(inputs, case):
  args, expected = CASES[case]
  before = snapshot(inputs)
  line = run_refused([a.replace("{t}", str(inputs)) for a in args], cwd=REPO)
  assert expected in line, line
  assert snapshot(inputs) == before
  assert not (inputs / "new").exists() and not (inputs / "imported").exists() and not (inputs / "x").exists()
