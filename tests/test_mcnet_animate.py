"""Animation: the command end to end (frames, fps, audio), inputs of any kind, best frame, clear errors."""
import json
import os
import pathlib
import subprocess
import sys
import types
import wave

import cv2
import jax
import numpy as np
import pytest
import skimage.data

from data_pipelines import video_io
from talkingmem.mcnet import animate
from talkingmem.mcnet import official
from talkingmem.mcnet.config import tiny_model_config

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest")  # share compilations with this process
NUM_FRAMES, FPS = 7, 10


def _face(size: int = 256, dx: int = 0, scale: float = 1.0) -> np.ndarray:
  """The astronaut's face, moved right by dx and shrunk by `scale` around the image centre."""
  img = cv2.resize(skimage.data.astronaut()[0:300, 80:380], (size, size), interpolation=cv2.INTER_AREA)
  m = cv2.getRotationMatrix2D((size / 2, size / 2), 0, scale)
  m[0, 2] += dx
  return cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REPLICATE)


def _write_wav(path: pathlib.Path, seconds: float, rate: int = 16000) -> None:
  t = np.arange(int(seconds * rate)) / rate
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16).tobytes())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> types.SimpleNamespace:
  """An official-format checkpoint of a random tiny model, the astronaut, a driving video with audio."""
  root = tmp_path_factory.mktemp("animate")
  config = tiny_model_config(32)
  variables = animate.random_variables(config)
  checkpoint = root / "tiny_official.npz"
  official.save_npz(official.to_official(variables, config), checkpoint)
  source = root / "astronaut.png"
  cv2.imwrite(str(source), skimage.data.astronaut()[..., ::-1])
  frames = np.stack([_face(160, dx=3 * t) for t in range(NUM_FRAMES)])
  _write_wav(root / "tone.wav", NUM_FRAMES / FPS)
  driving = root / "driving.mp4"
  video_io.write_video(driving, frames, fps=FPS, audio_path=root / "tone.wav")
  return types.SimpleNamespace(root=root, config=config, variables=variables, checkpoint=checkpoint,
                               source=source, driving=driving, frames=frames)


def test_animate_command_keeps_frames_fps_and_audio(files):
  out = files.root / "out.mp4"
  proc = subprocess.run(
      [sys.executable, "-m", "talkingmem.main", "--mode=animate", f"--checkpoint={files.checkpoint}",
       f"--source={files.source}", f"--driving={files.driving}", f"--output={out}", "--adapt_scale",
       "--find_best_frame", "--side_by_side"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert summary["checkpoint"]["origin"] == "official" and summary["audio"]
  assert 0 <= summary["reference_frame"] < NUM_FRAMES and summary["driving_faces"]["detected"] == NUM_FRAMES
  info = video_io.video_info(out)
  assert info["frames"] == NUM_FRAMES and info["fps"] == pytest.approx(FPS) and info["has_audio"]
  assert info["size"] == (512, 3 * 512)  # source | driving | result, pasted back at the photo's size
  assert "animating" in proc.stderr  # the tqdm progress bar


def test_animate_any_source_without_crop(files, tmp_path):
  """A 16-bit gray, non-square source and a frames folder (no audio, no fps) through the API."""
  loaded = animate.load_model(checkpoint=files.checkpoint)
  for ours, theirs in zip(jax.tree.leaves(loaded.variables), jax.tree.leaves(files.variables)):
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-6)
  gray16 = (cv2.cvtColor(_face(64), cv2.COLOR_RGB2GRAY)[:, 8:56].astype(np.uint16) * 257)
  source = tmp_path / "gray16.png"
  cv2.imwrite(str(source), gray16)
  driving = tmp_path / "frames"
  video_io.write_video(driving, files.frames)
  out = tmp_path / "out.mp4"
  summary = animate.animate(loaded, source, driving, out, animate.AnimateOptions(
      crop=False, adapt_scale=True, best_frame=2, progress=False))
  assert summary["reference_frame"] == 2 and not summary["audio"]
  info = video_io.video_info(out)
  assert info["frames"] == NUM_FRAMES and info["fps"] == animate.DEFAULT_FPS and not info["has_audio"]
  assert info["size"] == (32, 32)


def test_image_kinds_become_float_rgb(tmp_path):
  gray = np.full((5, 7), 51, np.uint8)
  np.testing.assert_allclose(animate.to_float_rgb(gray), 0.2, atol=1e-6)
  deep = np.full((5, 7), 13107, np.uint16)  # 0.2 in 16 bits
  assert animate.to_float_rgb(deep).shape == (5, 7, 3)
  np.testing.assert_allclose(animate.to_float_rgb(deep), 0.2, atol=1e-6)
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[..., 0], rgba[:2, :, 3] = 255, 255  # top half opaque red, bottom half transparent
  out = animate.to_float_rgb(rgba)
  np.testing.assert_allclose(out[0, 0], [1, 0, 0])
  np.testing.assert_allclose(out[3, 0], [1, 1, 1])  # transparent -> white, not the hidden colour
  path = tmp_path / "rgba.png"
  cv2.imwrite(str(path), rgba[..., [2, 1, 0, 3]])
  np.testing.assert_allclose(animate.read_image(path), out)
  assert animate.square_resize(np.zeros((40, 80, 3), np.uint8), 32).shape == (32, 32, 3)


def test_best_frame_on_constructed_landmarks():
  rng = np.random.default_rng(0)
  source = rng.uniform(0, 100, (68, 2))
  driving = [source + rng.normal(0, 6, (68, 2)),  # other expression
             None,  # no face
             2.5 * source + [40.0, -7.0],  # same shape, elsewhere and bigger: the best frame
             source[:, ::-1].copy()]  # transposed
  assert animate.best_frame_index(source, driving) == 2
  with pytest.raises(animate.NoFaceError):
    animate.best_frame_index(source, [None, None])


def test_best_frame_with_dlib_landmarks():
  source = _face(128)
  rotated = cv2.warpAffine(source, cv2.getRotationMatrix2D((64, 64), 25, 1.0), (128, 128),
                           borderMode=cv2.BORDER_REPLICATE)
  blank = np.full_like(source, 128)
  moved = _face(128, dx=10, scale=0.8)
  landmarks = animate.face_landmarks(np.stack([rotated, blank, moved]))
  assert landmarks[1] is None
  assert animate.best_frame_index(animate.face_landmarks(source[None])[0], landmarks) == 2


def test_clear_errors(files, tmp_path):
  loaded = animate.load_model(checkpoint=files.checkpoint)
  blank = tmp_path / "blank.png"
  cv2.imwrite(str(blank), np.full((64, 64, 3), 128, np.uint8))
  with pytest.raises(animate.NoFaceError, match="source image"):
    animate.animate(loaded, blank, files.driving, tmp_path / "o.mp4")
  no_face_video = tmp_path / "no_face.mp4"
  video_io.write_video(no_face_video, np.full((3, 64, 64, 3), 128, np.uint8))
  with pytest.raises(animate.NoFaceError, match="driving video"):
    animate.animate(loaded, files.source, no_face_video, tmp_path / "o.mp4",
                    animate.AnimateOptions(progress=False))
  broken = tmp_path / "broken.mp4"
  broken.write_bytes(b"not a video at all")
  with pytest.raises(animate.AnimationInputError, match="cannot read the driving video"):
    animate.animate(loaded, files.source, broken, tmp_path / "o.mp4", animate.AnimateOptions(progress=False))
  other = tiny_model_config(32)
  other.num_kp = 5
  with pytest.raises(animate.CheckpointMismatch, match="checkpoint/config mismatch"):
    animate.from_variables(other, files.variables)
