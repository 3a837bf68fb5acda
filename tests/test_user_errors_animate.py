"""The bad-input corpus in process (3/4): animation arguments, damaged images, several faces.

Each case raises a UserInputError naming the input and leaves pre-existing files byte-identical;
tests/test_user_errors_cli.py runs a few per entry point as commands (one line, exit code 2)."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from user_error_cases import refused, snapshot, write_face_video, write_png


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
