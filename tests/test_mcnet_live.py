"""Live mode with a video file as the camera: frames animated at batch 1, dropped (not queued) when slow."""
import json
import os
import pathlib
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import skimage.data

from data_pipelines import video_io
from talkingmem.mcnet import animate, live, official
from talkingmem.mcnet.config import tiny_model_config

REPO = pathlib.Path(__file__).resolve().parents[1]
FPS, NUM_FRAMES = 25, 30


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp("live")
  face = cv2.resize(skimage.data.astronaut()[0:300, 80:380], (160, 160), interpolation=cv2.INTER_AREA)
  frames = np.stack([np.roll(face, t, axis=1) for t in range(NUM_FRAMES)])
  camera = root / "camera.mp4"
  video_io.write_video(camera, frames, fps=FPS)
  source = root / "astronaut.png"
  cv2.imwrite(str(source), skimage.data.astronaut()[..., ::-1])
  config = tiny_model_config(32)
  variables = animate.random_variables(config)
  checkpoint = root / "tiny_official.npz"
  official.save_npz(official.to_official(variables, config), checkpoint)
  return root, camera, source, animate.from_variables(config, variables), checkpoint


def test_slow_model_drops_frames_instead_of_queueing(files):
  _, camera, source, loaded, _ = files
  animator = live.LiveAnimator(loaded, animate.read_image(source))
  assert animator.compile() > 0
  shown = []

  def slow_show(frame):  # a model three camera frames slow
    shown.append(frame)
    time.sleep(3 / FPS)
    return True

  stats = live.run_live(animator, live.LatestFrameReader(str(camera)), slow_show)
  assert stats.captured == NUM_FRAMES
  assert stats.frames == len(shown) and stats.frames + stats.dropped == NUM_FRAMES
  assert stats.dropped >= NUM_FRAMES // 2  # most frames were replaced by newer ones, none queued
  assert shown[0].shape == (32, 32, 3) and shown[0].dtype == np.uint8
  # A frame waits at most for the one being animated: no backlog, so latency stays bounded.
  assert stats.latency_ms_p95 < 2000 * 3 / FPS + 1000


def test_live_command_writes_frames_and_reports_fps(files):
  root, camera, source, _, checkpoint = files
  out = root / "live.mp4"
  proc = subprocess.run(
      [sys.executable, "-m", "talkingmem.main", "--mode=live", f"--checkpoint={checkpoint}",
       f"--source={source}", f"--camera={camera}", f"--output={out}", "--noshow"],
      cwd=REPO, env=dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest"), capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "frames/s" in proc.stdout
  stats = json.loads(proc.stdout.strip().splitlines()[-1])
  assert stats["frames"] >= 1 and stats["frames"] + stats["dropped"] == NUM_FRAMES
  assert video_io.video_info(out)["frames"] == stats["frames"]


def test_missing_camera_is_one_clear_line(files):
  with pytest.raises(animate.AnimationInputError, match="--camera"):
    live.LatestFrameReader(str(files[0] / "nope.mp4"))
