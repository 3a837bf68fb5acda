"""Helpers of the bad-input corpus (tests/test_user_errors*.py): small input files made in a folder,
a byte snapshot of a folder, and a command-line run that must refuse with one line and exit code 2."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines import video_io
from data_pipelines.user_errors import UserInputError

REPO = pathlib.Path(__file__).resolve().parents[1]


def refused(match: str, call, *args, **kwargs) -> str:
  """Calls `call(*args, **kwargs)`, asserting a UserInputError whose message matches; returns it."""
  with pytest.raises(UserInputError, match=match) as err:
    call(*args, **kwargs)
  return str(err.value)


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
  """Every file under folder (relative path -> bytes): compared before and after a refused command."""
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_face_video(path: pathlib.Path, frames: int = 4, size: int = 32) -> pathlib.Path:
  """A tiny valid video (noise frames): enough for listings, pair checks and path checks."""
  rng = np.random.default_rng(0)
  video_io.write_video(path, rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8), 25.0)
  return path


def write_png(path: pathlib.Path, size: int = 32) -> pathlib.Path:
  import cv2  # pylint: disable=g-import-not-at-top
  path.parent.mkdir(parents=True, exist_ok=True)
  cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))
  return path


def run_refused(args: list[str], cwd: pathlib.Path, timeout: int = 120) -> str:
  """Runs `python <args>` and asserts it refused: exit code 2, one line on stderr that starts with
  'error:' and holds no traceback. Returns that line."""
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("XLA_FLAGS", None)  # One device: faster start.
  proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=timeout)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith("error:")]
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert len(errors) == 1 and errors[0] == lines[-1], proc.stderr[-3000:]
  return errors[0]
